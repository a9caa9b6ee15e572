"""A round a resumed run loads back from disk is indistinguishable from the round computed.

A run killed after a round's commit and before its next checkpoint resumes from a checkpoint
taken before the round; when it reaches the round again it finds it on disk. Loading it must
leave the curriculum exactly as computing it did: seen failures, exemplars, history, the step at
which the pool changes, the random state; and the rounds after it must come out the same.
(The same, with a real model, killed at each boundary: tests/test_curriculum.py.)
"""

import json
import shutil

import pytest
import torch

from curriculum.engine import Curriculum
from curriculum.pool import Pool
from tests.test_curriculum import BrokenAnalyzer, ScriptedPolicy
from train.config import CurriculumConfig


def _cfg(**kw):
    return CurriculumConfig(enabled=True, every=10, budget=32, max_failures=12, **kw)


def _open(root, world, cfg, fresh=False):
    return Curriculum(
        cfg, root, world["train"], world["probe"], {"test": world["test"]}, 32, seed=0, fresh=fresh
    )


def _record(root, k):
    folder = root / f"round_{k:05d}"
    return {f: (folder / f).read_text() for f in ("failures.jsonl", "analysis.json", "candidates.jsonl")}


def _crashed_copy(src, dst, upto):
    """The run folder a crash right after round ``upto``'s commit leaves: rounds after it absent."""
    (dst / "pool").mkdir(parents=True)
    shutil.copytree(src / "pool" / "images", dst / "pool" / "images")
    for k in range(1, upto + 1):
        shutil.copy(src / "pool" / f"round_{k:05d}.jsonl", dst / "pool")
        shutil.copytree(src / f"round_{k:05d}", dst / f"round_{k:05d}")


def _metrics(result):
    return {k: v for k, v in result.metrics.items() if k != "curriculum/blocked_s"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, world_small):
    """Four sync rounds, the second one failing; the checkpoint state before each round."""
    root = tmp_path_factory.mktemp("run") / "curriculum"
    cur = _open(root, world_small, _cfg(), fresh=True)
    states, results = [], []
    for k in (1, 2, 3, 4):
        states.append(json.loads(json.dumps(cur.state_dict())))
        good = cur.analyzer
        if k == 2:
            cur.analyzer = BrokenAnalyzer()
        results.append(cur.update(10 * k, ScriptedPolicy()))
        cur.analyzer = good
    states.append(json.loads(json.dumps(cur.state_dict())))
    cur.close()
    assert [r.status for r in results] == ["ok", "failed", "ok", "ok"] and cur.exemplars
    return root, states, results


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_round_loaded_back_leaves_the_state_computing_it_left(tmp_path, world_small, uninterrupted, k):
    root, states, results = uninterrupted
    copy = tmp_path / "curriculum"
    _crashed_copy(root, copy, upto=k)
    resumed = _open(copy, world_small, _cfg())
    resumed.load_state_dict(states[k - 1])  # the checkpoint before round k
    loaded = resumed.update(10 * k, ScriptedPolicy())
    assert loaded.status == "restored" and _metrics(loaded) == _metrics(results[k - 1])
    assert loaded.error == results[k - 1].error
    assert json.loads(json.dumps(resumed.state_dict())) == states[k]  # seen, exemplars, history, pool
    # The next round, computed by the resumed run, is the uninterrupted run's.
    if k + 1 == 2:
        resumed.analyzer = BrokenAnalyzer()  # as in the uninterrupted run
    after = resumed.update(10 * (k + 1), ScriptedPolicy())
    assert after.status == results[k].status and _metrics(after) == _metrics(results[k])
    assert _record(copy, k + 1) == _record(root, k + 1)
    assert resumed.pool.ids() == Pool(root / "pool", upto=k + 1).ids()
    resumed.close()


class ProbeBlind(ScriptedPolicy):
    """Answers every probe item right (a model trained for a few more steps, say); elsewhere
    as ``ScriptedPolicy``. Probing with it again would find no failure."""

    def __init__(self, probe):
        super().__init__()
        self.probe_ids = {ex.id for ex in probe}

    def answer(self, examples):
        scripted = super().answer(examples)
        return [ex.answer if ex.id in self.probe_ids else a for ex, a in zip(examples, scripted, strict=True)]


