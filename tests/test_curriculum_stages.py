"""Each model-free stage of a curriculum round on its own: mining, budget, filters, mixing."""

import dataclasses
import random

import pytest

from curriculum.engine import baseline_weaknesses, split_budget
from curriculum.filters import AnswerCheck, Decontaminate, Dedup, StudentCheck, TextIndex
from curriculum.generators import (
    ProposalGenerator,
    RealGenerator,
    ReplayGenerator,
    SameImageGenerator,
    WorldGenerator,
    in_slice,
)
from curriculum.mining import mine
from curriculum.mixer import Mixer, ratio_schedule
from curriculum.stream import DataStream
from curriculum.types import Candidate, Failure, Weakness, image_hash


def weakness(skill="count", slice_=None, rate=0.5, spec=True, ids=()):
    slice_ = {"num_objects": [7, 9]} if slice_ is None else slice_
    return Weakness(
        id=f"{skill}/x",
        skill=skill,
        slice=slice_,
        failure_rate=rate,
        lower_bound=rate / 2,
        n=10,
        failures=5,
        failure_ids=list(ids),
        diagnosis="d",
        spec={"skill": skill, "params": slice_} if spec else None,
    )


def test_mine_marks_new_puts_them_first_and_caps(world_small):
    probe = world_small["probe"][:20]
    preds = ["wrong"] * 20
    correct = [i % 4 == 0 for i in range(20)]  # 15 failures
    seen = {probe[1].id, probe[2].id}
    failures = mine(probe, preds, correct, seen, 3, 0, random.Random(0))
    assert len(failures) == 15 and all(f.round == 3 for f in failures)
    assert [f.new for f in failures] == [True] * 13 + [False] * 2
    capped = mine(probe, preds, correct, seen, 3, 14, random.Random(0))
    assert len(capped) == 14 and sum(not f.new for f in capped) == 1
    assert len(mine(probe, preds, correct, seen, 3, 5, random.Random(0))) == 5


def test_budget_follows_failure_rates():
    ws = [weakness(rate=0.9), weakness(rate=0.6), weakness(rate=0.3)]
    shares = split_budget(ws, 100)
    assert sum(shares) == 100 and shares[0] > shares[1] > shares[2]
    assert shares == [50, 33, 17]
    assert split_budget(ws, 0) == [0, 0, 0] and split_budget([], 10) == []


class OneAnswer:
    """A generator whose every example has the answer ``answer`` (as replay or same_image could)."""

    name = "skewed"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def generate(self, weakness, failures, count, seed, prefix):
        made = WorldGenerator(32).generate(weakness, failures, count, seed, prefix)
        return [dataclasses.replace(ex, answer=self.answer) for ex in made]


def test_a_weakness_that_fixes_the_answer_keeps_no_more_of_it_than_of_the_others():
    from curriculum.budget import balance_answers, make_candidates

    pinned, other = weakness("compare", {"answer": "no"}), weakness("count")
    gens = [WorldGenerator(32), OneAnswer("no")]
    cands = make_candidates(1, [pinned, other], [], gens, {"world": 1, "skewed": 1}, 80, 0)
    mine = [c for c in cands if c.weakness == pinned.id]
    # the world generator's half of 40: 10 "no" and 10 "yes" (its contrast); the skewed half: 20 "no"
    assert [c.example.answer for c in mine].count("no") == 30
    next(c for c in mine if c.example.answer == "yes").drop("student", "answered")  # one "yes" gone
    balance_answers(cands, [pinned, other])
    live = [c for c in mine if c.dropped is None]
    assert [c.example.answer for c in live].count("yes") == 9 and [c.example.answer for c in live].count(
        "no"
    ) == 10
    assert {c.generator for c in mine if c.dropped == "balance"} == {"skewed"}  # the last made go first
    assert all(c.dropped is None for c in cands if c.weakness == other.id)  # no one answer: all kept


def test_world_generator_follows_the_spec_and_answers_verify():
    w = weakness()
    made = WorldGenerator(32).generate(w, [], 12, seed=1, prefix="r1-w0-world")
    assert len(made) == 12 and all(in_slice(ex.params, w.slice) for ex in made)
    assert all(ex.id.startswith("r1-w0-world") and ex.meta["weakness"] == w.id for ex in made)
    cands = [Candidate(ex, w.id, "world") for ex in made]
    AnswerCheck()(cands)
    assert all(c.dropped is None for c in cands)
    assert WorldGenerator(32).generate(weakness(spec=False), [], 5, 1, "p") == []


