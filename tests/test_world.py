"""Tests of the built-in world: answers, pixels, determinism, splits and spec validation.

Answers are re-derived here from the question text and the scene dict alone, without the
world's own sampling code, so a wrong label in a skill cannot hide behind its own logic.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from curriculum.types import Example, image_hash
from curriculum.world import (
    NATURAL_SKILL_WEIGHTS,
    Spec,
    build_splits,
    describe_skills,
    generate,
    get_skill,
    render,
    skill_names,
    world_corpus,
)
from curriculum.world.scene import COLOURS, PlacementError, place

SINGULAR = {
    "circles": "circle",
    "squares": "square",
    "triangles": "triangle",
    "diamonds": "diamond",
    "crosses": "cross",
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- independent answer check


def _one(objs: list[dict[str, Any]], **attrs: str) -> dict[str, Any]:
    found = [o for o in objs if all(o[k] == v for k, v in attrs.items())]
    assert len(found) == 1, f"{attrs} should name exactly one object, found {len(found)}"
    return found[0]


def _n(objs: list[dict[str, Any]], **attrs: str) -> int:
    return sum(all(o[k] == v for k, v in attrs.items()) for o in objs)


def recompute(question: str, scene: dict[str, Any]) -> str:
    """The answer to ``question`` read off the scene dict, by parsing the question text."""
    objs = scene.get("objects", [])
    if m := re.fullmatch(r"What colour is the (\w+)\?", question):
        return _one(objs, shape=m[1])["colour"]
    if m := re.fullmatch(r"What shape is the (\w+) object\?", question):
        return _one(objs, colour=m[1])["shape"]
    if question == "How many objects are there?":
        return str(len(objs))
    if m := re.fullmatch(r"How many more (\w+) objects than (\w+) objects are there\?", question):
        return str(_n(objs, colour=m[1]) - _n(objs, colour=m[2]))
    if m := re.fullmatch(r"How many (\w+) and (\w+) are there in total\?", question):
        return str(_n(objs, shape=SINGULAR[m[1]]) + _n(objs, shape=SINGULAR[m[2]]))
    if m := re.fullmatch(r"How many (\w+) objects are there\?", question):
        return str(_n(objs, colour=m[1]))
    if m := re.fullmatch(r"How many (\w+) (\w+) are there\?", question):
        return str(_n(objs, colour=m[1], shape=SINGULAR[m[2]]))
    if m := re.fullmatch(r"How many (\w+) are there\?", question):
        return str(_n(objs, shape=SINGULAR[m[1]]))
    if m := re.fullmatch(
        r"Is the (\w+) (\w+) (to the left of|to the right of|above|below) the (\w+) (\w+)\?", question
    ):
        a, b = _one(objs, colour=m[1], shape=m[2]), _one(objs, colour=m[4], shape=m[5])
        holds = {
            "to the left of": a["x"] < b["x"],
            "to the right of": a["x"] > b["x"],
            "above": a["y"] < b["y"],
            "below": a["y"] > b["y"],
        }[m[3]]
        return "yes" if holds else "no"
    if m := re.fullmatch(r"Are there more (\w+) objects than (\w+) objects\?", question):
        n1, n2 = _n(objs, colour=m[1]), _n(objs, colour=m[2])
        assert n1 != n2, "compare scenes never have equal counts"
        return "yes" if n1 > n2 else "no"
    if m := re.fullmatch(r"What is the value of bar ([A-F])\?", question):
        return str(next(b["value"] for b in scene["bars"] if b["label"] == m[1]))
    if m := re.fullmatch(r"Which bar is the (tallest|shortest)\?", question):
        values = [b["value"] for b in scene["bars"]]
        best = max(values) if m[1] == "tallest" else min(values)
        assert values.count(best) == 1, "the extreme bar is unique"
        return scene["bars"][values.index(best)]["label"].lower()
    raise AssertionError(f"unparsed question {question!r}")


def check_geometry(scene: dict[str, Any]) -> None:
    """Objects inside the canvas; no overlapping boxes unless the scene allows overlap."""
    objs = scene.get("objects", [])
    for o in objs:
        assert o["size"] <= o["x"] <= 1 - o["size"] and o["size"] <= o["y"] <= 1 - o["size"]
    if not scene.get("overlap", True):
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                assert max(abs(a["x"] - b["x"]), abs(a["y"] - b["y"])) >= a["size"] + b["size"]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """A spec with a random subset of parameters fixed, narrowed to a sub-range, or left free."""
    name = draw(st.sampled_from(skill_names()))
    params: dict[str, Any] = {}
    for key, info in describe_skills()[name]["params"].items():
        how = draw(st.sampled_from(["free", "fixed", "range"]))
        if how == "free":
            continue
        if "choices" in info:
            opts = draw(st.lists(st.sampled_from(info["choices"]), min_size=1, max_size=3, unique=True))
            params[key] = opts[0] if how == "fixed" else opts
        elif info["type"] == "int":
            lo, hi = sorted(draw(st.integers(*info["range"])) for _ in range(2))
            params[key] = lo if how == "fixed" else [lo, hi]
        else:
            lo, hi = sorted(round(draw(st.floats(*info["range"])), 3) for _ in range(2))
            params[key] = lo if how == "fixed" else [lo, hi]
    return Spec(name, params, count=3)


def _in_constraint(value: Any, constraint: Any) -> bool:
    if (
        isinstance(constraint, list)
        and len(constraint) == 2
        and all(isinstance(v, (int, float)) for v in constraint)
    ):
        if not isinstance(constraint[0], bool):
            return constraint[0] <= value <= constraint[1]
    if isinstance(constraint, list):
        return value in constraint
    return value == constraint


@SETTINGS
@given(spec=specs(), seed=st.integers(0, 2**31))
def test_answers_and_params_hold_for_any_spec(spec: Spec, seed: int) -> None:
    try:
        examples = generate(spec, seed)
    except ValueError as err:  # an impossible combination of narrowed ranges is refused up front
        assume("no combination" not in str(err))
        raise
    assert len(examples) == spec.count
    for ex in examples:
        assert ex.answer == recompute(ex.question, ex.scene)
        assert ex.answer == ex.answer.lower() and ex.answer.strip() == ex.answer and ex.answer
        for key, constraint in spec.params.items():
            assert _in_constraint(ex.params[key], constraint), (key, ex.params[key], constraint)
        check_geometry(ex.scene)
        assert 0.0 <= ex.meta["difficulty"] <= 1.0


# ----------------------------------------------------------------------------- per-skill semantics


def test_parameters_shape_the_scene() -> None:
    for ex in generate(Spec("count", {"num_objects": [5, 7], "size": [0.06, 0.07]}, count=30), seed=1):
        assert 5 <= len(ex.scene["objects"]) <= 7
        assert all(0.85 * 0.06 - 1e-9 <= o["size"] <= 0.07 + 1e-9 for o in ex.scene["objects"])
    for ex in generate(Spec("spatial", {"min_gap": 0.3}, count=30), seed=2):
        m = re.fullmatch(r"Is the (\w+) (\w+) (.+) the (\w+) (\w+)\?", ex.question)
        a = next(o for o in ex.scene["objects"] if (o["colour"], o["shape"]) == (m[1], m[2]))
        b = next(o for o in ex.scene["objects"] if (o["colour"], o["shape"]) == (m[4], m[5]))
        axis = "x" if "left" in m[3] or "right" in m[3] else "y"
        assert abs(a[axis] - b[axis]) >= 0.3
    for ex in generate(Spec("compare", {"diff": 2}, count=20), seed=3):
        m = re.fullmatch(r"Are there more (\w+) objects than (\w+) objects\?", ex.question)
        assert abs(_n(ex.scene["objects"], colour=m[1]) - _n(ex.scene["objects"], colour=m[2])) == 2
    for ex in generate(Spec("bar_compare", {"min_gap": 3, "num_bars": 4}, count=20), seed=4):
        values = sorted(b["value"] for b in ex.scene["bars"])
        gap = values[-1] - values[-2] if "tallest" in ex.question else values[1] - values[0]
        assert gap == 3 and len(values) == 4
    answers = Counter(ex.answer for ex in generate(Spec("spatial", count=60), seed=5))
    assert answers["yes"] > 10 and answers["no"] > 10


def test_impossible_placement_fails_clearly() -> None:
    with pytest.raises(
        PlacementError, match="could not place 9 objects of radius up to 0.300 without overlap"
    ):
        place(random.Random(0), [0.3] * 9, overlap=False)
    with pytest.raises(PlacementError, match="with partial overlap"):
        place(random.Random(0), [0.3] * 9, overlap=True)
    spots = place(random.Random(0), [0.1] * 4, overlap=False)
    assert len(spots) == 4 and all(0.1 <= v <= 0.9 for xy in spots for v in xy)


def test_difficulty_orders_easy_and_hard() -> None:
    easy = generate(Spec("count", {"num_objects": 1, "size": 0.12, "overlap": False}), seed=0)[0]
    hard = generate(Spec("count", {"num_objects": 9, "size": 0.06, "overlap": True}), seed=0)[0]
    assert easy.meta["difficulty"] == 0.0 and hard.meta["difficulty"] == 1.0


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("image_size", [64, 224])
def test_object_centres_have_their_colour(image_size: int) -> None:
    for name in ("colour", "shape", "count", "count_attr", "spatial", "compare", "arithmetic"):
        for ex in generate(Spec(name, count=8), seed=11, image_size=image_size):
            px = ex.image.load()
            for o in ex.scene["objects"]:
                at = px[int(o["x"] * image_size), int(o["y"] * image_size)]
                assert at == COLOURS[o["colour"]], (name, o, at)


def _bar_heights(image: Any, colour: tuple[int, int, int]) -> list[int]:
    """Heights in pixels of the runs of bar-coloured columns, left to right."""
    w, h = image.size
    px = image.load()
    counts = [sum(px[x, y] == colour for y in range(h)) for x in range(w)]
    runs: list[list[int]] = []
    for x, c in enumerate(counts):
        if c and x > 0 and counts[x - 1]:
            runs[-1].append(c)
        elif c:
            runs.append([c])
    return [max(r) for r in runs]


@pytest.mark.parametrize("image_size", [64, 224])
def test_bar_heights_rank_like_values(image_size: int) -> None:
    for ex in generate(Spec("bar_value", count=10), seed=5, image_size=image_size):
        values = [b["value"] for b in ex.scene["bars"]]
        heights = _bar_heights(ex.image, COLOURS[ex.scene["colour"]])
        assert len(heights) == len(values)
        lo, hi = min(values), max(values)
        unit = (max(heights) - min(heights)) / (hi - lo) if hi > lo else 0.0
        for v, h in zip(values, heights, strict=True):
            assert abs(h - min(heights) - (v - lo) * unit) <= 1.5  # heights are linear in values
            for v2, h2 in zip(values, heights, strict=True):
                assert (v < v2) == (h < h2)


@pytest.mark.parametrize("image_size", [64, 224])
def test_every_skill_renders_at_size(image_size: int) -> None:
    for name in skill_names():
        ex = generate(Spec(name), seed=0, image_size=image_size)[0]
        assert ex.image.size == (image_size, image_size) and ex.image.mode == "RGB"
        assert len(set(ex.image.getdata())) > 2
        assert image_hash(render(ex.scene, image_size)) == image_hash(ex.image)
        json.dumps(ex.scene)
        json.dumps(ex.to_record())


# ----------------------------------------------------------------------------- determinism


def _texts(exs: list[Example]) -> list[tuple[str, str, str, str]]:
    return [(e.id, e.question, e.answer, image_hash(e.image)) for e in exs]


def test_generation_is_deterministic() -> None:
    for name in skill_names():
        a = generate(Spec(name, count=4), seed=7)
        assert _texts(a) == _texts(generate(Spec(name, count=4), seed=7))
        assert _texts(a)[:2] == _texts(generate(Spec(name, count=2), seed=7))
        other = {h for *_, h in _texts(generate(Spec(name, count=4), seed=8))}
        assert {h for *_, h in _texts(a)} != other
    assert len({e.id for e in generate(Spec("count", count=50), seed=0)}) == 50
    ex = generate(Spec("count"), seed=0, source="synthetic", split="round3", id_prefix="r3")[0]
    assert (ex.id, ex.source, ex.split, ex.skill) == ("r3-00000", "synthetic", "round3", "count")


# ----------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Example]]:
    return build_splits(seed=3, train_size=900, probe_size=90, test_size=95)


def test_split_sizes_and_labels(splits: dict[str, list[Example]]) -> None:
    assert {k: len(v) for k, v in splits.items()} == {"train": 900, "probe": 90, "test": 95}
    for name, items in splits.items():
        assert all(e.source == "real" and e.split == name for e in items)
        assert len({e.id for e in items}) == len(items)
        assert all(e.answer == recompute(e.question, e.scene) for e in items)


def test_splits_are_disjoint(splits: dict[str, list[Example]]) -> None:
    hashes = {k: [image_hash(e.image) for e in v] for k, v in splits.items()}
    pairs = {k: {(image_hash(e.image), e.question) for e in v} for k, v in splits.items()}
    assert not (pairs["train"] & pairs["probe"]) and not (pairs["train"] & pairs["test"])
    assert not (pairs["probe"] & pairs["test"])
    assert not set(hashes["test"]) & (set(hashes["train"]) | set(hashes["probe"]))
    assert all(len(set(h)) == len(h) for h in hashes.values())


def test_split_distributions(splits: dict[str, list[Example]]) -> None:
    train = Counter(e.skill for e in splits["train"])
    for skill, weight in NATURAL_SKILL_WEIGHTS.items():
        assert abs(train[skill] / 900 - weight) < 0.01
    for name in ("probe", "test"):
        counts = Counter(e.skill for e in splits[name])
        assert set(counts) == set(skill_names()) and max(counts.values()) - min(counts.values()) <= 1
    mean = {k: sum(e.meta["difficulty"] for e in v) / len(v) for k, v in splits.items()}
    assert mean["train"] < mean["test"] - 0.1 and mean["train"] < mean["probe"] - 0.1
    assert abs(sum(NATURAL_SKILL_WEIGHTS.values()) - 1.0) < 1e-9
    assert min(NATURAL_SKILL_WEIGHTS.values()) <= 0.04


def test_splits_are_deterministic(splits: dict[str, list[Example]]) -> None:
    again = build_splits(seed=3, train_size=30, probe_size=90, test_size=95)
    for name in ("probe", "test"):
        assert _texts(again[name]) == _texts(splits[name])
    other = build_splits(seed=4, train_size=0, probe_size=0, test_size=95)
    assert _texts(other["test"]) != _texts(splits["test"])


def test_splits_of_some_skills() -> None:
    some = build_splits(seed=3, train_size=420, probe_size=40, test_size=40, skills=["shape", "count"])
    for name, items in some.items():
        assert {e.skill for e in items} == {"count", "shape"}, name
    train = Counter(e.skill for e in some["train"])  # the natural proportions of the two: 20 to 22
    assert train == {"count": 200, "shape": 220}
    assert Counter(e.skill for e in some["test"]) == {"count": 20, "shape": 20}
    # Naming every skill is the same as naming none: the default splits are untouched.
    every = build_splits(seed=3, train_size=30, probe_size=9, test_size=9, skills=skill_names())
    plain = build_splits(seed=3, train_size=30, probe_size=9, test_size=9)
    assert all(_texts(every[k]) == _texts(plain[k]) for k in plain)
    with pytest.raises(ValueError, match="unknown skill 'cuont' \\(did you mean 'count'\\?\\)"):
        build_splits(seed=3, train_size=1, probe_size=1, test_size=1, skills=["cuont"])
    with pytest.raises(ValueError, match="skills must be distinct"):
        build_splits(seed=3, train_size=1, probe_size=1, test_size=1, skills=["count", "count"])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (Spec("colr"), "unknown skill 'colr' (did you mean 'colour'?)"),
        (
            Spec("count", {"num_obj": 3}),
            "skill 'count': unknown parameter 'num_obj' (did you mean 'num_objects'?)",
        ),
        (Spec("count", {"num_objects": 12}), "'num_objects' = 12 is outside its range [1, 9]"),
        (
            Spec("count", {"num_objects": [0, 12]}),
            "'num_objects' range [0, 12] is outside its valid range [1, 9]",
        ),
        (Spec("count", {"num_objects": [6, 2]}), "is empty (lo > hi)"),
        (Spec("count", {"num_objects": 2.5}), "'num_objects' must be an int"),
        (Spec("count", {"overlap": "yes"}), "'overlap' must be true or false"),
        (Spec("spatial", {"relation": "lft"}), "unknown choice 'lft' (did you mean 'left'?)"),
        (Spec("bar_compare", {"which": ["tallest", "highest"]}), "unknown choice 'highest'"),
        (Spec("compare", {"smaller": 4, "diff": 5}), "skill 'compare': no combination"),
        (Spec("count", count=-1), "Spec.count must be a non-negative int"),
        ({"skill": "count", "cnt": 2}, "unknown Spec field 'cnt' (did you mean 'count'?)"),
    ],
)
def test_spec_errors_are_clear(spec: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        generate(spec, seed=0)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_forms_and_descriptions() -> None:
    exs = generate({"skill": "count", "params": {"num_objects": [2, 4, 9]}, "count": 30}, seed=0)
    assert {e.params["num_objects"] for e in exs} <= {2, 4, 9}
    exs = generate(Spec("count", {"num_objects": {"range": [2, 4]}}, count=30), seed=0)
    assert {e.params["num_objects"] for e in exs} == {2, 3, 4}
    desc = describe_skills()
    json.dumps(desc)
    assert list(desc) == skill_names() and len(desc) >= 9
    for info in desc.values():
        assert info["description"] and info["questions"]
        assert any(p["harder"] for p in info["params"].values())
    assert desc["count"]["params"]["num_objects"]["range"] == [1, 9]
    with pytest.raises(ValueError, match="image_size"):
        generate(Spec("count"), seed=0, image_size=8)


def test_world_corpus_covers_the_vocabulary() -> None:
    corpus = world_corpus(400, seed=1)
    assert len(corpus) == 400 and corpus == world_corpus(400, seed=1)
    words = set(" ".join(corpus).replace("?", " ").split())
    for w in [*COLOURS, "circle", "crosses", "yes", "no", "10", "a", "F", "tallest", "left", "total"]:
        assert w in words


def test_uniform_train_split_of_chosen_skills() -> None:
    """``train_mix="uniform"`` with ``train_skills``: a base model's training data. Balanced over
    the chosen skills, every parameter over its full range, no image shared with probe or test,
    and probe and test exactly those of the plain splits."""
    perception = ["shape", "colour", "count"]
    plain = build_splits(seed=3, train_size=60, probe_size=30, test_size=45)
    base = build_splits(
        seed=3, train_size=1800, probe_size=30, test_size=45, train_mix="uniform", train_skills=perception
    )
    for name in ("probe", "test"):
        assert _texts(base[name]) == _texts(plain[name])
    train = base["train"]
    assert Counter(e.skill for e in train) == dict.fromkeys(perception, 600)
    assert all(e.split == "train" and e.source == "real" for e in train)
    assert (
        all(e.id.startswith("real-train-uniform-s3-") for e in train) and len({e.id for e in train}) == 1800
    )
    assert all(e.answer == recompute(e.question, e.scene) for e in train)
    for skill in perception:
        items = [e for e in train if e.skill == skill]
        for name, param in get_skill(skill).params.items():
            values = [e.params[name] for e in items]
            if param.kind == "int":  # every value, each near its uniform share
                counts = Counter(values)
                share = len(items) / (param.hi - param.lo + 1)
                assert set(counts) == set(range(int(param.lo), int(param.hi) + 1)), (skill, name)
                assert all(0.6 * share < n < 1.4 * share for n in counts.values()), (skill, name, counts)
            elif param.kind == "float":
                span = param.hi - param.lo
                assert min(values) < param.lo + 0.05 * span and max(values) > param.hi - 0.05 * span
                assert abs(sum(values) / len(values) - (param.lo + param.hi) / 2) < 0.05 * span
            else:  # overlap: on about half the time, not the natural 15 %
                assert 0.4 < sum(values) / len(values) < 0.6, (skill, name)
    held_out = {image_hash(e.image) for k in ("probe", "test") for e in base[k]}
    hashes = [image_hash(e.image) for e in train]
    assert len(set(hashes)) == len(hashes) and not held_out & set(hashes)
    small = [
        build_splits(seed=s, train_size=30, probe_size=0, test_size=1, train_mix="uniform") for s in (3, 3, 4)
    ]
    assert _texts(small[0]["train"]) == _texts(small[1]["train"]) != _texts(small[2]["train"])
    every = Counter(e.skill for e in small[0]["train"])  # no train_skills: balanced over all nine
    assert set(every) == set(skill_names()) and max(every.values()) - min(every.values()) <= 1


def test_train_skills_alone_keep_the_natural_mix_and_are_checked() -> None:
    some = build_splits(seed=3, train_size=420, probe_size=18, test_size=18, train_skills=["shape", "count"])
    assert Counter(e.skill for e in some["train"]) == {"count": 200, "shape": 220}
    assert {e.skill for e in some["test"]} == set(skill_names())  # probe and test keep every skill
    both = build_splits(seed=3, train_size=420, probe_size=0, test_size=1, skills=["shape", "count"])
    assert _texts(both["train"]) == _texts(some["train"])  # natural train: as with skills alone
    with pytest.raises(ValueError, match="train_mix must be one of"):
        build_splits(seed=3, train_size=1, probe_size=0, test_size=1, train_mix="balanced")
    with pytest.raises(ValueError, match=r"train_skills \['colour'\] are not among"):
        build_splits(
            seed=3, train_size=1, probe_size=0, test_size=1, skills=["count"], train_skills=["colour"]
        )
    with pytest.raises(ValueError, match="did you mean 'count'"):
        build_splits(seed=3, train_size=1, probe_size=0, test_size=1, train_skills=["cuont"])
