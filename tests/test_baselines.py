"""The baselines' targets and generators: what a rebalanced round asks for and keeps, and real
items drawn by skill from the world or from external data's reserve."""

import pytest

from curriculum.baselines import (
    REBALANCED_REST,
    baseline_generators,
    baseline_weaknesses,
    cap_by_weakness,
    round_mix,
)
from curriculum.budget import split_budget
from curriculum.generators import RealGenerator, SkillRealGenerator
from curriculum.types import Candidate, Example, Weakness
from train.config import ConfigError, load_config


def target(skill):
    return Weakness(f"t/{skill}", skill, {}, 1.0, 1.0, 0, 0, [], "d")


def test_a_rebalanced_round_asks_for_the_skill_mix_and_the_rest_of_its_quota():
    skill_quota = [{"count": 3, "spatial": 1}, {"arithmetic": 2}]
    assert round_mix(skill_quota, [5, 2], 1) == {"count": 3, "spatial": 1, None: 1}
    assert round_mix(skill_quota, [5, 2], 2) == {"arithmetic": 2}
    assert round_mix(skill_quota, [5, 2, 4], 3) == {None: 4}  # past the mix: all of any skill
    assert round_mix(skill_quota, [], 1) == {"count": 3, "spatial": 1}
    weaknesses = baseline_weaknesses("rebalanced", mix={"count": 3, "spatial": 1, None: 2, "shape": 0})
    assert [(w.id, w.skill, w.notes["quota"]) for w in weaknesses] == [
        ("rebalanced/count", "count", 3),
        ("rebalanced/spatial", "spatial", 1),
        (REBALANCED_REST, None, 2),
    ]
    # The budget (oversampled) follows the mix; every example is sampled alike in training.
    assert split_budget(weaknesses, 18) == [9, 3, 6]
    assert {w.notes["weight"] for w in weaknesses} == {1.0}


def test_baselines_on_the_world_and_on_external_data():
    assert baseline_generators("uniform", world=True) == {"world": 1.0}
    assert baseline_generators("uniform", world=False) == {"skill_real": 1.0}
    assert baseline_generators("rebalanced", world=True) == {"skill_real": 1.0}
    assert baseline_generators("real", world=False) == {"real": 1.0}
    assert baseline_generators("hard_real", world=False) == {"hard_real": 1.0}
    world = baseline_weaknesses("uniform", ["spatial", "count"])
    assert [(w.skill, w.spec) for w in world] == [
        ("count", {"skill": "count", "params": {}}),
        ("spatial", {"skill": "spatial", "params": {}}),
    ]
    external = baseline_weaknesses("uniform", data_skills=["colour", "size"])
    assert [(w.id, w.skill, w.spec, w.failure_rate) for w in external] == [
        ("uniform/colour", "colour", None, 1.0),
        ("uniform/size", "size", None, 1.0),
    ]
    assert [w.skill for w in baseline_weaknesses("real")] == [None]


def test_each_weakness_keeps_at_most_its_quota_a_seeded_subset():
    def candidates():
        out = []
        for wid, n in (("rebalanced/count", 6), ("rebalanced/spatial", 2), ("other", 5)):
            out += [Candidate(Example(f"{wid}-{i}", None, "q", "a"), wid, "skill_real") for i in range(n)]
        out[0].drop("dedup", "duplicate")  # dropped before: not counted
        return out

    weaknesses = baseline_weaknesses("rebalanced", mix={"count": 3, "spatial": 4})
    cands = candidates()
    cap_by_weakness(1, cands, weaknesses, seed=0)
    kept = [c.example.id for c in cands if c.dropped is None]
    assert sum(i.startswith("rebalanced/count") for i in kept) == 3
    assert sum(i.startswith("rebalanced/spatial") for i in kept) == 2  # fewer survived than its quota
    assert sum(i.startswith("other") for i in kept) == 5  # a weakness without a quota is not capped
    assert {c.dropped for c in cands if c.dropped and c.example.id != "rebalanced/count-0"} == {"quota"}
    again = candidates()
    cap_by_weakness(1, again, weaknesses, seed=0)
    assert [c.example.id for c in again if c.dropped is None] == kept


