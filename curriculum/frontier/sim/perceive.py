"""Perfect perception of the built-in world: the scene behind a world picture, read from its pixels.

The simulated frontier must see what a strong vision model sees, and it runs in its own process,
so it cannot look a picture up in the run's memory: it reads the scene back from the pixels.
The world's renderer makes that possible: flat colours from a small palette on a plain
background, five shapes drawn by known code, bar charts with a fixed layout. ``read_scene``
decodes by analysis-by-synthesis, with the world's own drawing code:

- bar charts: the number of bars from the bars' row just above the axis, each value from its
  bar's top against the layout the renderer uses at this size (``scene.bar_layout``);
- shapes: each connected region of one colour is fitted with the shape, centre and radius whose
  rendering explains it best (pixels it covers must show its colour, or the colour of an object
  that may lie on top of it); a region no single object explains (two objects of one colour that
  overlap) is fitted with two or three.

Pictures wider than ``MAX_SIDE`` are read at that size (nearest-neighbour sampling keeps the
palette exact). What the answers need (each object's shape and colour, centres to well within
the world's smallest spatial gap, every bar's value) is recovered exactly at 64 pixels and up;
``tests/test_frontier_sim.py`` checks it on thousands of scenes of every skill. At 32 pixels
shapes are 2-4 pixels wide and a few renderings coincide, so a small share is misread there,
as by any reader of those pixels.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict, deque
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from curriculum.world.scene import (
    AXIS_COLOUR,
    BACKGROUND,
    BAR_AXIS_MAX,
    BAR_LABELS,
    COLOURS,
    GRID_COLOUR,
    SHAPES,
    Bar,
    BarChart,
    SceneObject,
    _draw_object,
    bar_layout,
)
from curriculum.world.skills import OBJECTS

MAX_SIDE = 128  # larger pictures are read at this size: every shape is then 15+ pixels wide
COLOUR_NAMES = tuple(COLOURS)
# Palette indices: 0 background, 1..6 the object colours, 7 chart ink (axis and text, whose colours
# are close), 8 gridlines.
PALETTE = np.array([BACKGROUND, *COLOURS.values(), AXIS_COLOUR, GRID_COLOUR], dtype=np.int32)
INK = 7
FAR = 60**2  # squared RGB distance past which a pixel matches no palette colour
SPILL_OTHER = 0.05  # cost of a fitted pixel that shows another colour (an object on top may hide it)
# The smallest object radius the world draws, as a fraction of the side: ``scene.object_radius``
# takes 85-100 % of the scene's size parameter.
MIN_RADIUS = 0.85 * float(OBJECTS["size"].lo)
SCENES_CACHED = 4096  # pictures whose reading is kept (judges of a panel read the same picture)
MASKS_CACHED = 200_000  # rendered candidate masks kept


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


class _Masks:
    """Candidate objects as drawn: a boolean patch per shape, sub-pixel offset and radius (to
    1/16 pixel), rendered once and moved by whole pixels."""

    STEP = 16  # positions and radii are fitted to 1/16 pixel

    def __init__(self) -> None:
        self.cache: dict[tuple[str, int, int, int], tuple[np.ndarray, int, int]] = {}

    def get(self, shape: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, int, int]:
        """The pixels an object covers, as a boolean patch and the image position of its corner."""
        q = self.STEP
        ix, iy = math.floor(cx), math.floor(cy)
        key = (shape, int((cx - ix) * q + 0.5), int((cy - iy) * q + 0.5), int(r * q + 0.5))
        found = self.cache.get(key)
        if found is None:
            if len(self.cache) >= MASKS_CACHED:
                self.cache.clear()
            found = self.cache[key] = self._render(*key)
        mask, r0, c0 = found
        return mask, iy + r0, ix + c0

    def area(self, shape: str, cx: float, cy: float, r: float) -> int:
        """How many pixels the object covers."""
        return int(self.get(shape, cx, cy, r)[0].sum())

    def _render(self, shape: str, fx: int, fy: int, rq: int) -> tuple[np.ndarray, int, int]:
        """Draw with the world's own code: ``_draw_object`` puts the centre at x * size - 0.5, so
        with size 1 the object's x is its pixel position + 0.5."""
        q, r = self.STEP, rq / self.STEP
        pad = math.ceil(r) + 2
        canvas = Image.new("RGB", (2 * pad + 2, 2 * pad + 2), (0, 0, 0))
        obj = SceneObject(shape, COLOUR_NAMES[0], r, pad + fx / q + 0.5, pad + fy / q + 0.5)
        _draw_object(ImageDraw.Draw(canvas), obj, 1)
        return np.asarray(canvas)[:, :, 0] > 0, -pad, -pad


_MASKS = _Masks()


