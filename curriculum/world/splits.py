"""The "real data" of the built-in world: a skewed train split and balanced probe/test splits.

Real data sets are dominated by easy, common questions; the curriculum's job is to find and
fix what such data under-teaches. The train split imitates that: skills follow
``NATURAL_SKILL_WEIGHTS`` and, within a skill, every difficulty parameter is skewed toward
its easy end. The probe and test splits are balanced over skills with parameters uniform
over their full ranges, so per-skill accuracy can be reported and hard slices show up.

Natural skill weights of the train split:

=============  ======  ==========================================
skill          weight  note
=============  ======  ==========================================
colour          24 %   common
shape           22 %   common
count           20 %   common
count_attr      12 %
spatial          6 %   rare
bar_value        5 %   rare
compare          4 %   rare
bar_compare      4 %   rare
arithmetic       3 %   rarest
=============  ======  ==========================================

Natural parameter skew (train only): a number whose harder end is "high" takes the value
``lo + u**2 * (hi - lo)`` for ``u`` uniform in [0, 1) (mirrored when "low" is harder), so
half of the draws fall in the easiest quarter of the range: few distractors, large objects,
wide gaps, few bars. Hard booleans (``overlap``) are on 15 % of the time. Neutral parameters
(relation, answer, op, mode, which) stay uniform. Two counts have their own weights, because
real counting questions are mostly about two or three things:

=========================  ======  ==================================
parameter                  values  natural weights (%)
=========================  ======  ==================================
count.num_objects          1..9    14 22 22 16 10 7 4 3 2
count_attr.target_count    0..6    4 36 28 16 9 5 2
=========================  ======  ==================================

Splits never share an image: every image hash is unique across (and within) the splits,
so no (image, question) pair repeats and no test image appears in train or probe. Test is
drawn first, then probe, then train, each from its own random stream, so the test set of a
seed does not depend on the train size.

Two options change the train split only, for building a base model rather than for
imitating real data: ``train_skills`` trains on some skills while probe and test keep all of
``skills`` (so a base taught to perceive is still measured on every skill), and
``train_mix="uniform"`` draws the train split the way probe and test are drawn (balanced over
its skills, parameters uniform over their full ranges, distractors included), from a random
stream of its own. With both at their defaults the train split is the natural one, byte for byte.
"""

from __future__ import annotations

import random
from typing import Any

from ..types import Example, image_hash
from .generate import get_skill, make_example, sample_item, skill_names, uniform_value
from .skills import SKILLS, Param, Skill

NATURAL_SKILL_WEIGHTS: dict[str, float] = {
    "colour": 0.24,
    "shape": 0.22,
    "count": 0.20,
    "count_attr": 0.12,
    "spatial": 0.06,
    "bar_value": 0.05,
    "compare": 0.04,
    "bar_compare": 0.04,
    "arithmetic": 0.03,
}
NATURAL_PARAM_WEIGHTS: dict[tuple[str, str], tuple[float, ...]] = {
    ("count", "num_objects"): (14, 22, 22, 16, 10, 7, 4, 3, 2),
    ("count_attr", "target_count"): (4, 36, 28, 16, 9, 5, 2),
}
TRAIN_MIXES = ("natural", "uniform")
NATURAL_SKEW = 2.0
NATURAL_HARD_BOOL = 0.15
MAX_REDRAWS = 1000


def _apportion(n: int, weights: dict[str, float], rng: random.Random) -> list[str]:
    """A shuffled list of n skill names whose counts match the weights (largest remainder)."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    short = n - sum(counts.values())
    order = sorted(weights, key=lambda k: (-(exact[k] - counts[k]), rng.random()))
    for k in order[:short]:
        counts[k] += 1
    plan = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(plan)
    return plan


def natural_value(skill: str, name: str, param: Param, rng: random.Random) -> Any:
    """One parameter value under the natural distribution (see the module docstring)."""
    weights = NATURAL_PARAM_WEIGHTS.get((skill, name))
    if weights is not None:
        return int(param.lo) + rng.choices(range(len(weights)), weights=weights)[0]
    if param.harder is None:
        return uniform_value(param, rng)
    if param.kind == "bool":
        return (rng.random() < NATURAL_HARD_BOOL) == (param.harder == "high")
    u = rng.random() ** NATURAL_SKEW
    t = u if param.harder == "high" else 1.0 - u
    if param.kind == "int":
        return min(int(param.lo + t * (param.hi - param.lo + 1)), int(param.hi))
    return round(param.lo + t * (param.hi - param.lo), 3)


def natural_params(skill: Skill, rng: random.Random) -> dict[str, Any]:
    """Parameters drawn with the natural easy-leaning skew."""
    return {k: natural_value(skill.name, k, p, rng) for k, p in skill.params.items()}


def uniform_params(skill: Skill, rng: random.Random) -> dict[str, Any]:
    """Parameters drawn uniformly over their full ranges."""
    return {k: uniform_value(p, rng) for k, p in skill.params.items()}


def world_skills(skills: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The named skills in the world's order (all of them for None or empty); an unknown or
    repeated name is refused."""
    known = skill_names()
    if not skills:
        return known
    for name in skills:
        get_skill(name)  # unknown: refused with the nearest name
    if len(set(skills)) != len(skills):
        raise ValueError(f"skills must be distinct, got {list(skills)}")
    return [s for s in known if s in skills]


