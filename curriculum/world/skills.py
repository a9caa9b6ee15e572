"""The skills of the built-in world: what each one asks, and how its answer is computed.

A skill samples a scene from a ``random.Random`` and concrete parameter values, writes one
question about it and computes the answer from the scene itself, so every label is right
by construction. Each skill declares its parameters with their full valid ranges and which
end of each range is harder, so the curriculum can ask for hard slices and
``Skill.difficulty`` can place any example on a 0 (easy) .. 1 (hard) scale.

Answers are short lowercase strings: colour and shape names, "yes"/"no", integers as digits
and bar labels as lowercase letters ("c"); questions name bars with capitals ("bar C").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .scene import (
    BAR_AXIS_MAX,
    BAR_LABELS,
    COLOURS,
    SHAPES,
    Bar,
    BarChart,
    Scene,
    SceneObject,
    object_radius,
    place_pair,
    plural,
    scatter,
)

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
RELATIONS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


@dataclass(frozen=True)
class Param:
    """One difficulty knob: its type, full valid range or choices, and which end is harder.

    ``harder`` is "high" (larger values, or True for a bool, are harder), "low", or None
    when the parameter does not change difficulty.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    harder: str | None = None
    doc: str = ""

    def options(self) -> tuple[Any, ...]:
        """The finite set of values of a bool or choice parameter."""
        return (False, True) if self.kind == "bool" else self.choices

    def hardness(self, value: Any) -> float | None:
        """Where ``value`` sits from easy (0) to hard (1), or None for neutral parameters."""
        if self.harder is None:
            return None
        if self.kind == "bool":
            return float(bool(value) == (self.harder == "high"))
        span = float(self.hi - self.lo) or 1.0
        t = min(max((float(value) - self.lo) / span, 0.0), 1.0)
        return t if self.harder == "high" else 1.0 - t

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: type, range or choices, harder end, meaning."""
        numeric = self.kind in ("int", "float")
        domain = {"range": [self.lo, self.hi]} if numeric else {"choices": list(self.options())}
        return {"type": self.kind, **domain, "harder": self.harder, "description": self.doc}


Sampler = Callable[[random.Random, dict[str, Any]], tuple[Scene, str, str]]
Check = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class Skill:
    """A question type with its parameters, an optional joint constraint and its sampler."""

    name: str
    description: str
    templates: tuple[str, ...]
    answer: str
    params: dict[str, Param]
    sampler: Sampler
    constraint: Check | None = None

    def check(self, params: dict[str, Any]) -> str | None:
        """A message if these concrete values cannot go together, else None."""
        return self.constraint(params) if self.constraint else None

    def sample(self, rng: random.Random, params: dict[str, Any]) -> tuple[Scene, str, str]:
        """Sample (scene, question, answer); may raise ``PlacementError`` for crowded scenes."""
        return self.sampler(rng, params)

    def difficulty(self, params: dict[str, Any]) -> float:
        """Mean hardness in [0, 1] of the parameters that affect difficulty."""
        hs = [h for k, p in self.params.items() if k in params and (h := p.hardness(params[k])) is not None]
        return round(sum(hs) / len(hs), 4) if hs else 0.0

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: what it asks, the answer type and every parameter."""
        params = {k: p.describe() for k, p in self.params.items()}
        return {
            "description": self.description,
            "questions": list(self.templates),
            "answer": self.answer,
            "params": params,
        }


# ----------------------------------------------------------------------------- declarations

SKILLS: dict[str, Skill] = {}


def _int(lo: int, hi: int, doc: str, harder: str | None = "high") -> Param:
    return Param("int", lo, hi, harder=harder, doc=doc)


def _float(lo: float, hi: float, doc: str, harder: str | None = "high") -> Param:
    return Param("float", lo, hi, harder=harder, doc=doc)


def _choice(*choices: str, doc: str) -> Param:
    return Param("choice", choices=choices, doc=doc)