def test_an_async_round_rejoins_a_resumed_run_at_its_injection_step(tmp_path, world_small):
    cfg = _cfg(mode="async", max_staleness=3)
    root = tmp_path / "run"
    cur = _open(root, world_small, cfg, fresh=True)
    before = cur.state_dict()
    assert cur.update(10, ScriptedPolicy()) is None
    in_flight = json.loads(json.dumps(cur.state_dict()))  # a checkpoint of step 10: the probe is kept
    assert in_flight["pending"]["round"] == 1 and in_flight["pending"]["probe"]["predictions"]
    assert cur.poll(11, ScriptedPolicy()) is None and cur.poll(12, ScriptedPolicy()) is None
    first = cur.poll(13, ScriptedPolicy())
    after = json.loads(json.dumps(cur.state_dict()))
    cur.close()
    assert first.status == "ok" and after["version"] == 1

    # Killed after the commit, resumed from before the round: the pool changes at step 13 again.
    for state in (before, in_flight):
        resumed = _open(root, world_small, cfg)
        resumed.load_state_dict(state)
        if state is before:
            assert resumed.update(10, ScriptedPolicy()) is None
        for step in (11, 12):
            assert resumed.poll(step, ScriptedPolicy()) is None and len(resumed.pool) == 0
        loaded = resumed.poll(13, ScriptedPolicy())
        assert loaded.status == "restored" and _metrics(loaded) == _metrics(first)
        assert json.loads(json.dumps(resumed.state_dict())) == after
        resumed.close()

    # Killed before the commit, resumed from step 10: the round is prepared from the probe the
    # checkpoint kept, not from a probe of the later model.
    copy = tmp_path / "copy"
    _crashed_copy(root, copy, upto=0)
    resumed = _open(copy, world_small, cfg)
    resumed.load_state_dict(in_flight)
    policy = ProbeBlind(world_small["probe"])
    assert resumed.poll(11, policy) is None and resumed.poll(12, policy) is None
    again = resumed.poll(13, policy)
    resumed.close()
    assert again.status == "ok" and _metrics(again) == _metrics(first)
    assert _record(copy, 1) == _record(root, 1)


class TorchSampler:
    """Samples answers with torch's random stream: right with probability one half."""

    def answer(self, examples):
        return ["0"] * len(examples)

    def sample(self, examples, n):
        draws = torch.rand(len(examples), n)
        return [[ex.answer if d < 0.5 else "0" for d in row] for ex, row in zip(examples, draws, strict=True)]


def test_a_round_draws_from_its_own_random_stream(tmp_path, world_small):
    """Sampled probes and band checks neither move the training's random state (a computed and
    a loaded round leave it alike) nor depend on it (a round is the same whenever it runs)."""
    cfg = _cfg(probe_samples=4, failure_pass_rate=0.25, student_check="band", band=[0.0, 0.75])
    torch.manual_seed(0)
    expected = torch.rand(4)
    records = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        cur = _open(tmp_path / name, world_small, cfg, fresh=True)
        assert cur.update(10, TorchSampler()).status == "ok"
        cur.close()
        records.append(_record(tmp_path / name, 1))
        if seed == 0:
            assert torch.equal(torch.rand(4), expected)
    assert records[0] == records[1]


def test_a_record_written_again_replaces_the_old_one_whole(tmp_path, world_small):
    """A round recomputed after a crash between its record and its commit writes its record
    again: the new one replaces the old one whole (no file of the old one stays behind)."""
    from curriculum.records import write_round
    from curriculum.types import Candidate, Failure

    ex = world_small["probe"][0]
    first = write_round(
        tmp_path, 1, {"status": "ok"}, [Failure(ex, "0", 1)], [], [Candidate(ex, "w", "world")]
    )
    assert (first / "contact_sheet.png").is_file() and (first / "failures.jsonl").read_text()
    again = write_round(tmp_path, 1, {"status": "failed", "error": "x"})
    assert again == first and sorted(p.name for p in again.iterdir()) == [
        "analysis.json", "candidates.jsonl", "failures.jsonl", "round.json"
    ]  # fmt: skip
    assert json.loads((again / "round.json").read_text())["status"] == "failed"
    assert (again / "failures.jsonl").read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == [
        "round_00001"
    ]