class _Region:
    """The pixels of one colour to explain, with the cost of explaining them by given objects.

    The picture is padded so that every candidate mask fits; each pixel holds a category: to be
    covered (``TARGET``), blocked (background, chart ink, another region of the same colour: an
    object covering it would show there), or free (another colour, under which an object drawn
    later may hide part of this one; also the rest of a region while one part of it is fitted)."""

    TARGET, BLOCKED, FREE = 0, 1, 2

    def __init__(self, labels: np.ndarray, region: np.ndarray, colour: int, part: np.ndarray | None = None):
        (r0, c0), (r1, c1) = region.min(0), region.max(0)
        self.pad = max(r1 - r0, c1 - c0) + 8
        h, w = labels.shape
        cat = np.full((h + 2 * self.pad, w + 2 * self.pad), self.BLOCKED, dtype=np.int8)
        inner = cat[self.pad : self.pad + h, self.pad : self.pad + w]
        inner[(labels >= 1) & (labels <= 6) & (labels != colour)] = self.FREE
        if part is not None:
            inner[region[:, 0], region[:, 1]] = self.FREE
        target = region if part is None else part
        inner[target[:, 0], target[:, 1]] = self.TARGET
        self.cat, self.pixels, self.targets = cat, target, len(target)
        # No object of the world is smaller (a little less: radii are fitted to the pixels).
        self.r_min = 0.9 * MIN_RADIUS * h

    def _window(self, shape: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray] | None:
        mask, mr, mc = _MASKS.get(shape, cx, cy, r)
        r0, c0 = mr + self.pad, mc + self.pad
        if (
            r0 < 0
            or c0 < 0
            or r0 + mask.shape[0] > self.cat.shape[0]
            or c0 + mask.shape[1] > self.cat.shape[1]
        ):
            return None
        return mask, self.cat[r0 : r0 + mask.shape[0], c0 : c0 + mask.shape[1]]

    def cost(self, shape: str, cx: float, cy: float, r: float) -> float:
        """Region pixels left uncovered + covered pixels that are blocked (+ a little per free one)."""
        found = self._window(shape, cx, cy, r)
        if found is None:
            return float("inf")
        mask, window = found
        n = np.bincount(window[mask], minlength=3)
        return float(self.targets - n[self.TARGET] + n[self.BLOCKED] + SPILL_OTHER * n[self.FREE])

    def joint_cost(self, objects: list[tuple]) -> float:
        """The cost of explaining the region by several objects together."""
        covered = np.zeros(self.cat.shape, dtype=bool)
        for obj in objects:
            mask, mr, mc = _MASKS.get(*obj)
            r0, c0 = mr + self.pad, mc + self.pad
            if (
                r0 < 0
                or c0 < 0
                or r0 + mask.shape[0] > covered.shape[0]
                or c0 + mask.shape[1] > covered.shape[1]
            ):
                return float("inf")
            covered[r0 : r0 + mask.shape[0], c0 : c0 + mask.shape[1]] |= mask
        n = np.bincount(self.cat[covered], minlength=3)
        return float(self.targets - n[self.TARGET] + n[self.BLOCKED] + SPILL_OTHER * n[self.FREE])

    def uncovered(self, obj: tuple) -> np.ndarray:
        """The target pixels (row, col) that object ``obj`` does not cover."""
        mask, mr, mc = _MASKS.get(*obj)
        covered = {(mr + int(i), mc + int(j)) for i, j in zip(*np.nonzero(mask), strict=True)}
        return np.array([p for p in self.pixels.tolist() if tuple(p) not in covered]).reshape(-1, 2)

    def fit(self) -> tuple[float, tuple]:
        """The best (cost, (shape, cx, cy, r)) for the target pixels. Each shape is searched from
        the pixels' centroid with the radius whose drawing has their area (right when nothing
        hides part of the object), likeliest shape first; an exact fit ends the search. Without
        one, the two best shapes are searched again from the pixels' bounding box (better when
        something does hide part of it)."""
        starts = {shape: self._starts(shape) for shape in SHAPES}
        order = sorted(SHAPES, key=lambda shape: self.cost(shape, *starts[shape][1]))
        found = []
        for shape in order:
            found.append(self._search(shape, starts[shape][1], 0.5, 1 / 16))
            if found[-1][0] == 0:
                return found[-1]
        found.sort()
        again = [self._search(obj[0], starts[obj[0]][0], 0.5, 1 / 16) for _, obj in found[:2]]
        return min(found + again)

    def _starts(self, shape: str) -> list[tuple[float, float, float]]:
        """Where to start searching for ``shape``: its bounding box, and its moments."""
        (r0, c0), (r1, c1) = self.pixels.min(0), self.pixels.max(0)
        span = max(r1 - r0, c1 - c0) + 1
        box = ((c0 + c1) / 2, (r0 + r1) / 2, span / (1.7 if shape == "square" else 2.0))
        cy, cx = (float(v) for v in self.pixels.mean(0))
        lo, hi = (
            self.r_min,
            max(span, self.r_min),
        )  # the radius whose drawing covers as many pixels, by bisection
        for _ in range(8):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _MASKS.area(shape, cx, cy, mid) < len(self.pixels) else (lo, mid)
        r = (lo + hi) / 2
        if shape == "triangle":  # its centroid lies a third of the radius below its centre
            cy -= r / 3
        return [box, (cx, cy, r)]

    def _search(self, shape: str, start: tuple, step: float, finest: float) -> tuple[float, tuple]:
        """Local search over centre and radius: the best of the 26 neighbours at each step size,
        the step halved once none is better, down to ``finest``."""
        p = (start[0], start[1], max(start[2], self.r_min))
        f = self.cost(shape, *p)
        while step >= finest:
            g, q = min((self.cost(shape, *t), t) for t in
                       ((p[0] + a * step, p[1] + b * step, p[2] + c * step) for a, b, c in _NEIGHBOURS)
                       if t[2] >= self.r_min)  # fmt: skip
            if g < f:
                p, f = q, g
            else:
                step /= 2
        return f, (shape, *p)


