"""Answers to the world's question templates, computed from a scene alone.

The curriculum needs two things that the skills' samplers do not give. It needs a verifier
that re-derives the answer to any templated question about a stored scene (a generated
example, a rewritten question, a hand-written probe), and it needs "same image, new
question" examples that reuse a scene the model failed on. Both come from here: each skill
template becomes a regex, and each skill's rule for when a question is well posed and what
its answer is sits in one small function that mirrors that skill's sampler in ``skills.py``.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

from .scene import BAR_LABELS, SHAPES, BarChart, ObjectScene, Scene, SceneObject, plural, scene_from_dict
from .skills import COLOUR_NAMES, RELATIONS, SKILLS

MAX_PER_SKILL = 12  # candidate questions kept per skill and scene in ``questions_for_scene``
SPATIAL_MIN_GAP: float = SKILLS["spatial"].params["min_gap"].lo  # nearer centres are ambiguous
SUM_MIN_FIRST: int = SKILLS["arithmetic"].params["count_a"].lo  # the first named shape is present

_SLOT = re.compile(r"\{(\w+)\}(s?)")
_WORDS: dict[str, tuple[str, ...]] = {
    "colour": COLOUR_NAMES,
    "shape": SHAPES,
    "relation": tuple(RELATIONS.values()),
    "label": tuple(BAR_LABELS),
}
_SINGULAR = {plural(s): s for s in SHAPES}
_RELATION_KEY = {phrase: key for key, phrase in RELATIONS.items()}

Rule = Callable[[Any, str, dict[str, str]], "str | None"]


def _kind(slot: str) -> str:
    """The word list a slot draws from: ``colour2`` -> ``colour``."""
    kind = slot.rstrip("0123456789")
    if kind not in _WORDS:
        raise ValueError(f"template slot {{{slot}}} has no known word list")
    return kind


def _compile(template: str) -> re.Pattern[str]:
    """A regex for one template; ``{shape}s`` matches the shape's English plural."""
    parts, pos = [], 0
    for m in _SLOT.finditer(template):
        kind = _kind(m[1])
        plural_s = bool(m[2]) and kind == "shape"
        words = [plural(w) for w in _WORDS[kind]] if plural_s else list(_WORDS[kind])
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        tail = "" if plural_s else re.escape(m[2])
        parts += [re.escape(template[pos : m.start()]), f"(?P<{m[1]}>{alternatives})", tail]
        pos = m.end()
    return re.compile("".join([*parts, re.escape(template[pos:])]))


def _fill(template: str, values: dict[str, str]) -> str:
    """The question a template asks with these slot values (singular shape names)."""

    def word(m: re.Match[str]) -> str:
        value = values[m[1]]
        return plural(value) if m[2] and _kind(m[1]) == "shape" else value + m[2]

    return _SLOT.sub(word, template)


def _matching(scene: ObjectScene, colour: str | None = None, shape: str | None = None) -> list[SceneObject]:
    return [
        o
        for o in scene.objects
        if (colour is None or o.colour == colour) and (shape is None or o.shape == shape)
    ]


def _the(scene: ObjectScene, colour: str | None = None, shape: str | None = None) -> SceneObject | None:
    """The object a definite description names, or None unless exactly one object fits it."""
    found = _matching(scene, colour, shape)
    return found[0] if len(found) == 1 else None