def _build_split(
    name: str,
    size: int,
    seed: int,
    natural: bool,
    image_size: int,
    seen: set[str],
    skills: list[str] | None = None,
    stream: str | None = None,
) -> list[Example]:
    """``size`` items of split ``name`` over ``skills``, none of whose images is in ``seen`` (the
    new hashes are added to it). ``stream`` names the random stream and the ids (default: the
    split's name), so one split can be drawn from another stream than the usual one."""
    stream = stream or name
    rng = random.Random(f"splits|{seed}|{stream}")
    chosen = world_skills(skills)
    if natural:  # in the table's order: the plan's draws depend on it
        weights = {s: w for s, w in NATURAL_SKILL_WEIGHTS.items() if s in chosen}
    else:
        weights = dict.fromkeys(chosen, 1.0)
    plan = _apportion(size, weights, rng)
    drawer = natural_params if natural else uniform_params
    out: list[Example] = []
    for i, skill_name in enumerate(plan):
        skill = SKILLS[skill_name]

        def draw(r: random.Random, s: Skill = skill) -> dict[str, Any]:
            return drawer(s, r)

        for attempt in range(MAX_REDRAWS):
            item_rng = random.Random(f"splits|{seed}|{stream}|{i}|{attempt}")
            params, scene, question, answer = sample_item(skill, draw, item_rng)
            ex = make_example(
                skill,
                params,
                scene,
                question,
                answer,
                id=f"real-{stream}-s{seed}-{i:05d}",
                image_size=image_size,
                source="real",
                split=name,
                meta={"seed": seed},
            )
            h = image_hash(ex.image)
            if h not in seen:
                seen.add(h)
                out.append(ex)
                break
        else:
            raise RuntimeError(
                f"split {name!r}: no new image for item {i} ({skill_name}) after {MAX_REDRAWS} draws"
            )
    return out


def natural_examples(
    count: int, seed: int, image_size: int, name: str, skills: list[str] | None = None
) -> list[Example]:
    """``count`` more items of the train split's skewed distribution (over ``skills``, all when
    None), from their own random stream (``name``): what collecting more real data of the same
    kind would bring."""
    return _build_split(name, count, seed, True, image_size, set(), skills)


def build_splits(
    seed: int,
    train_size: int,
    probe_size: int,
    test_size: int,
    image_size: int = 64,
    skills: list[str] | None = None,
    train_mix: str = "natural",
    train_skills: list[str] | None = None,
) -> dict[str, list[Example]]:
    """Build the "train", "probe" and "test" splits of the world's real data, deterministically.

    Train follows the natural skewed distribution; probe and test are balanced over skills
    (counts differ by at most one) with uniform parameters. All images are distinct. ``skills``
    restricts all three to those skills (the train split keeps their natural proportions); the
    splits of all skills are unchanged by the option's existence.

    ``train_skills`` (a subset of ``skills``; None: the same) restricts the train split alone, and
    ``train_mix="uniform"`` draws it balanced with uniform parameters, as probe and test are, from
    a stream of its own (ids ``real-train-uniform-...``): a base model's training data, not real
    data. Probe and test do not depend on either option.
    """
    for field_name, value in (
        ("train_size", train_size),
        ("probe_size", probe_size),
        ("test_size", test_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{field_name} must be a non-negative int, got {value!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
    if train_mix not in TRAIN_MIXES:
        raise ValueError(f"train_mix must be one of {list(TRAIN_MIXES)}, got {train_mix!r}")
    if train_skills:
        outside = sorted(set(world_skills(train_skills)) - set(world_skills(skills)))
        if outside:
            raise ValueError(
                f"train_skills {outside} are not among the splits' skills {world_skills(skills)}"
            )
    trained = train_skills or skills
    seen: set[str] = set()
    test = _build_split("test", test_size, seed, False, image_size, seen, skills)
    probe = _build_split("probe", probe_size, seed, False, image_size, seen, skills)
    if train_mix == "natural":
        train = _build_split("train", train_size, seed, True, image_size, seen, trained)
    else:
        train = _build_split("train", train_size, seed, False, image_size, seen, trained, "train-uniform")
    return {"train": train, "probe": probe, "test": test}
