"""The generator API of the built-in world: specs in, labelled examples out.

The curriculum (and the analyzer that writes specs) asks for data with a ``Spec``: a skill
name, constraints on some of its parameters, and how many examples. Each constraint is

* a fixed value: ``{"num_objects": 7}``, ``{"overlap": True}``, ``{"relation": "left"}``;
* an inclusive range for int / float parameters: ``{"num_objects": [5, 9]}``, ``{"size": [0.06, 0.08]}``;
* a list of allowed choices (any list not of length 2 for numbers): ``{"relation": ["left", "right"]}``,
  ``{"num_objects": [1, 3, 9]}``; explicit forms ``{"range": [lo, hi]}`` / ``{"choices": [...]}`` also work.

Unspecified parameters are drawn uniformly from the skill's full range. Output is a pure
function of (spec, seed, image_size): every example has its own random stream, so the first
k examples of a spec do not change when ``count`` grows. Bad specs fail early with a one-line
``ValueError`` naming the field and, for typos, the nearest valid name.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import numbers
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..types import Example
from .scene import BAR_LABELS, COLOURS, SHAPES, PlacementError, Scene, plural, render
from .skills import SKILLS, Param, Skill

MAX_ATTEMPTS = 200
Domain = tuple[str, Any]  # ("fixed", value) | ("range", (lo, hi)) | ("choices", [values])


@dataclass
class Spec:
    """A request for ``count`` examples of ``skill`` with parameters constrained by ``params``."""

    skill: str
    params: dict[str, Any] = field(default_factory=dict)
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able dict, the inverse of ``from_dict``."""
        return {"skill": self.skill, "params": dict(self.params), "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        """Build a Spec from a JSON-like dict, naming unknown keys."""
        for key in data:
            if key not in ("skill", "params", "count"):
                raise ValueError(f"unknown Spec field {key!r}{_hint(key, ['skill', 'params', 'count'])}")
        if "skill" not in data:
            raise ValueError("Spec needs a 'skill' field")
        return cls(skill=data["skill"], params=dict(data.get("params") or {}), count=data.get("count", 1))


def _hint(name: Any, options: list[str]) -> str:
    close = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(options)})"


def skill_names() -> list[str]:
    """Names of all skills of the world, in a fixed order."""
    return list(SKILLS)


def get_skill(name: str) -> Skill:
    """The skill called ``name``; a typo gets the nearest valid name in the error."""
    if name not in SKILLS:
        raise ValueError(f"unknown skill {name!r}{_hint(name, skill_names())}")
    return SKILLS[name]


def describe_skills(skills: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each skill's description, question templates, answer type and parameters (JSON-able):
    those named in ``skills``, or all of them."""
    return {name: skill.describe() for name, skill in SKILLS.items() if not skills or name in skills}


# ----------------------------------------------------------------------------- validation


def _check_value(param: Param, value: Any, where: str) -> Any:
    """Check one concrete value against a parameter's type and full range; return it normalised."""
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if param.kind == "choice":
        if value not in param.choices:
            opts = [str(c) for c in param.choices]
            raise ValueError(f"{where}: unknown choice {value!r}{_hint(value, opts)}")
        return value
    number = _number(param, value)
    if number is None:
        kind = "an int" if param.kind == "int" else "a number"
        raise ValueError(f"{where} must be {kind} in [{param.lo}, {param.hi}], got {value!r}")
    if not param.lo <= number <= param.hi:
        raise ValueError(f"{where} = {value!r} is outside its range [{param.lo}, {param.hi}]")
    return number


def _number(param: Param, value: Any) -> int | float | None:
    """``value`` as the parameter's number type (int or float), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if param.kind == "float" and isinstance(value, numbers.Real):
        return float(value)
    return None


def _domain(param: Param, value: Any, where: str) -> Domain:
    """Turn one user constraint (value, range or choices) into a checked domain."""
    numeric = param.kind in ("int", "float")
    if isinstance(value, Mapping):
        if set(value) == {"range"} and numeric:
            return _range(param, value["range"], where)
        if set(value) == {"choices"}:
            return _choices(param, value["choices"], where)
        raise ValueError(f"{where}: a dict constraint must be {{'range': [lo, hi]}} or {{'choices': [...]}}")
    if isinstance(value, (list, tuple)):
        if numeric and len(value) == 2:
            return _range(param, value, where)
        return _choices(param, value, where)
    return ("fixed", _check_value(param, value, where))


def _range(param: Param, value: Any, where: str) -> Domain:
    items = [_number(param, v) for v in value] if isinstance(value, (list, tuple)) else [None]
    if len(items) != 2 or None in items:
        kind = "ints" if param.kind == "int" else "numbers"
        raise ValueError(f"{where}: a range must be two {kind} [lo, hi], got {value!r}")
    lo, hi = items
    if lo > hi:
        raise ValueError(f"{where} range [{lo}, {hi}] is empty (lo > hi)")
    if lo < param.lo or hi > param.hi:
        raise ValueError(f"{where} range [{lo}, {hi}] is outside its valid range [{param.lo}, {param.hi}]")
    return ("range", (lo, hi))


def _choices(param: Param, value: Any, where: str) -> Domain:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: choices must be a non-empty list, got {value!r}")
    return ("choices", [_check_value(param, v, where) for v in value])


def _full(param: Param) -> Domain:
    if param.kind in ("int", "float"):
        return ("range", (param.lo, param.hi))
    return ("choices", list(param.options()))


def uniform_value(param: Param, rng: random.Random) -> Any:
    """A value drawn uniformly over the parameter's full range or choices."""
    return _draw(param, _full(param), rng)


def _draw(param: Param, dom: Domain, rng: random.Random) -> Any:
    kind, val = dom
    if kind == "fixed":
        return val
    if kind == "choices":
        return rng.choice(val)
    lo, hi = val
    if param.kind == "int":
        return rng.randint(lo, hi)
    return min(max(round(rng.uniform(lo, hi), 3), float(lo)), float(hi))


def validate(spec: Spec | Mapping[str, Any]) -> tuple[Spec, Skill, dict[str, Domain]]:
    """Check a spec and return it with its skill and one domain per parameter.

    Also checks that some combination of the allowed values satisfies the skill's joint
    constraints (e.g. no more than 9 objects), so impossible specs fail here and not later.
    """
    if isinstance(spec, Mapping):
        spec = Spec.from_dict(spec)
    skill = get_skill(spec.skill)
    if not isinstance(spec.count, int) or isinstance(spec.count, bool) or spec.count < 0:
        raise ValueError(f"Spec.count must be a non-negative int, got {spec.count!r}")
    if not isinstance(spec.params, Mapping):
        raise ValueError(f"Spec.params must be a dict, got {type(spec.params).__name__}")
    names = list(skill.params)
    for key in spec.params:
        if key not in skill.params:
            raise ValueError(f"skill {skill.name!r}: unknown parameter {key!r}{_hint(key, names)}")
    domains = {
        k: _domain(p, spec.params[k], f"skill {skill.name!r}: parameter {k!r}")
        if k in spec.params
        else _full(p)
        for k, p in skill.params.items()
    }
    _valid_combos(skill, domains)
    return spec, skill, domains


def _discrete(dom: Domain) -> list[Any]:
    kind, val = dom
    if kind == "fixed":
        return [val]
    return list(val) if kind == "choices" else list(range(val[0], val[1] + 1))


def _valid_combos(
    skill: Skill, domains: dict[str, Domain], limit: int = 50000
) -> list[dict[str, Any]] | None:
    """All combinations of the discrete parameter values that pass the skill's joint checks.

    Drawing one of them uniformly is the same as drawing each parameter uniformly and
    rejecting invalid draws, but never runs out of tries when few combinations are valid.
    None when the skill has no joint constraint or the product is too large to list.
    """
    if skill.constraint is None:
        return None
    floats = {k: v[1][0] for k, v in domains.items() if v[0] == "range" and skill.params[k].kind == "float"}
    axes = {k: _discrete(dom) for k, dom in domains.items() if k not in floats}
    valid, last, size = [], None, math.prod(len(v) for v in axes.values())
    for combo in itertools.islice(itertools.product(*axes.values()), limit):
        values = dict(zip(axes, combo, strict=True))
        last = skill.check({**floats, **values})
        if last is None:
            valid.append(values)
    if valid:
        return valid if size <= limit else None
    raise ValueError(
        f"skill {skill.name!r}: no combination of the allowed parameter values is valid ({last})"
    )


# ----------------------------------------------------------------------------- sampling


def sample_item(
    skill: Skill, draw: Callable[[random.Random], dict[str, Any]], rng: random.Random
) -> tuple[dict[str, Any], Scene, str, str]:
    """Draw parameters with ``draw`` and sample one scene, retrying crowded or invalid draws."""
    last = ""
    for _ in range(MAX_ATTEMPTS):
        params = draw(rng)
        msg = skill.check(params)
        if msg is not None:
            last = msg
            continue
        try:
            scene, question, answer = skill.sample(rng, params)
        except PlacementError as err:
            last = str(err)
            continue
        return params, scene, question, answer
    raise ValueError(f"skill {skill.name!r}: no example could be made in {MAX_ATTEMPTS} tries ({last})")


def make_example(
    skill: Skill,
    params: dict[str, Any],
    scene: Scene,
    question: str,
    answer: str,
    *,
    id: str,
    image_size: int,
    source: str,
    split: str | None,
    meta: dict[str, Any] | None = None,
) -> Example:
    """Render a sampled item and wrap it as an ``Example`` with its difficulty in ``meta``."""
    info = {"generator": "world", "difficulty": skill.difficulty(params), **(meta or {})}
    return Example(
        id=id,
        image=render(scene, image_size),
        question=question,
        answer=answer,
        skill=skill.name,
        params=dict(params),
        scene=scene.to_dict(),
        source=source,
        split=split,
        meta=info,
    )


def generate(
    spec: Spec | Mapping[str, Any],
    seed: int,
    image_size: int = 64,
    source: str = "synthetic",
    split: str | None = None,
    id_prefix: str | None = None,
) -> list[Example]:
    """Generate ``spec.count`` examples, a pure function of (spec, seed, image_size).

    Ids are ``{id_prefix}-{i:05d}``; the default prefix names the source, skill, seed and a
    hash of the spec's parameters, so different specs never share ids.
    """
    spec, skill, domains = validate(spec)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
    key = json.dumps({"skill": skill.name, "params": spec.params}, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    prefix = id_prefix if id_prefix is not None else f"{source}-{skill.name}-s{seed}-{digest}"

    combos = _valid_combos(skill, domains)

    def draw(rng: random.Random) -> dict[str, Any]:
        params = {k: _draw(skill.params[k], dom, rng) for k, dom in domains.items()}
        if combos:
            params.update(rng.choice(combos))
        return params

    out = []
    for i in range(spec.count):
        spec_meta = {"spec": json.loads(json.dumps(spec.to_dict(), default=str)), "seed": seed}
        rng = random.Random(f"world|{seed}|{digest}|{i}")
        params, scene, question, answer = sample_item(skill, draw, rng)
        out.append(
            make_example(
                skill,
                params,
                scene,
                question,
                answer,
                id=f"{prefix}-{i:05d}",
                image_size=image_size,
                source=source,
                split=split,
                meta=spec_meta,
            )
        )
    return out


def world_corpus(n: int = 2000, seed: int = 0) -> list[str]:
    """``n`` strings for training a tokenizer: a vocabulary line, then questions and answers.

    The first line lists every answer word (colours, shapes, yes/no, digits 0-10, bar
    letters) so even a small corpus covers them; the rest alternate question, answer over
    all skills in turn, with parameters uniform over their full ranges. No images are drawn.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    vocab = [*COLOURS, *SHAPES, *(plural(s) for s in SHAPES), "yes", "no", *map(str, range(11))]
    vocab += [c.lower() for c in BAR_LABELS] + list(BAR_LABELS)
    lines = [" ".join(vocab)]
    names = skill_names()
    rng = random.Random(f"corpus|{seed}")
    i = 0
    while len(lines) < n:
        skill = SKILLS[names[i % len(names)]]
        _, _, question, answer = sample_item(
            skill, lambda r, s=skill: {k: uniform_value(p, r) for k, p in s.params.items()}, rng
        )
        lines += [question, answer]
        i += 1
    return lines[:n]
