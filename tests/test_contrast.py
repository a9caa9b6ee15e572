"""A weakness found on one answer of a question (the model gives the other answer to every item)
gets examples of both answers, and the student check keeps the ones the model already answers:
examples of one answer only would teach the opposite bias."""

from __future__ import annotations

from collections import Counter

from curriculum.filters import StudentCheck
from curriculum.generators import WorldGenerator, contrast
from curriculum.types import Candidate, Weakness
from curriculum.world import Spec


class SaysNo:
    """A model biased to one answer."""

    def answer(self, examples):
        return ["no"] * len(examples)


def _weakness(spec: dict) -> Weakness:
    return Weakness(id="compare/answer=yes", skill=spec["skill"], slice=dict(spec["params"]), failure_rate=1.0,
                    lower_bound=0.9, n=20, failures=20, failure_ids=[], diagnosis="says no", spec=spec)  # fmt: skip


def test_a_weakness_on_one_answer_gets_both_answers_and_keeps_them_past_the_student():
    weakness = _weakness({"skill": "compare", "params": {"answer": "yes"}})
    made = WorldGenerator(64).generate(weakness, [], 11, seed=3, prefix="r1-w0-world")
    assert Counter(ex.answer for ex in made) == {"yes": 6, "no": 5}
    assert len({ex.id for ex in made}) == 11
    assert all(bool(ex.meta.get("contrast")) == (ex.answer == "no") for ex in made)
    candidates = [Candidate(ex, weakness.id, "world") for ex in made]
    StudentCheck(SaysNo(), "fails")(candidates)
    # The "yes" items are what the model fails; the "no" items are kept unasked, as contrast.
    assert [c.dropped for c in candidates] == [None] * 11
    assert {c.verdicts["student"] for c in candidates if c.example.answer == "no"} == {
        "contrast: kept whatever the model answers"
    }


def test_other_weaknesses_are_drawn_as_they_were():
    spec = Spec("compare", {"num_objects": 4}, 8)
    assert contrast(spec) == [spec]
    assert contrast(Spec("compare", {"answer": "yes"}, 1)) == [Spec("compare", {"answer": "yes"}, 1)]
    plain = WorldGenerator(64).generate(_weakness({"skill": "colour", "params": {}}), [], 4, 3, "p")
    assert [ex.id.rsplit("-", 1)[0] for ex in plain] == ["p"] * 4 and not any(
        "contrast" in ex.meta for ex in plain
    )
