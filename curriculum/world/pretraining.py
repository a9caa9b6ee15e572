"""World images labelled visual token by visual token, for pretraining a tiny VLM's vision tower.

A tiny VLM's image tokens each cover one square of a ``grid`` x ``grid`` division of the image
(4 x 4 at 64 px for the tiny models: 16 px a token). ``token_objects`` lists, for every such
square, the shape and colour class of each object centred in it (usually none or one; with
overlap two objects can share a square: 15 % of uniform counting scenes have such a square).
``token_labels`` keeps only the object drawn on top, one class per attribute and square.
``token_centres`` gives, in the same order, where each of those objects' centres lies in the image.
``labelled_images`` draws object scenes of every skill that has them, from a seed of its own,
and lists their token objects and centres.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from .generate import Spec, generate, skill_names
from .scene import COLOURS, SHAPES

# Attribute -> number of classes, class 0 meaning "no object centred in this token".
TOKEN_ATTRIBUTES: dict[str, int] = {"shape": len(SHAPES) + 1, "colour": len(COLOURS) + 1}
# Seeds of the pretraining images start here, far from the splits' and the curriculum's.
SEED_BASE = 7_000_000

# Per token, one tuple of class ids (in TOKEN_ATTRIBUTES order) per object centred in it.
TokenObjects = list[list[tuple[int, ...]]]
# Per token, the (x, y) centre of each of those objects, as fractions of the image's width and height.
TokenCentres = list[list[tuple[float, float]]]


def _cell(obj: dict[str, Any], grid: int) -> int:
    """The raster index of the token an object's centre lies in."""
    return min(int(obj["y"] * grid), grid - 1) * grid + min(int(obj["x"] * grid), grid - 1)


def _classes(obj: dict[str, Any]) -> tuple[int, ...]:
    return 1 + SHAPES.index(obj["shape"]), 1 + list(COLOURS).index(obj["colour"])


def _objects_of(scene: dict[str, Any]) -> list[dict[str, Any]]:
    if scene.get("kind") != "objects":
        raise ValueError(f"token labels need an object scene, got kind {scene.get('kind')!r}")
    return scene["objects"]


def token_objects(scene: dict[str, Any], grid: int) -> TokenObjects:
    """Per token (raster order, top row first), the class ids of every object centred in it, in
    drawing order (the last one is on top)."""
    cells: TokenObjects = [[] for _ in range(grid * grid)]
    for obj in _objects_of(scene):
        cells[_cell(obj, grid)].append(_classes(obj))
    return cells


def token_centres(scene: dict[str, Any], grid: int) -> TokenCentres:
    """Per token, in ``token_objects``' order, the centre (x, y) of every object centred in it."""
    cells: TokenCentres = [[] for _ in range(grid * grid)]
    for obj in _objects_of(scene):
        cells[_cell(obj, grid)].append((float(obj["x"]), float(obj["y"])))
    return cells


def token_labels(scene: dict[str, Any], grid: int) -> dict[str, list[int]]:
    """Per attribute, ``grid * grid`` class ids in raster order: the object on top in each token."""
    _objects_of(scene)
    labels = {name: [0] * (grid * grid) for name in TOKEN_ATTRIBUTES}
    for cell, objects in enumerate(token_objects(scene, grid)):
        if objects:
            for name, class_id in zip(TOKEN_ATTRIBUTES, objects[-1], strict=True):
                labels[name][cell] = class_id
    return labels


@lru_cache(maxsize=1)
def object_skills() -> tuple[str, ...]:
    """The skills whose scenes are objects (not bar charts)."""
    return tuple(s for s in skill_names() if generate(Spec(s), seed=0)[0].scene["kind"] == "objects")


def labelled_images(
    count: int, step: int, image_size: int, grid: int
) -> tuple[list[Image.Image], list[TokenObjects], list[TokenCentres]]:
    """``count`` object-scene images spread over the object skills, with parameters uniform over
    their full ranges, and each one's token objects and centres; a pure function of the arguments."""
    skills = object_skills()
    images: list[Image.Image] = []
    objects: list[TokenObjects] = []
    centres: list[TokenCentres] = []
    for i, skill in enumerate(skills):
        n = count // len(skills) + (i < count % len(skills))
        if not n:
            continue
        for ex in generate(Spec(skill, {}, n), seed=SEED_BASE + step, image_size=image_size):
            images.append(ex.image)
            objects.append(token_objects(ex.scene, grid))
            centres.append(token_centres(ex.scene, grid))
    return images, objects, centres
