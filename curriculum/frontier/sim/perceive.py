"""Perfect perception of the built-in world: the scene behind a world picture, read from its pixels.

The simulated frontier must see what a strong vision model sees, and it runs in its own process,
so it cannot look a picture up in the run's memory: it reads the scene back from the pixels.
The world's renderer makes that possible: flat colours from a small palette on a plain
background, five shapes drawn by known code, bar charts with a fixed layout. ``read_scene``
decodes by analysis-by-synthesis, with the world's own drawing code:

- bar charts: the number of bars from the bars' row just above the axis, each value from its
  bar's top against the layout the renderer uses at this size (``scene.bar_layout``);
- shapes: each connected region of one colour is fitted with the shape, centre and radius whose
  drawing explains it best (``fit.py``); a region no single object explains (objects of one
  colour that overlap or touch) with several; a half-hidden object with the radius the
  picture's unhidden objects have (one scene's radii differ by 15 % at most).

Pictures wider than ``MAX_SIDE`` are read at that size (nearest-neighbour sampling keeps the
palette exact). What the answers need (each object's shape and colour, centres to well within
the world's smallest spatial gap, every bar's value) is recovered exactly at 64 pixels and up;
``tests/test_frontier_sim.py`` checks it on thousands of scenes of every skill. At 32 pixels
shapes are 2-4 pixels wide and a few renderings coincide, so a small share is misread there,
as by any reader of those pixels.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, deque
from typing import Any

import numpy as np
from PIL import Image

from curriculum.frontier.sim.fit import MIN_RADIUS, explain
from curriculum.world.scene import (
    AXIS_COLOUR,
    BACKGROUND,
    BAR_AXIS_MAX,
    BAR_LABELS,
    COLOURS,
    GRID_COLOUR,
    Bar,
    BarChart,
    SceneObject,
    bar_layout,
)

MAX_SIDE = 128  # larger pictures are read at this size: every shape is then 15+ pixels wide
COLOUR_NAMES = tuple(COLOURS)
# Palette indices: 0 background, 1..6 the object colours, 7 chart ink (axis and text, whose colours
# are close), 8 gridlines.
PALETTE = np.array([BACKGROUND, *COLOURS.values(), AXIS_COLOUR, GRID_COLOUR], dtype=np.int32)
INK = 7
FAR = 60**2  # squared RGB distance past which a pixel matches no palette colour
SCENES_CACHED = 4096  # pictures whose reading is kept (judges of a panel read the same picture)


def read_scene(image: Image.Image) -> dict[str, Any] | None:
    """The scene dict (``scene.to_dict()`` form) behind a world picture; None for a picture the
    world did not draw (not square, or colours outside its palette)."""
    key = hashlib.sha1(image.tobytes() + f"{image.mode}{image.size}".encode()).hexdigest()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    scene = _read(image)
    with _lock:
        _cache[key] = scene
        while len(_cache) > SCENES_CACHED:
            _cache.popitem(last=False)
    return scene


_cache: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
_lock = threading.Lock()


def _read(image: Image.Image) -> dict[str, Any] | None:
    image = image.convert("RGB")
    if image.width != image.height or image.width < 32:
        return None
    small = image if image.width <= MAX_SIDE else image.resize((MAX_SIDE, MAX_SIDE), Image.Resampling.NEAREST)
    labels = _classify(np.asarray(small, dtype=np.int32))
    if labels is None:
        return None
    if _is_chart(labels):
        return _read_chart(np.asarray(image, dtype=np.int32))
    return _read_objects(labels)


def _classify(rgb: np.ndarray) -> np.ndarray | None:
    """Each pixel's palette index; None when more than 1 % of pixels match no palette colour."""
    d = ((rgb[..., None, :] - PALETTE) ** 2).sum(-1)
    if (d.min(-1) > FAR).mean() > 0.01:
        return None
    return d.argmin(-1).astype(np.int8)