def test_same_image_generator_reuses_the_failed_picture(world_small):
    failed = [ex for ex in world_small["probe"] if ex.scene and ex.scene["kind"] == "objects"][:3]
    failures = [Failure(ex, "0", 1) for ex in failed]
    made = SameImageGenerator().generate(weakness(skill=failed[0].skill), failures, 9, 0, "p")
    assert len(made) == 9
    assert {image_hash(ex.image) for ex in made} <= {image_hash(ex.image) for ex in failed}
    asked = {(image_hash(ex.image), ex.question) for ex in failed}
    assert not any((image_hash(ex.image), ex.question) in asked for ex in made)
    cands = [Candidate(ex, "w", "same_image") for ex in made]
    AnswerCheck()(cands)
    assert all(c.dropped is None for c in cands)


def test_generators_make_only_the_run_s_skills(world_small):
    failed = [ex for ex in world_small["probe"] if ex.scene and ex.scene["kind"] == "objects"][:4]
    failures = [Failure(ex, "0", 1) for ex in failed]
    made = SameImageGenerator(["count", "count_attr"]).generate(weakness(), failures, 12, 0, "p")
    assert made and {ex.skill for ex in made} <= {"count", "count_attr"}
    assert {ex.skill for ex in RealGenerator(32, ["shape"]).generate(weakness(), [], 6, 0, "r")} == {"shape"}
    assert [w.skill for w in baseline_weaknesses("uniform", ["spatial", "count"])] == ["count", "spatial"]
    proposals = [
        {"kind": "rendered", "skill": s, "params": [], "question": "", "answer": ""}
        for s in ("shape", "count")
    ]
    w = dataclasses.replace(weakness(), notes={"proposals": proposals})
    assert {ex.skill for ex in ProposalGenerator(32, skills=["count"]).generate(w, [], 4, 0, "q")} == {
        "count"
    }
    assert {ex.skill for ex in ProposalGenerator(32).generate(w, [], 4, 0, "q")} == {"count", "shape"}


def test_replay_finds_real_items_in_the_slice(world_small):
    train = world_small["train"]
    w = weakness(slice_={"num_objects": [4, 9]})
    made = ReplayGenerator(train).generate(w, [], 5, 0, "p")
    assert made and all(ex.skill == "count" and ex.params["num_objects"] >= 4 for ex in made)
    assert all(ex.source == "real" and ex.meta["generator"] == "replay" for ex in made)
    # A replay is a new pool entry: its own id, pointing at the real item it repeats.
    assert all(ex.id.startswith("p-") and ex.meta["replay_of"].startswith("real-train") for ex in made)


def test_answer_check_drops_a_wrong_answer(world_small):
    ex = next(e for e in world_small["train"] if e.skill == "count")
    bad = dataclasses.replace(ex, answer=str(int(ex.answer) + 1))
    cands = [Candidate(ex, "w", "world"), Candidate(bad, "w", "world")]
    AnswerCheck()(cands)
    assert cands[0].dropped is None and cands[1].dropped == "answer"
    assert "disagrees" in cands[1].verdicts["answer"]


def test_dedup_against_pool_and_round(world_small):
    a, b = world_small["train"][:2]
    dedup = Dedup(0.8)
    dedup.add(a)
    near = dataclasses.replace(b, id="near", question=b.question + " ")
    cands = [Candidate(a, "w", "g"), Candidate(b, "w", "g"), Candidate(near, "w", "g")]
    dedup(cands)
    assert [c.dropped for c in cands] == ["dedup", None, "dedup"]


def test_decontamination_keeps_planted_test_items_out(world_small):
    test, probe, train = world_small["test"], world_small["probe"], world_small["train"]
    planted = dataclasses.replace(test[0], id="planted", split=None)  # a test item posing as new
    same_image_new_q = dataclasses.replace(test[1], id="t1q", question="How many objects are there in all?")
    probe_item = dataclasses.replace(probe[0], id="p0")
    probe_image_new_q = dataclasses.replace(probe[1], id="p1q", question="Is this a brand new question?")
    extra = [
        dataclasses.replace(train[5], id="bench-0", question="What is the capital letter on the left bar?")
    ]
    leaked_text = dataclasses.replace(
        train[6], id="leak", question="what is the capital letter on the left bar", scene=None
    )
    fine = train[7]
    decon = Decontaminate({"test": test, "bench": extra}, probe, 0.8)
    cands = [
        Candidate(x, "w", "g")
        for x in (planted, same_image_new_q, probe_item, probe_image_new_q, leaked_text, fine)
    ]
    decon(cands)
    assert [c.dropped for c in cands] == ["decontaminate"] * 3 + [None, "decontaminate", None]
    assert (
        "test:" in cands[0].verdicts["decontaminate"] and "probe item" in cands[2].verdicts["decontaminate"]
    )
    assert "bench:bench-0" in cands[4].verdicts["decontaminate"]
    # A templated question shared by many test items identifies none of them.
    assert TextIndex(0.8).match("anything") is None


