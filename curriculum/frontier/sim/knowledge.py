"""What the simulated frontier knows about the built-in world: answers, likely mistakes, new items.

Its answers are the world's own program (``questions.answer_from_scene``) applied to the scene it
read from the pixels, so a simulated model that makes no deliberate error answers as the program
does. Around that sit the pieces a teacher needs: which questions it can safely ask of a scene it
read (well posed with a margin, so a one-pixel reading error cannot turn them ill posed), the
plausible wrong answers a model gives (a neighbouring count, the other yes/no, another colour
present in the picture), harder parameter values of a skill for the specs it proposes, and a
short summary of a scene that identifies an item whatever picture it is drawn in.
"""

from __future__ import annotations

import random
from typing import Any

from curriculum.generators import parse_value
from curriculum.world.generate import Spec, generate
from curriculum.world.questions import answer_from_scene, questions_for_scene
from curriculum.world.scene import BAR_LABELS, EDGE_MARGIN, SHAPES, is_clear
from curriculum.world.skills import COLOUR_NAMES, SKILLS

# Skills a strategy moves to when it adds a reasoning step (``auxiliary_extension``).
HARDER = {
    "colour": "count_attr",
    "shape": "count_attr",
    "count": "count_attr",
    "count_attr": "arithmetic",
    "compare": "arithmetic",
    "arithmetic": "arithmetic",
    "spatial": "spatial",
    "bar_value": "bar_compare",
    "bar_compare": "bar_value",
}
ERROR_TYPES = {
    "colour": "perception",
    "shape": "perception",
    "count": "counting",
    "count_attr": "counting",
    "arithmetic": "counting",
    "compare": "reasoning",
    "spatial": "spatial",
    "bar_value": "reading",
    "bar_compare": "reading",
}


def _scaled(scene: dict[str, Any], factor: float) -> dict[str, Any]:
    """The scene with every object's position multiplied by ``factor`` (offsets scale alike)."""
    if scene.get("kind") != "objects":
        return scene
    objects = [{**o, "x": o["x"] * factor, "y": o["y"] * factor} for o in scene["objects"]]
    return {**scene, "objects": objects}


def solve(scene: dict[str, Any] | None, question: str) -> tuple[str, str] | None:
    """(skill, answer) as a careful reader of the picture gives it: the world's program, except
    that two named objects at nearly the same height or column still get the side their centres
    are on (the program calls the question ill posed below the world's smallest gap, a reader
    who sees the picture still answers it). None for a question the program cannot read or that
    is ill posed for other reasons (an object that is not there, a tie)."""
    if scene is None:
        return None
    got = answer_from_scene(scene, question)
    if got is None:
        got = answer_from_scene(_scaled(scene, 1000.0), question)
        if got is not None and got[0] != "spatial":
            return None
    return got


def well_posed(scene: dict[str, Any], question: str) -> bool:
    """Whether the program answers ``question`` on ``scene`` even with every offset a third
    smaller: a question a reader may safely ask of a scene it read from pixels."""
    return answer_from_scene(_scaled(scene, 2 / 3), question) is not None


def questions(
    scene: dict[str, Any], rng: random.Random, skills: list[str] | None
) -> list[tuple[str, str, str]]:
    """Well-posed (skill, question, answer) triples about a scene, shuffled with ``rng``."""
    kind = scene.get("kind")
    usable = [s for s in (skills or list(SKILLS)) if s in SKILLS]
    usable = [s for s in usable if s.startswith("bar_") == (kind == "bars")]
    if not usable:
        return []
    return [q for q in questions_for_scene(scene, rng, usable) if well_posed(scene, q[1])]


def wrong_answers(truth: str, scene: dict[str, Any] | None) -> list[str]:
    """Plausible wrong answers to a question whose right answer is ``truth``, likeliest first:
    the other of yes/no, counts one and two away, other colours and shapes (those in the picture
    first), other bar labels of the chart."""
    low = truth.strip().lower()
    if low in ("yes", "no"):
        return ["no" if low == "yes" else "yes"]
    if low.lstrip("-").isdigit():
        n = int(low)
        return [str(v) for v in (n + 1, n - 1, n + 2, n - 2) if v >= 0]
    present_colours, present_shapes, labels = [], [], []
    if scene and scene.get("kind") == "objects":
        present_colours = [o["colour"] for o in scene["objects"]]
        present_shapes = [o["shape"] for o in scene["objects"]]
    if scene and scene.get("kind") == "bars":
        labels = [b["label"].lower() for b in scene["bars"]]
    for pool, seen in ((COLOUR_NAMES, present_colours), (SHAPES, present_shapes)):
        if low in pool:
            return [v for v in dict.fromkeys([*seen, *pool]) if v != low]
    if len(low) == 1 and low.upper() in BAR_LABELS:
        return [v for v in dict.fromkeys([*labels, *(c.lower() for c in BAR_LABELS)]) if v != low]
    return [f"not {truth}"]


def item_key(scene: dict[str, Any] | None, question: str) -> str:
    """What identifies an item for a model's mistakes: the question and the scene's content (its
    objects' shapes and colours, or its bars), not the pixels, so the same item drawn twice, or
    read from a generated variant, is the same item."""
    if scene is None:
        content = "unseen"
    elif scene.get("kind") == "bars":
        content = ",".join(f"{b['label']}{b['value']}" for b in scene["bars"])
    else:
        content = ",".join(sorted(f"{o['colour']} {o['shape']}" for o in scene["objects"]))
    return f"{' '.join(question.lower().split())}|{content}"