_NEIGHBOURS = [
    (a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)
]


def _read_objects(labels: np.ndarray) -> dict[str, Any]:
    size = labels.shape[0]
    smallest = MIN_RADIUS * size  # the world's smallest object radius, in pixels
    objects: list[SceneObject] = []
    for colour in range(1, 7):
        mask = labels == colour
        if not mask.any():
            continue
        for pixels in _components(mask):
            if len(pixels) < 0.3 * 2 * smallest**2:
                continue  # a sliver of an object cut off by the one on top of it, not an object
            for shape, cx, cy, r in _explain(labels, pixels, colour, size):
                x, y = round(float(cx + 0.5) / size, 4), round(float(cy + 0.5) / size, 4)
                objects.append(SceneObject(shape, COLOUR_NAMES[colour - 1], round(float(r) / size, 4), x, y))
    objects.sort(key=lambda o: (o.y, o.x))
    overlap = any(
        max(abs(a.x - b.x), abs(a.y - b.y)) < a.size + b.size
        for i, a in enumerate(objects)
        for b in objects[i + 1 :]
    )
    return {"kind": "objects", "overlap": overlap, "objects": [o.to_dict() for o in objects]}


def _explain(labels: np.ndarray, pixels: np.ndarray, colour: int, size: int, most: int = 3) -> list[tuple]:
    """The objects behind one region of a colour: one, or (objects of one colour that overlap or
    touch) two or three, whichever explains it best once each extra object pays ``penalty``
    pixels. A single object's best fit leaves at most a thin misfit along its boundary, so more
    are tried only when a solid piece (2 x 2 pixels) is left unexplained or the misfit is large."""
    region = _Region(labels, pixels, colour)
    cost, one = region.fit()
    penalty = max(4.0, 0.1 * size)
    if cost <= penalty or (_solid(region.uncovered(one)) == 0 and cost < 3 * penalty):
        return [one]
    best, best_cost = [one], cost
    for k in range(2, most + 1):
        parts = _split(pixels, k)
        if any(len(p) < 3 for p in parts):
            break
        objects = [_Region(labels, pixels, colour, part).fit()[1] for part in parts]
        total = region.joint_cost(objects) + penalty * (k - 1)
        if total < best_cost:
            best, best_cost = objects, total
    return best


def _split(pixels: np.ndarray, k: int, rounds: int = 10) -> list[np.ndarray]:
    """``k`` clusters of pixels by k-means, seeded with mutually far pixels (deterministic)."""
    points = pixels.astype(float)
    centres = [points[0]]
    for _ in range(1, k):
        d = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(points[int(d.argmax())])
    centre = np.array(centres)
    for _ in range(rounds):
        nearest = ((points[:, None, :] - centre[None]) ** 2).sum(-1).argmin(1)
        moved = np.array(
            [points[nearest == j].mean(0) if (nearest == j).any() else centre[j] for j in range(k)]
        )
        if np.allclose(moved, centre):
            break
        centre = moved
    return [pixels[nearest == j] for j in range(k)]


def _solid(pixels: np.ndarray) -> int:
    """How many 2 x 2 blocks lie wholly inside a set of pixels."""
    if len(pixels) < 4:
        return 0
    cells = {(int(r), int(c)) for r, c in pixels}
    return sum((r + 1, c) in cells and (r, c + 1) in cells and (r + 1, c + 1) in cells for r, c in cells)
