"""Baseline rounds in the engine, with a scripted policy: external data's reserve feeds ``real``,
``uniform`` and ``rebalanced``; a rebalanced round keeps the skill mix it is given, real data as
it comes (no student check), each example sampled alike."""

import dataclasses
import json
from collections import Counter

import pytest

from curriculum.engine import Curriculum
from tests.test_curriculum import ScriptedPolicy
from train.config import CurriculumConfig

ALL = (
    "colour",
    "shape",
    "count",
    "count_attr",
    "spatial",
    "bar_value",
    "compare",
    "bar_compare",
    "arithmetic",
)


@pytest.fixture(scope="module")
def external(world_small):
    """The small world as data without scenes (a user's dataset): train, a reserve, probe, test."""
    strip = lambda xs: [dataclasses.replace(ex, scene=None, params={}) for ex in xs]  # noqa: E731
    train = strip(world_small["train"])
    return {"train": train[:160], "reserve": train[160:], "probe": strip(world_small["probe"]),
            "test": strip(world_small["test"])}  # fmt: skip


def curriculum(tmp_path, data, reserve=None, **options):
    cfg = CurriculumConfig(**{"enabled": True, "every": 10, "budget": 30, "pool_cap": 500, **options})
    return Curriculum(cfg, tmp_path / "curriculum", data["train"], data["probe"], {"test": data["test"]}, 32,
                      seed=0, reserve=reserve)  # fmt: skip


def added(cur, k):
    return cur.pool.round_examples(k)


def test_real_draws_fresh_reserve_items_round_after_round(tmp_path, external):
    reserve = {ex.id: ex for ex in external["reserve"]}
    cur = curriculum(tmp_path, external, external["reserve"], source="real", budget=60, quota=[20, 20])
    policy = ScriptedPolicy(knows=ALL)  # knows everything: real data passes no student check
    first, second = cur.update(10, policy), cur.update(20, policy)
    assert first.metrics["curriculum/kept"] == 20 and second.metrics["curriculum/kept"] == 20
    drawn = [ex.meta["reserve_of"] for k in (1, 2) for ex in added(cur, k)]
    assert set(drawn) <= set(reserve) and len(set(drawn)) == 40
    assert all(ex.scene is None and ex.meta["generator"] == "real" for k in (1, 2) for ex in added(cur, k))
    # Round 2 drew none of the items the pool held (they would have been dropped as duplicates).
    rows = (tmp_path / "curriculum" / "round_00002" / "candidates.jsonl").read_text().splitlines()
    again = {json.loads(r)["meta"]["reserve_of"] for r in rows} & {
        ex.meta["reserve_of"] for ex in added(cur, 1)
    }
    assert len(rows) == 60 and not again
    cur.close()


def test_rebalanced_keeps_the_skill_mix_from_the_reserve(tmp_path, external):
    mix = [{"count": 3, "colour": 2}, {"shape": 1}]
    cur = curriculum(
        tmp_path, external, external["reserve"], source="rebalanced", quota=[6, 1], skill_quota=mix
    )
    policy = ScriptedPolicy(knows=ALL)
    cur.update(10, policy), cur.update(20, policy)
    first = added(cur, 1)
    assert Counter(ex.meta["weakness"] for ex in first) == {"rebalanced/count": 3, "rebalanced/colour": 2,
                                                           "rebalanced": 1}  # fmt: skip
    assert Counter(ex.skill for ex in first if ex.meta["weakness"] != "rebalanced") == mix[0]
    assert Counter(ex.skill for ex in added(cur, 2)) == mix[1]
    assert {cur.pool.weights[ex.id] for ex in cur.pool.examples} == {1.0}
    assert {ex.meta["generator"] for ex in cur.pool.examples} == {"skill_real"}
    cur.close()


def test_uniform_on_external_data_draws_every_skill_of_the_reserve_through_the_student_check(
    tmp_path, external
):
    cur = curriculum(tmp_path, external, external["reserve"], source="uniform")
    result = cur.update(10, ScriptedPolicy(knows=("colour", "shape")))
    skills = sorted({ex.skill for ex in external["reserve"]})
    assert [w.id for w in result.weaknesses] == [f"uniform/{s}" for s in skills]
    kept = added(cur, 1)
    assert kept and all(ex.meta["weakness"] == f"uniform/{ex.skill}" for ex in kept)
    assert not {ex.skill for ex in kept} & {"colour", "shape"}  # the student check dropped what it knows
    cur.close()


def test_rebalanced_on_the_world_makes_natural_items_of_each_skill(tmp_path, world_small):
    mix = [{"spatial": 4, "arithmetic": 2}]
    cur = curriculum(tmp_path, world_small, source="rebalanced", quota=[6], skill_quota=mix)
    cur.update(10, ScriptedPolicy(knows=ALL))
    kept = added(cur, 1)
    assert Counter(ex.skill for ex in kept) == mix[0]
    assert all(ex.scene is not None and ex.source == "real" for ex in kept)
    cur.close()
