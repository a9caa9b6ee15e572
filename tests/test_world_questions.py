"""Tests of the scene-only answer verifier and the "same image, new question" generator.

The verifier must agree with every skill's sampler on every generated example, and the
questions it proposes for a scene are checked against the independent recount of test_world.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curriculum.world import Spec, generate
from curriculum.world.questions import answer_from_scene, questions_for_scene
from curriculum.world.scene import Bar, BarChart, ObjectScene, SceneObject, scene_from_dict
from curriculum.world.skills import SKILLS
from tests.test_world import recompute


def _examples(skill: str, seed: int, n: int = 25) -> list[Any]:
    return generate(Spec(skill, {}, n), seed, image_size=32)


def _objects(*items: tuple[str, str, float, float]) -> dict[str, Any]:
    objs = [SceneObject(shape, colour, 0.08, x, y) for shape, colour, x, y in items]
    return ObjectScene(objects=objs).to_dict()


@pytest.mark.parametrize("skill", list(SKILLS))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
def test_verifier_agrees_with_generator(skill: str, seed: int) -> None:
    for ex in _examples(skill, seed):
        assert answer_from_scene(ex.scene, ex.question) == (ex.skill, ex.answer), ex.question
        assert answer_from_scene(scene_from_dict(ex.scene), ex.question) == (ex.skill, ex.answer)


@pytest.mark.parametrize("skill", list(SKILLS))
def test_questions_round_trip_and_are_right(skill: str) -> None:
    for i, ex in enumerate(_examples(skill, seed=7, n=12)):
        triples = questions_for_scene(ex.scene, random.Random(i))
        assert triples and len(set(triples)) == len(triples)
        asked = {s for s, _, _ in triples}
        assert asked <= (
            {"bar_value", "bar_compare"}
            if ex.scene["kind"] == "bars"
            else set(SKILLS) - {"bar_value", "bar_compare"}
        )
        for s, question, answer in triples:
            assert answer_from_scene(ex.scene, question) == (s, answer)
            assert answer == recompute(question, ex.scene), question
        if ex.scene["kind"] == "objects":
            assert ("count", "How many objects are there?", str(len(ex.scene["objects"]))) in triples


def test_a_failed_count_scene_yields_other_skills() -> None:
    ex = generate(Spec("count", {"num_objects": 6}, 1), 3, image_size=32)[0]
    asked = {s for s, _, _ in questions_for_scene(ex.scene, random.Random(0))}
    assert {"count", "count_attr", "compare", "arithmetic", "spatial"} <= asked


def test_skills_filter_limit_and_bounds() -> None:
    ex = generate(Spec("count", {"num_objects": 9}, 1), 5, image_size=32)[0]
    everything = questions_for_scene(ex.scene, random.Random(1))
    assert len(everything) <= 12 * 7
    only = questions_for_scene(ex.scene, random.Random(1), skills=["spatial", "compare"], limit=5)
    assert len(only) == 5 and {s for s, _, _ in only} <= {"spatial", "compare"}
    assert questions_for_scene(ex.scene, random.Random(1), skills=["bar_value"]) == []
    with pytest.raises(ValueError, match="unknown skill"):
        questions_for_scene(ex.scene, random.Random(1), skills=["colours"])


def test_questions_for_scene_is_deterministic() -> None:
    ex = generate(Spec("spatial", {"distractors": 5}, 1), 11, image_size=32)[0]
    first = questions_for_scene(ex.scene, random.Random(42))
    assert first == questions_for_scene(ex.scene, random.Random(42))
    assert first == questions_for_scene(scene_from_dict(ex.scene), random.Random(42))
    assert questions_for_scene(ex.scene, random.Random(42), limit=7) == first[:7]
    assert first != questions_for_scene(ex.scene, random.Random(43))


def test_ill_posed_and_unknown_questions() -> None:
    scene = _objects(("circle", "red", 0.2, 0.2), ("circle", "blue", 0.8, 0.21), ("square", "red", 0.5, 0.8))
    assert answer_from_scene(scene, "What colour is the circle?") is None  # two circles
    assert answer_from_scene(scene, "What colour is the cross?") is None  # no cross
    assert answer_from_scene(scene, "What colour is the square?") == ("colour", "red")
    assert answer_from_scene(scene, "What shape is the red object?") is None
    assert answer_from_scene(scene, "Are there more red objects than blue objects?") == ("compare", "yes")
    assert answer_from_scene(scene, "Are there more green objects than yellow objects?") is None
    assert answer_from_scene(scene, "How many more blue objects than red objects are there?") is None
    assert answer_from_scene(scene, "How many more red objects than red objects are there?") is None
    assert answer_from_scene(scene, "How many crosses and squares are there in total?") is None
    assert answer_from_scene(scene, "How many squares and crosses are there in total?") == ("arithmetic", "1")
    assert answer_from_scene(scene, "How many crosses are there?") == ("count_attr", "0")
    assert answer_from_scene(scene, "Is the red circle to the left of the blue circle?") == ("spatial", "yes")
    assert answer_from_scene(scene, "Is the red circle above the blue circle?") is None  # centres level
    assert answer_from_scene(scene, "Is the red square above the blue circle?") == ("spatial", "no")
    assert answer_from_scene(scene, "Is the red circle above the red circle?") is None
    assert answer_from_scene(scene, "Is the green circle above the red square?") is None
    assert answer_from_scene(scene, "How many circless are there?") is None
    assert answer_from_scene(scene, "What is the value of bar A?") is None  # not a chart
    assert answer_from_scene(scene, "What is the meaning of life?") is None
    assert answer_from_scene(_objects(), "How many objects are there?") is None


def test_bar_questions() -> None:
    chart = BarChart(bars=[Bar("A", 3), Bar("B", 7), Bar("C", 7), Bar("D", 1)]).to_dict()
    assert answer_from_scene(chart, "What is the value of bar C?") == ("bar_value", "7")
    assert answer_from_scene(chart, "What is the value of bar E?") is None
    assert answer_from_scene(chart, "Which bar is the tallest?") is None  # B and C tie
    assert answer_from_scene(chart, "Which bar is the shortest?") == ("bar_compare", "d")
    assert answer_from_scene(chart, "How many objects are there?") is None
    triples = questions_for_scene(chart, random.Random(0))
    assert sorted(triples) == [
        ("bar_compare", "Which bar is the shortest?", "d"),
        *[("bar_value", f"What is the value of bar {b}?", v) for b, v in zip("ABCD", "3771", strict=True)],
    ]