def _colour(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    obj = _the(scene, shape=g["shape"])
    return obj.colour if obj else None


def _shape(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    obj = _the(scene, colour=g["colour"])
    return obj.shape if obj else None


def _count(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    return str(len(scene.objects))


def _count_attr(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    return str(len(_matching(scene, g.get("colour"), g.get("shape"))))


def _spatial(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    """Compare centres along the asked axis; y grows downwards, so "above" means smaller y."""
    a, b = _the(scene, g["colour1"], g["shape1"]), _the(scene, g["colour2"], g["shape2"])
    if a is None or b is None or a is b:
        return None
    relation = _RELATION_KEY[g["relation"]]
    offset = b.x - a.x if relation in ("left", "right") else b.y - a.y
    if abs(offset) < SPATIAL_MIN_GAP:
        return None
    return "yes" if (offset > 0) == (relation in ("left", "above")) else "no"


def _compare(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    n1, n2 = len(_matching(scene, g["colour1"])), len(_matching(scene, g["colour2"]))
    return None if n1 == n2 else ("yes" if n1 > n2 else "no")


def _arithmetic(scene: ObjectScene, template: str, g: dict[str, str]) -> str | None:
    """Sums of two different shapes (the first present), or positive colour differences."""
    if "shape1" in g:
        a, b = len(_matching(scene, shape=g["shape1"])), len(_matching(scene, shape=g["shape2"]))
        return str(a + b) if g["shape1"] != g["shape2"] and a >= SUM_MIN_FIRST else None
    a, b = len(_matching(scene, g["colour1"])), len(_matching(scene, g["colour2"]))
    return str(a - b) if a > b else None


def _bar_value(chart: BarChart, template: str, g: dict[str, str]) -> str | None:
    found = [b for b in chart.bars if b.label == g["label"]]
    return str(found[0].value) if len(found) == 1 else None


def _bar_compare(chart: BarChart, template: str, g: dict[str, str]) -> str | None:
    """The lowercase label of the unique tallest or shortest bar of a chart of two or more."""
    values = [b.value for b in chart.bars]
    if len(values) < 2:
        return None
    extreme = max(values) if "tallest" in template else min(values)
    return chart.bars[values.index(extreme)].label.lower() if values.count(extreme) == 1 else None


_RULES: dict[str, tuple[type, Rule]] = {
    "colour": (ObjectScene, _colour),
    "shape": (ObjectScene, _shape),
    "count": (ObjectScene, _count),
    "count_attr": (ObjectScene, _count_attr),
    "spatial": (ObjectScene, _spatial),
    "compare": (ObjectScene, _compare),
    "arithmetic": (ObjectScene, _arithmetic),
    "bar_value": (BarChart, _bar_value),
    "bar_compare": (BarChart, _bar_compare),
}
_PATTERNS: list[tuple[str, str, re.Pattern[str]]] = [
    (name, t, _compile(t)) for name, skill in SKILLS.items() if name in _RULES for t in skill.templates
]


def answer_from_scene(scene: dict[str, Any] | Scene, question: str) -> tuple[str, str] | None:
    """(skill, answer) for a templated question about ``scene``, by the skills' own rules.

    None when no template matches, the scene is of the wrong kind, or the question is ill
    posed for this scene: "the" object missing or not unique, compared counts equal, a
    non-positive difference, an unknown bar label, a tied extreme bar, an empty scene.
    """
    if isinstance(scene, dict):
        scene = scene_from_dict(scene)
    if isinstance(scene, ObjectScene) and not scene.objects:
        return None
    question = question.strip()
    for name, template, pattern in _PATTERNS:
        m = pattern.fullmatch(question)
        kind, rule = _RULES[name]
        if m is None or not isinstance(scene, kind):
            continue
        groups = {k: _SINGULAR.get(v, v) if _kind(k) == "shape" else v for k, v in m.groupdict().items()}
        answer = rule(scene, template, groups)
        if answer is not None:
            return name, answer
    return None


def _plus_absent(present: list[str], pool: tuple[str, ...], rng: random.Random) -> list[str]:
    """``present`` and one value of ``pool`` it lacks, drawn with ``rng`` (if any is lacking)."""
    absent = [v for v in pool if v not in present]
    return present + [rng.choice(absent)] if absent else present


def _bindings(scene: Scene, rng: random.Random) -> dict[str, list[dict[str, str]]]:
    """Slot values worth asking about, per skill: what is in the scene plus one absent value."""
    if isinstance(scene, BarChart):
        return {"bar_value": [{"label": b.label} for b in scene.bars], "bar_compare": [{}]}
    present_c = [c for c in COLOUR_NAMES if _matching(scene, colour=c)]
    present_s = [s for s in SHAPES if _matching(scene, shape=s)]
    colours, shapes = _plus_absent(present_c, COLOUR_NAMES, rng), _plus_absent(present_s, SHAPES, rng)
    pairs = list(dict.fromkeys((o.colour, o.shape) for o in scene.objects))
    unseen = [p for p in itertools.product(present_c, present_s) if p not in pairs]
    both = pairs + [rng.choice(unseen)] if unseen else pairs
    return {
        "colour": [{"shape": s} for s in shapes],
        "shape": [{"colour": c} for c in colours],
        "count": [{}],
        "count_attr": [{"colour": c} for c in colours]
        + [{"shape": s} for s in shapes]
        + [{"colour": c, "shape": s} for c, s in both],
        "spatial": [
            {"colour1": c1, "shape1": s1, "relation": r, "colour2": c2, "shape2": s2}
            for (c1, s1), (c2, s2) in itertools.permutations(pairs, 2)
            for r in RELATIONS.values()
        ],
        "compare": [{"colour1": a, "colour2": b} for a, b in itertools.permutations(colours, 2)],
        "arithmetic": [{"shape1": a, "shape2": b} for a, b in itertools.permutations(shapes, 2)]
        + [{"colour1": a, "colour2": b} for a, b in itertools.permutations(colours, 2)],
    }


def questions_for_scene(
    scene: dict[str, Any] | Scene,
    rng: random.Random,
    skills: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[tuple[str, str, str]]:
    """Well-posed (skill, question, answer) triples the skills' templates can ask of ``scene``.

    Candidates name the scene's colours, shapes and objects plus one absent colour, shape and
    colour-shape pair, so counts stay plausible; each skill keeps at most ``MAX_PER_SKILL`` of
    its well-posed questions. The result is shuffled with ``rng`` and cut to ``limit``.
    """
    if isinstance(scene, dict):
        scene = scene_from_dict(scene)
    names = list(SKILLS) if skills is None else list(skills)
    for name in names:
        if name not in _RULES:
            raise ValueError(f"unknown skill {name!r} (valid: {', '.join(_RULES)})")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    bindings = _bindings(scene, rng)
    out: list[tuple[str, str, str]] = []
    for name in dict.fromkeys(names):
        found = []
        for template in SKILLS[name].templates:
            for values in bindings.get(name, []):
                if set(values) == {m[1] for m in _SLOT.finditer(template)}:
                    question = _fill(template, values)
                    if (got := answer_from_scene(scene, question)) is not None and got[0] == name:
                        found.append((name, question, got[1]))
        out += rng.sample(found, MAX_PER_SKILL) if len(found) > MAX_PER_SKILL else found
    rng.shuffle(out)
    return out if limit is None else out[:limit]
