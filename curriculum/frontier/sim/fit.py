"""Fitting world objects to the pixels of one colour, with the world's own drawing code.

A region of one colour (``perceive``) is explained by the shape, centre and radius whose drawing
covers it best: the cost of a candidate is the region's pixels it leaves uncovered plus the
pixels it covers that show background or chart ink (it would be visible there), plus a little
per pixel of another colour it covers (an object drawn later may hide it there). Candidates are
drawn once per shape, sub-pixel offset and radius (to 1/16 pixel) and moved by whole pixels; a
local search over centre and radius finds the best, from starts that suit a whole object (its
centroid and area) and a partly hidden one (the edges nothing hides). Two to five objects of one
colour that overlap or touch form one region; they are split by k-means, fitted, and fitted
again to what the others leave, and kept when they explain it much better than fewer do.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from curriculum.world.scene import COLOURS, SHAPES, SceneObject, _draw_object
from curriculum.world.skills import OBJECTS

COLOUR_NAMES = tuple(COLOURS)
SPILL_OTHER = 0.05  # cost of a fitted pixel that shows another colour (an object on top may hide it)
# The smallest object radius the world draws, as a fraction of the side: ``scene.object_radius``
# takes 85-100 % of the scene's size parameter.
MIN_RADIUS = 0.85 * float(OBJECTS["size"].lo)
MASKS_CACHED = 200_000  # rendered candidate masks kept


class Masks:
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


MASKS = Masks()


class Region:
    """The pixels of one colour to explain, with the cost of explaining them by given objects.

    The picture is padded so that every candidate mask fits; each pixel holds a category: to be
    covered (``TARGET``), blocked (background, chart ink, another region of the same colour: an
    object covering it would show there), or free (another colour, under which an object drawn
    later may hide part of this one; also the rest of a region while one part of it is fitted)."""

    TARGET, BLOCKED, FREE = 0, 1, 2

    def __init__(
        self,
        labels: np.ndarray,
        region: np.ndarray,
        colour: int,
        part: np.ndarray | None = None,
        radii: tuple[float, float] | None = None,
    ) -> None:
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
        # No object of the world is smaller (a little less: radii are fitted to the pixels); with
        # ``radii``, the range the picture's other objects allow.
        self.r_min = max(0.9 * MIN_RADIUS * h, radii[0] if radii else 0.0)
        self.r_max = radii[1] if radii else math.inf
        self.r_usual = math.sqrt(radii[0] * radii[1]) if radii else None

    def _window(self, shape: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray] | None:
        mask, mr, mc = MASKS.get(shape, cx, cy, r)
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
            mask, mr, mc = MASKS.get(*obj)
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
        mask, mr, mc = MASKS.get(*obj)
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
        if self.hidden_sides():  # partly hidden: start from the edges nothing hides
            again += [self._search(obj[0], self._anchored(obj[0]), 0.5, 1 / 16) for _, obj in found[:3]]
        return min(found + again)

    def hidden_sides(self) -> tuple[bool, bool, bool, bool]:
        """Whether another colour lies just past the target's box on its left, right, top, bottom
        (empty when on none): the sides where an object on top may hide part of this one."""
        (r0, c0), (r1, c1) = self.pixels.min(0), self.pixels.max(0)
        p, cat = self.pad, self.cat
        rows, cols = slice(r0 + p, r1 + p + 1), slice(c0 + p, c1 + p + 1)
        sides = (
            bool((cat[rows, c0 + p - 1] == self.FREE).any()),
            bool((cat[rows, c1 + p + 1] == self.FREE).any()),
            bool((cat[r0 + p - 1, cols] == self.FREE).any()),
            bool((cat[r1 + p + 1, cols] == self.FREE).any()),
        )
        return sides if any(sides) else ()

    def _anchored(self, shape: str) -> tuple[float, float, float]:
        """A start for a partly hidden object: the radius from a side to side extent nothing
        hides (else the picture's usual radius), the centre that radius away from the edges
        nothing hides (a bounding box centre is off by the hidden part)."""
        (r0, c0), (r1, c1) = self.pixels.min(0), self.pixels.max(0)
        left, right, top, bottom = self.hidden_sides() or (False,) * 4
        reach = 0.85 if shape == "square" else 1.0  # half the extent, per unit of radius
        sizes = [(c1 - c0 + 1) / (2 * reach)] if not (left or right) else []
        sizes += [(r1 - r0 + 1) / (2 * reach)] if not (top or bottom) else []
        r = max(sizes) if sizes else self.r_usual or (max(r1 - r0, c1 - c0) + 1) / (2 * reach)
        half = reach * r
        cx = c0 + half - 0.5 if not left else c1 - half + 0.5 if not right else (c0 + c1) / 2
        cy = r0 + half - 0.5 if not top else r1 - half + 0.5 if not bottom else (r0 + r1) / 2
        return float(cx), float(cy), float(r)

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
            lo, hi = (mid, hi) if MASKS.area(shape, cx, cy, mid) < len(self.pixels) else (lo, mid)
        r = (lo + hi) / 2
        if shape == "triangle":  # its centroid lies a third of the radius below its centre
            cy -= r / 3
        return [box, (cx, cy, r)]

    def _search(self, shape: str, start: tuple, step: float, finest: float) -> tuple[float, tuple]:
        """Local search over centre and radius: the best move along one axis, else the best of the
        other 20 neighbours, at each step size; the step halved once none is better, down to
        ``finest``. A cost exactly 0 (the drawing reproduces the pixels) ends it."""
        p = (start[0], start[1], min(max(start[2], self.r_min), self.r_max))
        f = self.cost(shape, *p)
        while step >= finest and f > 0:
            for moves in (AXES, DIAGONALS):
                g, q = min((self.cost(shape, *t), t) for t in
                           ((p[0] + a * step, p[1] + b * step, p[2] + c * step) for a, b, c in moves)
                           if self.r_min <= t[2] <= self.r_max)  # fmt: skip
                if g < f:
                    p, f = q, g
                    break
            else:
                step /= 2
        return f, (shape, *p)


NEIGHBOURS = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
AXES = [m for m in NEIGHBOURS if sum(map(abs, m)) == 1]
DIAGONALS = [m for m in NEIGHBOURS if sum(map(abs, m)) > 1]


def explain(
    labels: np.ndarray,
    pixels: np.ndarray,
    colour: int,
    size: int,
    most: int = 5,
    radii: tuple[float, float] | None = None,
) -> list[tuple]:
    """The objects behind one region of a colour: one, or (objects of one colour that overlap or
    touch) up to ``most``, whichever explains it best once each extra object pays ``penalty``
    pixels. A single object's best fit leaves at most a thin misfit along its boundary, so more
    are tried only when a solid piece (2 x 2 pixels) is left unexplained or the misfit is large."""
    region = Region(labels, pixels, colour, radii=radii)
    cost, one = region.fit()
    penalty = max(4.0, 0.15 * size)
    if cost <= penalty or (_solid(region.uncovered(one)) == 0 and cost < 3 * penalty):
        return [one]
    best, best_cost, left = [one], cost, cost
    for k in range(2, most + 1):
        if left <= penalty:
            break  # what is left is a misfit along boundaries: no further object is there
        parts = _split(pixels, k)
        if any(len(p) < 3 for p in parts):
            break
        fitted = [Region(labels, pixels, colour, part, radii).fit()[1] for part in parts]
        objects = _refine(labels, pixels, colour, fitted, radii)
        left = region.joint_cost(objects)
        if left + penalty * (k - 1) >= best_cost:
            break  # one more object did not pay for itself: more will not either
        best, best_cost = objects, left + penalty * (k - 1)
    return best


def _refine(
    labels: np.ndarray,
    pixels: np.ndarray,
    colour: int,
    objects: list[tuple],
    radii: tuple[float, float] | None = None,
    rounds: int = 2,
) -> list[tuple]:
    """Objects fitted to the parts of a split region, each fitted again to what the others leave
    unexplained (k-means cuts a region of two overlapping objects near, not at, their boundary)."""
    objects = list(objects)
    for _ in range(rounds):
        for i in range(len(objects)):
            covered: set[tuple[int, int]] = set()
            for obj in objects[:i] + objects[i + 1 :]:
                mask, mr, mc = MASKS.get(*obj)
                covered.update((mr + int(a), mc + int(b)) for a, b in zip(*np.nonzero(mask), strict=True))
            part = np.array([p for p in pixels.tolist() if tuple(p) not in covered]).reshape(-1, 2)
            if len(part) < 3:
                continue
            region = Region(labels, pixels, colour, part, radii)
            objects[i] = min(
                region._search(shape, start, 0.5, 1 / 16)
                for shape in SHAPES
                for start in (objects[i][1:], region._anchored(shape))
            )[1]
    return objects


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