OBJECTS = {
    "size": _float(0.06, 0.12, "object radius as a fraction of the image side", harder="low"),
    "overlap": Param("bool", harder="high", doc="objects may partly overlap (every centre stays visible)"),
}
YES_NO = _choice("yes", "no", doc="the answer to give")


def _skill(
    name: str,
    description: str,
    answer: str,
    templates: list[str],
    params: dict[str, Param],
    check: Check | None = None,
) -> Callable[[Sampler], Sampler]:
    """Register the decorated sampler as skill ``name``."""

    def register(sampler: Sampler) -> Sampler:
        SKILLS[name] = Skill(name, description, tuple(templates), answer, params, sampler, check)
        return sampler

    return register


def _at_most_9(*keys: str) -> Check:
    def check(p: dict[str, Any]) -> str | None:
        n = sum(p[k] for k in keys)
        return f"{' + '.join(keys)} must be at most 9 objects, got {n}" if n > 9 else None

    return check


def _other(rng: random.Random, pool: tuple[str, ...], *exclude: str) -> str:
    return rng.choice([v for v in pool if v not in exclude])


def _any(rng: random.Random) -> tuple[str, str]:
    return rng.choice(SHAPES), rng.choice(COLOUR_NAMES)


# ----------------------------------------------------------------------------- skills


