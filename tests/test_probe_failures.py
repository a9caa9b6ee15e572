"""Sampled probes: an item fails when the student does no better than answering blind."""

import json

import pytest


def test_prior_pass_rate_fails_yes_no_items_the_student_only_guesses(tmp_path, world_small):
    from curriculum.engine import Curriculum
    from curriculum.mining import answer_priors, answer_probe
    from train.config import CurriculumConfig

    class Guessing:
        """Half of the samples right on every item: a coin on yes/no, far above chance on counts."""

        def answer(self, examples):
            return ["?"] * len(examples)

        def sample(self, examples, n):
            return [[ex.answer if i % 2 else "?" for i in range(n)] for ex in examples]

    priors = answer_priors(world_small["train"])
    assert priors["compare"] >= 0.5 and priors["count"] < 0.5  # two answers; ten
    items = [ex for ex in world_small["probe"] if ex.skill in ("compare", "count")]
    _, by_zero = answer_probe(items, Guessing(), 4, 0.0)
    _, by_prior = answer_probe(items, Guessing(), 4, priors)
    assert all(by_zero)  # no item has all of its samples wrong
    marks = {skill: [ok for ok, ex in zip(by_prior, items, strict=True) if ex.skill == skill]
             for skill in ("compare", "count")}  # fmt: skip
    assert marks["compare"] and not any(marks["compare"])  # a coin is no better than answering blind
    assert all(marks["count"])
    cfg = CurriculumConfig(enabled=True, every=10, budget=16, probe_samples=4, failure_pass_rate="prior")
    cur = Curriculum(cfg, tmp_path / "c", world_small["train"], world_small["probe"],
                     {"test": world_small["test"]}, 32, 0)  # fmt: skip
    assert cur.update(10, Guessing()).status == "ok"
    cur.close()
    failed = (tmp_path / "c" / "round_00001" / "failures.jsonl").read_text().splitlines()
    assert "compare" in {json.loads(x)["skill"] for x in failed}
    with pytest.raises(ValueError, match="failure_pass_rate"):
        CurriculumConfig(failure_pass_rate=1.5)
