"""Picture descriptions the simulated frontier writes, and the simulated image model draws.

A ``generated`` proposal carries an ``image_prompt``: a description precise enough to redraw the
picture (the lrf prompt asks for "every object, colour, count and position the question relies
on"). The simulated analyst writes it from a world scene (``describe``); the simulated image
model reads it back (``parse``) and renders it with the world's renderer. A description it cannot
read (one a real model or a person wrote) still gets a picture: the shapes and colours it names,
placed at random, as an image model would draw something for any prompt.
"""

from __future__ import annotations

import random
import re
from typing import Any

from curriculum.world.scene import BAR_AXIS_MAX, SHAPES, PlacementError, plural, scatter
from curriculum.world.skills import COLOUR_NAMES

_WORD = "|".join
_OBJECT = re.compile(
    rf"\ban? ({_WORD(COLOUR_NAMES)}) ({_WORD(SHAPES)}) of radius ([0-9.]+) centred at "
    r"\(([0-9.]+), ([0-9.]+)\)"
)
_CHART = re.compile(
    rf"(\d+) ({_WORD(COLOUR_NAMES)}) bars labelled ([A-F](?:, [A-F])*) from left to right, "
    r"with values ([0-9]+(?:, [0-9]+)*)"
)


def describe(scene: dict[str, Any]) -> str:
    """A description of a world scene from which ``parse`` recovers it exactly."""
    if scene["kind"] == "bars":
        bars = scene["bars"]
        return (
            "A vertical bar chart on a plain grey background, with a dark axis from 0 to "
            f"{scene.get('axis_max', BAR_AXIS_MAX)} and a light gridline at every unit: {len(bars)} "
            f"{scene['colour']} bars labelled {', '.join(b['label'] for b in bars)} from left to right, "
            f"with values {', '.join(str(b['value']) for b in bars)}."
        )
    objects = scene["objects"]
    parts = [
        f"a {o['colour']} {o['shape']} of radius {o['size']:.4f} centred at ({o['x']:.4f}, {o['y']:.4f})"
        for o in objects
    ]
    overlap = "; shapes may overlap" if scene.get("overlap") else ""
    return (
        f"A square picture with a plain grey background and {len(objects)} flat shapes, nothing else "
        f"(positions from the top left corner as fractions of the side, drawn in this order{overlap}): "
        + "; ".join(parts)
        + "."
    )


def parse(text: str) -> dict[str, Any] | None:
    """The scene a description written by ``describe`` names; None for any other text."""
    chart = _CHART.search(text)
    if chart:
        labels, values = chart[3].split(", "), [int(v) for v in chart[4].split(", ")]
        if len(labels) != len(values) or len(labels) != int(chart[1]):
            return None
        return {
            "kind": "bars",
            "colour": chart[2],
            "axis_max": BAR_AXIS_MAX,
            "bars": [
                {"label": a, "value": min(v, BAR_AXIS_MAX)} for a, v in zip(labels, values, strict=True)
            ],
        }
    found = _OBJECT.findall(text)
    if not found:
        return None
    objects = [
        {"shape": shape, "colour": colour, "size": float(r), "x": float(x), "y": float(y)}
        for colour, shape, r, x, y in found
    ]
    if not all(0 < o["size"] < 0.5 and 0 <= o["x"] <= 1 and 0 <= o["y"] <= 1 for o in objects):
        return None
    return {"kind": "objects", "overlap": "may overlap" in text, "objects": objects}


def improvise(text: str, rng: random.Random) -> dict[str, Any]:
    """A scene for a description ``parse`` cannot read: the colours and shapes it names (or a few
    at random), scattered over the picture."""
    words = re.findall(r"[a-z]+", text.lower())
    colours = [w for w in words if w in COLOUR_NAMES] or [rng.choice(COLOUR_NAMES)]
    singular = {plural(s): s for s in SHAPES}
    shapes = [singular.get(w, w) for w in words]
    shapes = [w for w in shapes if w in SHAPES] or [rng.choice(SHAPES)]
    n = min(max(len(colours), len(shapes)), 6)
    items = [(shapes[i % len(shapes)], colours[i % len(colours)]) for i in range(n)]
    for size in (0.09, 0.07, 0.06):
        try:
            return scatter(rng, items, size, overlap=False).to_dict()
        except PlacementError:
            continue
    return {"kind": "objects", "overlap": False, "objects": []}