def harder_params(skill: str, described: dict[str, Any], rng: random.Random, most: int = 2) -> dict[str, str]:
    """Up to ``most`` parameters of ``skill`` set in the harder half of their range (as the
    prompt's skill list describes them), as the text values a proposal's ``params`` carries."""
    params = [(name, p) for name, p in described.get("params", {}).items() if p.get("harder")]
    rng.shuffle(params)
    out: dict[str, str] = {}
    for name, p in params[:most]:
        high = p["harder"] == "high"
        if "range" in p:
            lo, hi = p["range"]
            mid = (lo + hi) / 2
            span = (mid, hi) if high else (lo, mid)
            if p.get("type") == "int":
                value: Any = rng.randint(int(round(span[0])), int(span[1]))
            else:
                value = round(rng.uniform(*span), 3)
        else:
            choices = p.get("choices") or []
            if not choices:
                continue
            value = choices[-1] if high else choices[0]
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def fresh_item(skill: str, params: dict[str, str], seed: int) -> tuple[dict[str, Any], str, str] | None:
    """A new (scene, question, answer) of ``skill`` with ``params`` where the world accepts
    them (else with its full ranges): what a model writes as the content of a picture to draw."""
    for wanted in ({k: parse_value(v) for k, v in params.items()}, {}):
        try:
            ex = generate(Spec(skill, wanted, 1), seed, image_size=64)[0]
        except ValueError:
            continue
        if ex.scene is not None:
            return ex.scene, ex.question, ex.answer
    return None


def variant(scene: dict[str, Any], rng: random.Random, tries: int = 60) -> dict[str, Any]:
    """The same content drawn another way, as an image model's variants of one description: the
    objects at new places that keep every object's order from left to right and from top to
    bottom (so every relation between two of them holds, gaps of 0.05 or more stay so), or a
    chart in another colour. Falls back to moving every object by one small offset."""
    if scene.get("kind") == "bars":
        return {**scene, "colour": rng.choice([c for c in COLOUR_NAMES if c != scene["colour"]])}
    objects = scene["objects"]
    for _ in range(tries):
        xs, ys = _reorder(objects, "x", rng), _reorder(objects, "y", rng)
        if xs is None or ys is None:
            continue
        moved = [{**o, "x": x, "y": y} for o, x, y in zip(objects, xs, ys, strict=True)]
        boxes = [(o["x"], o["y"], o["size"]) for o in moved]
        if all(is_clear(*boxes[i], boxes[:i], bool(scene.get("overlap"))) for i in range(1, len(boxes))):
            return {**scene, "objects": moved}
    return _shifted(scene, rng)


def _reorder(
    objects: list[dict[str, Any]], axis: str, rng: random.Random, gap: float = 0.05
) -> list[float] | None:
    """New coordinates along ``axis`` in the objects' order along it, each inside the canvas;
    neighbours at least ``gap`` apart stay so. None when the draw breaks a bound."""
    order = sorted(range(len(objects)), key=lambda i: objects[i][axis])
    values = sorted(rng.uniform(0.05, 0.95) for _ in objects)
    out = [0.0] * len(objects)
    for rank, i in enumerate(order):
        o, v = objects[i], values[rank]
        if not o["size"] + EDGE_MARGIN <= v <= 1 - o["size"] - EDGE_MARGIN:
            return None
        if rank:
            j = order[rank - 1]
            if o[axis] - objects[j][axis] >= gap and v - out[j] < gap:
                return None
        out[i] = round(v, 4)
    return out


def _shifted(scene: dict[str, Any], rng: random.Random, shift: float = 0.02) -> dict[str, Any]:
    """Every object moved by one small offset (kept inside the canvas): every relation holds."""
    objects = scene["objects"]
    if not objects:
        return scene
    lo_x = min(o["x"] - o["size"] for o in objects) - EDGE_MARGIN
    hi_x = max(o["x"] + o["size"] for o in objects) + EDGE_MARGIN
    lo_y = min(o["y"] - o["size"] for o in objects) - EDGE_MARGIN
    hi_y = max(o["y"] + o["size"] for o in objects) + EDGE_MARGIN
    dx = min(max(rng.uniform(-shift, shift), -lo_x), 1 - hi_x)
    dy = min(max(rng.uniform(-shift, shift), -lo_y), 1 - hi_y)
    moved = [{**o, "x": round(o["x"] + dx, 4), "y": round(o["y"] + dy, 4)} for o in objects]
    return {**scene, "objects": moved}


def spoil(scene: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The scene drawn wrong, as image models do: one object left out or given another colour,
    or one bar at another height. The picture then need not show what its description says."""
    if scene.get("kind") == "bars":
        bars = [dict(b) for b in scene["bars"]]
        i = rng.randrange(len(bars))
        bars[i]["value"] = max(1, min(10, bars[i]["value"] + rng.choice([-2, -1, 1, 2])))
        return {**scene, "bars": bars}
    objects = [dict(o) for o in scene["objects"]]
    if not objects:
        return scene
    i = rng.randrange(len(objects))
    if len(objects) > 1 and rng.random() < 0.5:
        del objects[i]
    else:
        objects[i]["colour"] = rng.choice([c for c in COLOUR_NAMES if c != objects[i]["colour"]])
    return {**scene, "objects": objects}
