"""Scenes of the built-in world and how they are drawn.

A scene is a small dataclass (coloured shapes on a plain background, or a bar chart) that
can be turned into a JSON-able dict with ``to_dict()`` and back with ``scene_from_dict``.
Every answer in the world is computed from these records, and ``render`` turns them into
pixels, so the scene dict stored with an example is the ground truth for both.

All geometry is stored as fractions of the canvas (positions and radii in [0, 1]), so one
scene renders to the same picture at 64, 224 or 448 pixels; line widths and fonts scale with
the image size. Shapes and colours are few and far apart so they stay recognisable at 64 px.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 80, 230),
    "yellow": (240, 200, 20),
    "purple": (140, 50, 190),
    "orange": (250, 130, 10),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
# Mid grey, close to the per-channel mean that CLIP-style image processors subtract: the
# background then normalises to about zero and the objects carry the signal. On a light
# background a from-scratch tiny VLM took over 10x more steps to read an object's colour.
BACKGROUND: tuple[int, int, int] = (123, 117, 104)
AXIS_COLOUR: tuple[int, int, int] = (30, 30, 30)
GRID_COLOUR: tuple[int, int, int] = (165, 160, 150)
TEXT_COLOUR: tuple[int, int, int] = (20, 20, 20)
BAR_AXIS_MAX = 10
BAR_LABELS = "ABCDEF"

EDGE_MARGIN = 0.02  # free border kept around every object, as a fraction of the canvas
# Scattered objects sit in the cells of a GRID x GRID layout, jittered inside their cell. At
# 64 px a cell is one 16 px vision token of the tiny models (8 px patches merged 2 x 2), so
# every object lies whole inside one token, and that token can be labelled with the object's
# shape and colour (``pretraining.token_labels``). Placed anywhere, small objects straddle tokens
# at random offsets and a from-scratch tiny VLM never learned shapes (shape accuracy stayed at
# chance for 4000 steps).
GRID = 4
SEPARATION = 0.02  # minimum empty gap between two objects' boxes when overlap is off


def plural(shape: str) -> str:
    """English plural of a shape name ("cross" -> "crosses")."""
    return shape + ("es" if shape.endswith(("s", "x")) else "s")


class PlacementError(ValueError):
    """Raised when objects cannot be placed under the requested constraints."""


@dataclass
class SceneObject:
    """One shape: ``size`` is its radius and (``x``, ``y``) its centre, as canvas fractions."""

    shape: str
    colour: str
    size: float
    x: float
    y: float

    def to_dict(self) -> dict[str, Any]:
        """The object as a flat JSON-able dict."""
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "x": self.x, "y": self.y}


@dataclass
class ObjectScene:
    """Shapes drawn in list order (later ones on top) on a plain light background."""

    objects: list[SceneObject] = field(default_factory=list)
    overlap: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The scene as a JSON-able dict (``kind`` "objects"), the ground truth of its answers."""
        return {"kind": "objects", "overlap": self.overlap, "objects": [o.to_dict() for o in self.objects]}


@dataclass
class Bar:
    """One bar of a chart: a letter label and a small integer value."""

    label: str
    value: int

    def to_dict(self) -> dict[str, Any]:
        """The bar as a JSON-able dict."""
        return {"label": self.label, "value": self.value}


@dataclass
class BarChart:
    """Vertical bars in one colour over an axis from 0 to ``axis_max`` with a line per unit."""

    bars: list[Bar] = field(default_factory=list)
    colour: str = "blue"
    axis_max: int = BAR_AXIS_MAX

    def to_dict(self) -> dict[str, Any]:
        """The chart as a JSON-able dict (``kind`` "bars"), the ground truth of its answers."""
        return {
            "kind": "bars",
            "colour": self.colour,
            "axis_max": self.axis_max,
            "bars": [b.to_dict() for b in self.bars],
        }


Scene = ObjectScene | BarChart


def scene_from_dict(data: dict[str, Any]) -> Scene:
    """Rebuild a scene dataclass from the dict that ``to_dict()`` wrote."""
    kind = data.get("kind")
    if kind == "objects":
        objs = [SceneObject(**o) for o in data["objects"]]
        return ObjectScene(objects=objs, overlap=bool(data.get("overlap", False)))
    if kind == "bars":
        bars = [Bar(**b) for b in data["bars"]]
        return BarChart(bars=bars, colour=data["colour"], axis_max=int(data.get("axis_max", BAR_AXIS_MAX)))
    raise ValueError(f"unknown scene kind {kind!r} (expected 'objects' or 'bars')")


# ----------------------------------------------------------------------------- placement