def _is_chart(labels: np.ndarray) -> bool:
    """Charts have an axis: a column of ink at least half the picture tall."""
    ink = labels == INK
    return bool(ink.any() and ink.sum(0).max() >= labels.shape[0] // 2)


# ----------------------------------------------------------------------------- bar charts


def _read_chart(rgb: np.ndarray) -> dict[str, Any] | None:
    """The chart behind a picture, read where the renderer puts things at this size: the bars'
    colour and number from the row just above the axis, each value from its bar's top."""
    size = rgb.shape[0]
    lay = bar_layout(BarChart([Bar("A", 0)]), size)
    above = lay.bottom - max(1, round(size / 64)) - 1  # the first row above the axis line
    row = _classify(rgb[above, lay.left : lay.right])
    if row is None:
        return None
    inked = row[(row >= 1) & (row <= 6)]
    if not len(inked):
        return None
    colour = int(np.bincount(inked).argmax())
    runs = np.flatnonzero(np.diff(np.concatenate([[0], (row == colour).astype(np.int8), [0]])) == 1)
    n = len(runs)
    if not 1 <= n <= len(BAR_LABELS):
        return None
    chart = BarChart([Bar(BAR_LABELS[i], 0) for i in range(n)], COLOUR_NAMES[colour - 1])
    for bar, (x0, _, x1, _) in zip(chart.bars, bar_layout(chart, size).boxes, strict=True):
        column = _classify(rgb[: above + 1, (x0 + x1) // 2]) == colour
        top = above + 1 - _run_from_end(column)
        bar.value = min(range(BAR_AXIS_MAX + 1), key=lambda v: abs(round(lay.bottom - v * lay.unit) - top))
    return chart.to_dict()


def _run_from_end(column: np.ndarray) -> int:
    """How many trailing entries of a boolean column are True."""
    false = np.flatnonzero(~column)
    return len(column) - (int(false[-1]) + 1) if len(false) else len(column)


# ----------------------------------------------------------------------------- shapes


def _components(mask: np.ndarray) -> list[np.ndarray]:  # scipy is not a dependency
    """The 8-connected regions of a boolean mask, each as an array of (row, col) pixels."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    out = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = deque([start]), []
        while queue:
            r, c = queue.popleft()
            pixels.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        queue.append((rr, cc))
        out.append(np.array(pixels))
    return out


def _read_objects(labels: np.ndarray) -> dict[str, Any]:
    """The objects of a picture. Every region of a colour is explained alone first; then, as one
    scene's objects all have radii within 85-100 % of its size, a region whose objects fall far
    from the radius of the objects nothing touches (hence nothing hides) is explained again with
    the radius held near it: a small shape fitted to the visible top of a half-hidden one."""
    size = labels.shape[0]
    smallest = MIN_RADIUS * size  # the world's smallest object radius, in pixels
    regions = []
    for colour in range(1, 7):
        mask = labels == colour
        if not mask.any():
            continue
        for pixels in _components(mask):
            if len(pixels) >= 0.3 * 2 * smallest**2:  # smaller: a sliver of a hidden object's edge
                regions.append((colour, pixels))
    fits = [explain(labels, pixels, colour, size) for colour, pixels in regions]
    lone = [
        f[0][3]
        for (_, pixels), f in zip(regions, fits, strict=True)
        if len(f) == 1 and _isolated(labels, pixels)
    ]
    if lone:
        ref = float(np.median(lone))
        bounds = (0.8 * ref, 1.25 * ref)
        for i, ((colour, pixels), found) in enumerate(zip(regions, fits, strict=True)):
            if any(not bounds[0] <= obj[3] <= bounds[1] for obj in found):
                fits[i] = explain(labels, pixels, colour, size, radii=bounds)
    objects = [
        SceneObject(shape, COLOUR_NAMES[colour - 1], round(float(r) / size, 4),
                    round(float(cx + 0.5) / size, 4), round(float(cy + 0.5) / size, 4))
        for (colour, _), found in zip(regions, fits, strict=True)
        for shape, cx, cy, r in found
    ]  # fmt: skip
    objects.sort(key=lambda o: (o.y, o.x))
    overlap = any(
        max(abs(a.x - b.x), abs(a.y - b.y)) < a.size + b.size
        for i, a in enumerate(objects)
        for b in objects[i + 1 :]
    )
    return {"kind": "objects", "overlap": overlap, "objects": [o.to_dict() for o in objects]}


def _isolated(labels: np.ndarray, pixels: np.ndarray) -> bool:
    """Whether only background surrounds a region (no other object touches it, so none hides it)."""
    mask = np.zeros(labels.shape, dtype=bool)
    mask[pixels[:, 0], pixels[:, 1]] = True
    grown = np.pad(mask, 1)
    ring = np.zeros_like(grown)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            ring |= np.roll(np.roll(grown, dr, 0), dc, 1)
    ring = ring[1:-1, 1:-1] & ~mask
    return bool((labels[ring] == 0).all())