def _identify(ask: str) -> Sampler:
    """Sampler for "what <ask> is the object with the other attribute?" (one such object)."""

    def sample(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
        shape, colour = _any(rng)
        items = [(shape, colour)]
        for s, c in (_any(rng) for _ in range(p["distractors"])):  # the other attribute never repeats
            items.append(
                (_other(rng, SHAPES, shape), c) if ask == "colour" else (s, _other(rng, COLOUR_NAMES, colour))
            )
        scene = scatter(rng, items, p["size"], p["overlap"])
        if ask == "colour":
            return scene, f"What colour is the {shape}?", colour
        return scene, f"What shape is the {colour} object?", shape

    return sample


_skill(
    "colour",
    "name the colour of the only object of a given shape",
    "colour name",
    ["What colour is the {shape}?"],
    {"distractors": _int(0, 8, "objects of other shapes"), **OBJECTS},
)(_identify("colour"))
_skill(
    "shape",
    "name the shape of the only object of a given colour",
    "shape name",
    ["What shape is the {colour} object?"],
    {"distractors": _int(0, 8, "objects of other colours"), **OBJECTS},
)(_identify("shape"))


@_skill(
    "count",
    "count all objects in the scene",
    "integer",
    ["How many objects are there?"],
    {"num_objects": _int(1, 9, "objects in the scene"), **OBJECTS},
)
def _count(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    items = [_any(rng) for _ in range(p["num_objects"])]
    return scatter(rng, items, p["size"], p["overlap"]), "How many objects are there?", str(p["num_objects"])


def _count_attr_check(p: dict[str, Any]) -> str | None:
    if p["target_count"] + p["distractors"] == 0:
        return "target_count + distractors must be at least 1 object, got 0"
    return _at_most_9("target_count", "distractors")(p)


@_skill(
    "count_attr",
    "count the objects of a colour, a shape, or both, among look-alike distractors",
    "integer",
    [
        "How many {colour} objects are there?",
        "How many {shape}s are there?",
        "How many {colour} {shape}s are there?",
    ],
    {
        "mode": _choice("colour", "shape", "both", doc="which attributes the question names"),
        "target_count": _int(0, 6, "objects matching the question"),
        "distractors": _int(0, 6, "objects not matching the question"),
        "confusable": _float(0.0, 1.0, "share of distractors that share a target attribute"),
        **OBJECTS,
    },
    _count_attr_check,
)
def _count_attr(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    mode, shape, colour = p["mode"], *_any(rng)
    targets = [_any(rng) for _ in range(p["target_count"])]
    targets = [(shape if mode != "colour" else s, colour if mode != "shape" else c) for s, c in targets]
    items = list(targets)
    for _ in range(p["distractors"]):
        share = rng.random() < p["confusable"]
        other_s, other_c = _other(rng, SHAPES, shape), _other(rng, COLOUR_NAMES, colour)
        if mode == "colour":  # another colour; a confusable one takes a target's shape
            s = rng.choice([t[0] for t in targets] or [shape]) if share else rng.choice(SHAPES)
            items.append((s, other_c))
        elif mode == "shape":  # another shape; a confusable one takes a target's colour
            c = rng.choice([t[1] for t in targets] or [colour]) if share else rng.choice(COLOUR_NAMES)
            items.append((other_s, c))
        else:  # both named: a confusable one keeps exactly one of the two attributes
            items.append(rng.choice([(other_s, colour), (shape, other_c)]) if share else (other_s, other_c))
    noun = {"colour": f"{colour} objects", "shape": plural(shape), "both": f"{colour} {plural(shape)}"}[mode]
    scene = scatter(rng, items, p["size"], p["overlap"])
    return scene, f"How many {noun} are there?", str(p["target_count"])


@_skill(
    "spatial",
    "say whether one named object is left of, right of, above or below another",
    "yes/no",
    ["Is the {colour1} {shape1} {relation} the {colour2} {shape2}?"],
    {
        "relation": _choice(*RELATIONS, doc="the relation asked about"),
        "answer": YES_NO,
        "min_gap": _float(0.04, 0.5, "least centre offset along the asked axis", harder="low"),
        "distractors": _int(0, 6, "other objects, never with a named colour-shape pair"),
        **OBJECTS,
    },
)
def _spatial(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    (s1, c1), (s2, c2) = rng.sample([(s, c) for s in SHAPES for c in COLOUR_NAMES], 2)
    radii = object_radius(rng, p["size"]), object_radius(rng, p["size"])
    first_before = (p["relation"] in ("left", "above")) == (p["answer"] == "yes")
    axis = "x" if p["relation"] in ("left", "right") else "y"
    gap = (p["min_gap"], p["min_gap"] + 0.1)
    (x1, y1), (x2, y2) = place_pair(rng, radii, axis, gap, first_before, p["overlap"])
    named = [SceneObject(s1, c1, radii[0], x1, y1), SceneObject(s2, c2, radii[1], x2, y2)]
    pool = [(s, c) for s in SHAPES for c in COLOUR_NAMES if (s, c) not in ((s1, c1), (s2, c2))]
    scene = scatter(
        rng, [rng.choice(pool) for _ in range(p["distractors"])], p["size"], p["overlap"], fixed=named
    )
    return scene, f"Is the {c1} {s1} {RELATIONS[p['relation']]} the {c2} {s2}?", p["answer"]


@_skill(
    "compare",
    "say whether there are more objects of one colour than of another (the counts are never equal)",
    "yes/no",
    ["Are there more {colour1} objects than {colour2} objects?"],
    {
        "answer": YES_NO,
        "diff": _int(1, 5, "difference between the two counts", harder="low"),
        "smaller": _int(0, 4, "the smaller of the two counts"),
        "distractors": _int(0, 4, "objects of neither colour"),
        **OBJECTS,
    },
    _at_most_9("smaller", "smaller", "diff", "distractors"),
)
def _compare(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    c1, c2 = rng.sample(COLOUR_NAMES, 2)
    small, big = p["smaller"], p["smaller"] + p["diff"]
    n1, n2 = (big, small) if p["answer"] == "yes" else (small, big)
    items = [(rng.choice(SHAPES), c1) for _ in range(n1)] + [(rng.choice(SHAPES), c2) for _ in range(n2)]
    items += [(rng.choice(SHAPES), _other(rng, COLOUR_NAMES, c1, c2)) for _ in range(p["distractors"])]
    scene = scatter(rng, items, p["size"], p["overlap"])
    return scene, f"Are there more {c1} objects than {c2} objects?", p["answer"]


def _arithmetic_check(p: dict[str, Any]) -> str | None:
    if p["op"] == "difference" and p["count_a"] <= p["count_b"]:
        return f"op 'difference' needs count_a > count_b, got {p['count_a']} <= {p['count_b']}"
    return _at_most_9("count_a", "count_b", "distractors")(p)


@_skill(
    "arithmetic",
    "add the counts of two shapes, or subtract the count of one colour from another's",
    "integer",
    [
        "How many {shape1}s and {shape2}s are there in total?",
        "How many more {colour1} objects than {colour2} objects are there?",
    ],
    {
        "op": _choice("sum", "difference", doc="add two shape counts or subtract two colour counts"),
        "count_a": _int(1, 6, "objects of the first named kind"),
        "count_b": _int(0, 5, "objects of the second named kind"),
        "distractors": _int(0, 4, "objects of neither named kind"),
        **OBJECTS,
    },
    _arithmetic_check,
)
def _arithmetic(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    a, b, d = p["count_a"], p["count_b"], p["distractors"]
    if p["op"] == "sum":
        s1, s2 = rng.sample(SHAPES, 2)
        items = [(s, rng.choice(COLOUR_NAMES)) for s, n in ((s1, a), (s2, b)) for _ in range(n)]
        items += [(_other(rng, SHAPES, s1, s2), rng.choice(COLOUR_NAMES)) for _ in range(d)]
        q, ans = f"How many {plural(s1)} and {plural(s2)} are there in total?", a + b
    else:
        c1, c2 = rng.sample(COLOUR_NAMES, 2)
        items = [(rng.choice(SHAPES), c) for c, n in ((c1, a), (c2, b)) for _ in range(n)]
        items += [(rng.choice(SHAPES), _other(rng, COLOUR_NAMES, c1, c2)) for _ in range(d)]
        q, ans = f"How many more {c1} objects than {c2} objects are there?", a - b
    return scatter(rng, items, p["size"], p["overlap"]), q, str(ans)


@_skill(
    "bar_value",
    "read the value of one labelled bar against the gridlines",
    "integer",
    ["What is the value of bar {label}?"],
    {
        "num_bars": _int(2, 6, "bars in the chart"),
        "max_value": _int(3, 10, "bar values are drawn from 1..max_value"),
    },
)
def _bar_value(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    bars = [Bar(BAR_LABELS[i], rng.randint(1, p["max_value"])) for i in range(p["num_bars"])]
    target = rng.choice(bars)
    chart = BarChart(bars=bars, colour=rng.choice(COLOUR_NAMES))
    return chart, f"What is the value of bar {target.label}?", str(target.value)


@_skill(
    "bar_compare",
    "name the tallest or shortest bar, which is unique and min_gap ahead of the runner-up",
    "bar label, lowercase",
    ["Which bar is the tallest?", "Which bar is the shortest?"],
    {
        "num_bars": _int(2, 6, "bars in the chart"),
        "which": _choice("tallest", "shortest", doc="the extreme asked for"),
        "min_gap": _int(1, 5, "value gap between the extreme bar and the runner-up", harder="low"),
    },
)
def _bar_compare(rng: random.Random, p: dict[str, Any]) -> tuple[Scene, str, str]:
    n, gap = p["num_bars"], p["min_gap"]
    if p["which"] == "tallest":
        extreme = rng.randint(1 + gap, BAR_AXIS_MAX)
        runner = extreme - gap
        rest = [rng.randint(1, runner) for _ in range(n - 2)]
    else:
        extreme = rng.randint(1, BAR_AXIS_MAX - gap)
        runner = extreme + gap
        rest = [rng.randint(runner, BAR_AXIS_MAX) for _ in range(n - 2)]
    values = [extreme, runner, *rest]
    rng.shuffle(values)
    chart = BarChart(
        bars=[Bar(BAR_LABELS[i], v) for i, v in enumerate(values)], colour=rng.choice(COLOUR_NAMES)
    )
    return chart, f"Which bar is the {p['which']}?", BAR_LABELS[values.index(extreme)].lower()