def is_clear(x: float, y: float, r: float, others: list[tuple[float, float, float]], overlap: bool) -> bool:
    """Whether a box of radius r at (x, y) keeps the rules against the already placed boxes.

    Without overlap the boxes must be apart by ``SEPARATION``. With overlap they may cross,
    but each centre (and a patch around it) must stay outside the other box, so no object is
    ever hidden and the colour at every centre is the object's own.
    """
    for ox, oy, orad in others:
        d = max(abs(x - ox), abs(y - oy))
        need = r + orad + SEPARATION if not overlap else max(r, orad) + 0.4 * min(r, orad)
        if d < need:
            return False
    return True


def random_position(rng: random.Random, r: float, overlap: bool = False) -> tuple[float, float]:
    """A centre in a random grid cell, jittered so that a box of radius r stays in the cell.

    With ``overlap`` the jitter may carry the box half a cell into its neighbours. The centre
    is clamped so that the box keeps the edge margin inside the canvas.
    """
    lo, hi = r + EDGE_MARGIN, 1.0 - r - EDGE_MARGIN
    if lo > hi:
        raise PlacementError(f"an object of radius {r:.3f} does not fit in the canvas")
    half = 0.5 / GRID
    slack = half if overlap else max(0.0, half - r - SEPARATION / 2)

    def coord() -> float:
        centre = (rng.randrange(GRID) + 0.5) / GRID + rng.uniform(-slack, slack)
        return round(min(max(centre, lo), hi), 4)

    return coord(), coord()


def place(
    rng: random.Random,
    radii: list[float],
    overlap: bool,
    existing: list[tuple[float, float, float]] | None = None,
    tries: int = 60,
    restarts: int = 25,
) -> list[tuple[float, float]]:
    """Rejection-sample centres for boxes of the given radii, avoiding ``existing`` boxes.

    Each object gets ``tries`` random positions; if one cannot be placed the whole layout
    starts again, at most ``restarts`` times, after which ``PlacementError`` says why.
    """
    fixed = list(existing or [])
    for _ in range(restarts):
        placed: list[tuple[float, float, float]] = []
        for r in radii:
            for _ in range(tries):
                x, y = random_position(rng, r, overlap)
                if is_clear(x, y, r, fixed + placed, overlap):
                    placed.append((x, y, r))
                    break
            else:
                break
        else:
            return [(x, y) for x, y, _ in placed]
    mode = "with partial overlap" if overlap else "without overlap"
    raise PlacementError(
        f"could not place {len(radii)} objects of radius up to {max(radii, default=0):.3f} "
        f"{mode} next to {len(fixed)} fixed ones after {restarts} attempts"
    )


def object_radius(rng: random.Random, size: float) -> float:
    """One object's radius: 85-100 % of the scene's nominal ``size``, so sizes vary a little."""
    return round(size * rng.uniform(0.85, 1.0), 4)


def scatter(
    rng: random.Random,
    items: list[tuple[str, str]],
    size: float,
    overlap: bool,
    fixed: list[SceneObject] | None = None,
) -> ObjectScene:
    """A scene of (shape, colour) items placed at random around ``fixed`` objects.

    The drawing order is shuffled so that no object kind is always on top.
    """
    fixed = list(fixed or [])
    radii = [object_radius(rng, size) for _ in items]
    spots = place(rng, radii, overlap, existing=[(o.x, o.y, o.size) for o in fixed])
    objs = fixed + [SceneObject(s, c, r, x, y) for (s, c), r, (x, y) in zip(items, radii, spots, strict=True)]
    rng.shuffle(objs)
    return ObjectScene(objects=objs, overlap=overlap)


