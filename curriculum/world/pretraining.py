"""World images labelled visual token by visual token, for pretraining a tiny VLM's vision tower.

A tiny VLM's image tokens each cover one square of a ``grid`` x ``grid`` division of the image
(4 x 4 at 64 px for the tiny models: 16 px a token). ``token_labels`` names, for every such
square, the shape and the colour of the object centred in it (class 0: none; where objects
overlap, the one drawn on top). ``labelled_images`` draws object scenes of every skill that has
them, from a seed of its own, and labels them so.
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


def token_labels(scene: dict[str, Any], grid: int) -> dict[str, list[int]]:
    """Per attribute, ``grid * grid`` class ids in raster order (row by row, top row first)."""
    if scene.get("kind") != "objects":
        raise ValueError(f"token labels need an object scene, got kind {scene.get('kind')!r}")
    labels = {name: [0] * (grid * grid) for name in TOKEN_ATTRIBUTES}
    for obj in scene["objects"]:  # drawing order: a later object covers an earlier one
        cell = min(int(obj["y"] * grid), grid - 1) * grid + min(int(obj["x"] * grid), grid - 1)
        labels["shape"][cell] = 1 + SHAPES.index(obj["shape"])
        labels["colour"][cell] = 1 + list(COLOURS).index(obj["colour"])
    return labels


@lru_cache(maxsize=1)
def object_skills() -> tuple[str, ...]:
    """The skills whose scenes are objects (not bar charts)."""
    return tuple(s for s in skill_names() if generate(Spec(s), seed=0)[0].scene["kind"] == "objects")


def labelled_images(
    count: int, step: int, image_size: int, grid: int
) -> tuple[list[Image.Image], dict[str, list[list[int]]]]:
    """``count`` object-scene images spread over the object skills, with parameters uniform over
    their full ranges, and their token labels; a pure function of the arguments."""
    skills = object_skills()
    images: list[Image.Image] = []
    labels: dict[str, list[list[int]]] = {name: [] for name in TOKEN_ATTRIBUTES}
    for i, skill in enumerate(skills):
        n = count // len(skills) + (i < count % len(skills))
        if not n:
            continue
        for ex in generate(Spec(skill, {}, n), seed=SEED_BASE + step, image_size=image_size):
            images.append(ex.image)
            for name, ids in token_labels(ex.scene, grid).items():
                labels[name].append(ids)
    return images, labels