class _Policy:
    def __init__(self, answers):
        self.answers = answers

    def answer(self, examples):
        return [self.answers.get(ex.id, "?") for ex in examples]

    def sample(self, examples, n):
        return [[self.answers.get(ex.id, "?")] * (n - 1) + ["?"] for ex in examples]


def test_student_check_keeps_what_the_model_gets_wrong(world_small):
    a, b = world_small["train"][:2]
    policy = _Policy({a.id: a.answer})
    cands = [Candidate(a, "w", "g"), Candidate(b, "w", "g")]
    StudentCheck(policy, "fails")(cands)
    assert [c.dropped for c in cands] == ["student", None]
    band = [Candidate(a, "w", "g"), Candidate(b, "w", "g")]
    StudentCheck(policy, "band", (0.0, 0.5), samples=4)(band)  # a passes 3 of 4, b 0 of 4
    assert [c.dropped for c in band] == ["student", None]


def test_mixer_without_pool_is_the_plain_stream(world_small):
    train = world_small["train"]
    mixer, stream = Mixer(train, 3, ratio_schedule(0.5, None, 0)), DataStream(len(train), 3)
    for step in range(5):
        assert [e.id for e in mixer.next_batch(8, step)] == [train[i].id for i in stream.next_indices(8)]


def test_mixer_draws_pool_by_ratio_and_weight_reproducibly(world_small):
    train, pool = world_small["train"], world_small["probe"][:2]

    def draws(ratio, weights, seed=0):
        m = Mixer(train, seed, ratio_schedule(ratio, None, 0))
        m.set_pool(pool, weights)
        return [e.id for step in range(50) for e in m.next_batch(8, step)]

    ids = draws(0.25, [1.0, 3.0])
    from_pool = [i for i in ids if i in {p.id for p in pool}]
    assert 0.18 < len(from_pool) / len(ids) < 0.32
    assert 0.6 < from_pool.count(pool[1].id) / len(from_pool) < 0.9
    assert ids == draws(0.25, [1.0, 3.0])
    assert draws(1.0, [1.0, 0.0]) == [pool[0].id] * 400
    ramp = ratio_schedule(0.0, 1.0, 10)
    assert ramp(0) == 0.0 and ramp(5) == pytest.approx(0.5) and ramp(20) == 1.0


def test_mixer_ranks_split_the_global_batch(world_small):
    train, pool = world_small["train"], world_small["probe"][:4]
    single = Mixer(train, 0, ratio_schedule(0.5, None, 0))
    single.set_pool(pool, [1.0] * 4)
    ranks = [Mixer(train, 0, ratio_schedule(0.5, None, 0), r, 2) for r in range(2)]
    for m in ranks:
        m.set_pool(pool, [1.0] * 4)
    for step in range(4):
        whole = [e.id for e in single.next_batch(8, step)]
        assert whole == [e.id for m in ranks for e in m.next_batch(4, step)]


def test_eval_set_files_load_and_bad_ones_are_named(tmp_path, world_small):
    from curriculum.types import as_pil
    from train.config import DataConfig
    from train.data import load_eval_sets

    item = world_small["train"][3]
    as_pil(item.image).save(tmp_path / "a.png")
    (tmp_path / "bench.jsonl").write_text(
        '{"id": "b0", "question": "Which organ is shown here?", "image": "a.png"}\n'
    )
    sets = load_eval_sets([str(tmp_path / "bench.jsonl")], DataConfig())
    assert [ex.id for ex in sets["bench"]] == ["b0"] and image_hash(sets["bench"][0].image) == image_hash(
        item.image
    )
    cand = Candidate(dataclasses.replace(item, id="copy"), "w", "g")
    Decontaminate(sets, [], 0.8)([cand])
    assert cand.dropped == "decontaminate" and "bench:b0" in cand.verdicts["decontaminate"]
    (tmp_path / "bad.jsonl").write_text('{"text": "no question"}\n')
    with pytest.raises(ValueError, match="bad.jsonl.*item 0 has no 'question'"):
        load_eval_sets([str(tmp_path / "bad.jsonl")], DataConfig())
    with pytest.raises(ValueError, match="no such file"):
        load_eval_sets([str(tmp_path / "missing.json")], DataConfig())