def place_pair(
    rng: random.Random,
    radii: tuple[float, float],
    axis: str,
    gap: tuple[float, float],
    first_before: bool,
    overlap: bool,
    tries: int = 100,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centres for two objects whose offset along ``axis`` ("x" or "y") lies in ``gap``.

    The first object comes before the second along the axis (left of / above it) when
    ``first_before``; the other coordinate is free. Raises ``PlacementError`` if impossible.
    """
    r1, r2 = radii
    lo1, hi1, lo2, hi2 = r1 + EDGE_MARGIN, 1 - r1 - EDGE_MARGIN, r2 + EDGE_MARGIN, 1 - r2 - EDGE_MARGIN
    sign = 1 if first_before else -1
    reach = (hi2 - lo1) if first_before else (hi1 - lo2)
    if gap[0] > reach:
        raise PlacementError(f"an offset of {gap[0]} does not fit objects of radius {r1:.3f} and {r2:.3f}")
    for _ in range(tries):
        d = rng.uniform(gap[0], min(gap[1], reach))
        a = rng.uniform(max(lo1, lo2 - sign * d), min(hi1, hi2 - sign * d))
        b = a + sign * d
        p1, p2 = rng.uniform(lo1, hi1), rng.uniform(lo2, hi2)
        (x1, y1), (x2, y2) = ((a, p1), (b, p2)) if axis == "x" else ((p1, a), (p2, b))
        x1, y1, x2, y2 = (round(v, 4) for v in (x1, y1, x2, y2))
        offset = (x2 - x1) if axis == "x" else (y2 - y1)
        if sign * offset >= gap[0] and is_clear(x1, y1, r1, [(x2, y2, r2)], overlap):
            return (x1, y1), (x2, y2)
    raise PlacementError(f"could not place two objects {gap[0]} apart along {axis} after {tries} tries")


# ----------------------------------------------------------------------------- rendering


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font at roughly ``px`` pixels (bitmap fallback without FreeType)."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "cross":
        t = max(0.34 * r, 1.0)
        return [
            (cx - t, cy - r),
            (cx + t, cy - r),
            (cx + t, cy - t),
            (cx + r, cy - t),
            (cx + r, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + r),
            (cx - t, cy + r),
            (cx - t, cy + t),
            (cx - r, cy + t),
            (cx - r, cy - t),
            (cx - t, cy - t),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, size: int) -> None:
    if obj.shape not in SHAPES:
        raise ValueError(f"unknown shape {obj.shape!r} (expected one of {', '.join(SHAPES)})")
    if obj.colour not in COLOURS:
        raise ValueError(f"unknown colour {obj.colour!r} (expected one of {', '.join(COLOURS)})")
    fill = COLOURS[obj.colour]
    cx, cy, r = obj.x * size - 0.5, obj.y * size - 0.5, obj.size * size
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        h = 0.85 * r
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    else:
        draw.polygon(_shape_points(obj.shape, cx, cy, r), fill=fill)


@dataclass(frozen=True)
class BarLayout:
    """Pixel geometry of a rendered chart: plot box, value-to-pixel scale and bar boxes."""

    left: int
    top: int
    right: int
    bottom: int
    unit: float
    boxes: tuple[tuple[int, int, int, int], ...]


def bar_layout(chart: BarChart, image_size: int) -> BarLayout:
    """Where the plot area and each bar (x0, y0, x1, y1, inclusive) fall at this image size."""
    s = image_size
    left, right = round(0.2 * s), s - round(0.05 * s)
    top, bottom = round(0.06 * s), s - round(0.17 * s)
    unit = (bottom - top) / max(chart.axis_max, 1)
    slot = (right - left) / max(len(chart.bars), 1)
    boxes = []
    for i, bar in enumerate(chart.bars):
        x0 = round(left + (i + 0.2) * slot)
        x1 = max(round(left + (i + 0.8) * slot) - 1, x0)
        y0 = round(bottom - bar.value * unit)
        boxes.append((x0, y0, x1, bottom - 1))
    return BarLayout(left, top, right, bottom, unit, tuple(boxes))


def _draw_bars(draw: ImageDraw.ImageDraw, chart: BarChart, size: int) -> None:
    if chart.colour not in COLOURS:
        raise ValueError(f"unknown colour {chart.colour!r} (expected one of {', '.join(COLOURS)})")
    lay = bar_layout(chart, size)
    lw = max(1, round(size / 64))
    font = _font(max(8, round(0.13 * size)))
    for v in range(1, chart.axis_max + 1):
        y = round(lay.bottom - v * lay.unit)
        draw.line([(lay.left, y), (lay.right, y)], fill=GRID_COLOUR, width=max(1, lw // 2))
    for box, bar in zip(lay.boxes, chart.bars, strict=True):
        if bar.value > 0:
            draw.rectangle(box, fill=COLOURS[chart.colour])
        cx = (box[0] + box[2] + 1) / 2
        draw.text((cx, lay.bottom + lw + 1), bar.label, fill=TEXT_COLOUR, font=font, anchor="mt")
    draw.line([(lay.left - lw, lay.bottom), (lay.right, lay.bottom)], fill=AXIS_COLOUR, width=lw)
    draw.line([(lay.left - lw, lay.top), (lay.left - lw, lay.bottom)], fill=AXIS_COLOUR, width=lw)
    for v in (0, chart.axis_max // 2, chart.axis_max):
        y = lay.bottom - v * lay.unit
        draw.text((lay.left - 2 * lw - 1, y), str(v), fill=TEXT_COLOUR, font=font, anchor="rm")


def render(scene: Scene | dict[str, Any], image_size: int = 64) -> Image.Image:
    """Draw a scene (dataclass or dict) as an RGB image of ``image_size`` x ``image_size``."""
    if isinstance(scene, dict):
        scene = scene_from_dict(scene)
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if isinstance(scene, ObjectScene):
        for obj in scene.objects:
            _draw_object(draw, obj, image_size)
    else:
        draw.fontmode = "1" if image_size < 128 else "L"
        _draw_bars(draw, scene, image_size)
    return image