def test_skill_real_draws_the_world_s_natural_items_of_the_weakness_s_skill():
    made = SkillRealGenerator(32).generate(target("spatial"), [], 5, 0, "p")
    assert len(made) == 5 and {ex.skill for ex in made} == {"spatial"}
    assert all(ex.source == "real" and ex.meta["generator"] == "skill_real" for ex in made)
    assert [ex.id for ex in made] == [f"p-{i:05d}" for i in range(5)]
    assert SkillRealGenerator(32, ["count"]).generate(target("spatial"), [], 5, 0, "p") == []
    mixed = SkillRealGenerator(32, ["count", "shape"]).generate(target(None), [], 8, 0, "p")
    assert {ex.skill for ex in mixed} <= {"count", "shape"} and len(mixed) == 8


def test_real_items_come_from_the_reserve_on_external_data():
    reserve = [
        Example(f"r{i}", None, f"q{i}?", str(i), skill="rare" if i < 3 else "common") for i in range(12)
    ]
    by_skill = SkillRealGenerator(32, reserve=reserve)
    rare = by_skill.generate(target("rare"), [], 5, 1, "p")  # asks for more than the reserve holds
    assert sorted(ex.meta["reserve_of"] for ex in rare) == ["r0", "r1", "r2"]
    assert all(ex.skill == "rare" and ex.meta["generator"] == "skill_real" for ex in rare)
    assert {ex.question for ex in rare} == {"q0?", "q1?", "q2?"} and rare[0].id == "p-00000"
    assert by_skill.generate(target("unknown"), [], 5, 1, "p") == []
    anything = by_skill.generate(target(None), [], 12, 1, "p")
    assert sorted(ex.meta["reserve_of"] for ex in anything) == sorted(ex.id for ex in reserve)
    # ``real`` ignores the weakness: the data's own mix.
    real = RealGenerator(32, reserve=reserve).generate(target("rare"), [], 6, 2, "q")
    assert len(real) == 6 and all(ex.meta["generator"] == "real" and ex.meta["reserve_of"] for ex in real)
    assert [ex.id for ex in RealGenerator(32, reserve=reserve).generate(target("rare"), [], 6, 2, "q")] == [
        ex.id for ex in real
    ]
    assert reserve[0].meta == {} and reserve[0].id == "r0"  # the reserve itself is untouched
    assert RealGenerator(32, reserve=[]).generate(target(None), [], 4, 0, "p") == []


def test_reserve_items_the_pool_holds_are_not_drawn_again():
    reserve = [Example(f"r{i}", None, f"q{i}?", str(i), skill="s") for i in range(6)]
    pool = {"r1", "r4"}
    for gen in (RealGenerator(32, reserve=reserve, taken=lambda: pool),
                SkillRealGenerator(32, reserve=reserve, taken=lambda: pool)):  # fmt: skip
        drawn = [ex.meta["reserve_of"] for ex in gen.generate(target("s"), [], 6, 3, "p")]
        assert sorted(drawn) == ["r0", "r2", "r3", "r5"]  # all that is fresh, and nothing else


def test_skill_quota_is_checked_where_it_is_declared():
    with pytest.raises(ConfigError, match="curriculum.skill_quota must name each round's examples per skill"):
        load_config(None, ["curriculum.source=rebalanced"])
    with pytest.raises(ConfigError, match="curriculum.skill_quota counts must be >= 0"):
        load_config(None, ["curriculum.skill_quota=[{count: -1}]"])
    with pytest.raises(
        ConfigError, match=r"round 2 asks for 3 examples, more than curriculum.quota keeps \(2\)"
    ):
        load_config(None, ["curriculum.quota=[5, 2]", "curriculum.skill_quota=[{count: 3}, {count: 3}]"])
    load_config(
        None, ["curriculum.source=rebalanced", "curriculum.quota=[5]", "curriculum.skill_quota=[{count: 3}]"]
    )
