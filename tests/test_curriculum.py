"""Whole curriculum rounds: in the engine with a scripted policy, and inside the training loop."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curriculum.engine import Curriculum
from curriculum.types import image_hash
from tests.conftest import tiny_run_overrides
from train.config import CurriculumConfig, load_config
from train.loop import run


class ScriptedPolicy:
    """Answers right for the skills it knows, "0" otherwise; counts how often it is asked."""

    def __init__(self, knows=("colour", "shape")):
        self.knows, self.calls = set(knows), 0

    def answer(self, examples):
        self.calls += 1
        return [ex.answer if ex.skill in self.knows else "0" for ex in examples]

    def sample(self, examples, n):
        return [[a] * n for a in self.answer(examples)]


class BrokenAnalyzer:
    name = "broken"

    def analyze(self, failures, probe, exemplars=()):
        raise ConnectionError("analyzer unreachable")


def _curriculum(tmp_path, world, **overrides):
    options = {"enabled": True, "every": 10, "budget": 48, "max_failures": 32, "pool_cap": 500, **overrides}
    cfg = CurriculumConfig(**options)
    return Curriculum(
        cfg, tmp_path / "curriculum", world["train"], world["probe"], {"test": world["test"]}, 32, seed=0
    )


def test_a_sync_round_targets_the_failing_skills_and_records_everything(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small)
    policy = ScriptedPolicy()
    assert not cur.due(0) and not cur.due(5) and cur.due(10)
    result = cur.update(10, policy)
    assert result.status == "ok" and result.metrics["curriculum/kept"] > 0
    pool = cur.pool.examples
    assert len(pool) == result.metrics["curriculum/kept"] == result.metrics["curriculum/pool_size"]
    # Every kept example targets a failing skill, is one the policy gets wrong, and is verified.
    assert all(ex.skill not in policy.knows for ex in pool if ex.meta["generator"] != "replay")
    assert all(ex.meta["round"] == 1 and ex.meta["weakness"] and ex.meta["failures"] for ex in pool)
    assert all(
        ex.meta["verdicts"]["student"] == "ok" and ex.meta["verdicts"]["decontaminate"] == "ok" for ex in pool
    )
    test_images = {image_hash(ex.image) for ex in world_small["test"]}
    assert not any(image_hash(ex.image) in test_images for ex in pool)
    record = tmp_path / "curriculum" / "round_00001"
    summary = json.loads((record / "round.json").read_text())
    assert summary["status"] == "ok" and summary["step"] == 10
    assert {"probe_s", "analyse_s", "generate_s", "filter_s", "student_s", "commit_s"} <= set(
        summary["timings"]
    )
    candidates = [json.loads(x) for x in (record / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == result.metrics["curriculum/candidates"] <= 48
    assert all(c["kept"] or c["dropped_by"] in c["verdicts"] for c in candidates)
    assert (record / "contact_sheet.png").stat().st_size > 1000
    assert json.loads((record / "analysis.json").read_text())
    failures = (record / "failures.jsonl").read_text().splitlines()
    assert 0 < len(failures) <= 32
    # The next round marks repeated failures as not new and keeps the pool free of duplicates.
    second = cur.update(20, policy)
    assert second.metrics["curriculum/new_failures"] < second.metrics["curriculum/failures"]
    keys = [(image_hash(ex.image), ex.question) for ex in cur.pool.examples]
    assert len(keys) == len(set(keys))
    cur.close()


def test_a_world_of_some_skills_gets_rounds_of_those_skills_only(tmp_path):
    from curriculum.world import build_splits

    skills = ["count", "count_attr"]
    world = build_splits(seed=1, train_size=120, probe_size=40, test_size=20, image_size=32, skills=skills)
    cfg = CurriculumConfig(enabled=True, every=10, budget=48, max_failures=32)
    cur = Curriculum(cfg, tmp_path / "c", world["train"], world["probe"], {"test": world["test"]}, 32, seed=0,
                     skills=skills)  # fmt: skip
    result = cur.update(10, ScriptedPolicy(knows=()))
    candidates = [json.loads(x) for x in (tmp_path / "c" / "round_00001" / "candidates.jsonl").open()]
    assert result.metrics["curriculum/kept"] > 0
    assert {c["generator"] for c in candidates} >= {"world", "same_image"}  # each had something to make
    assert {c["skill"] for c in candidates} <= set(skills)
    cur.close()


def test_budget_and_failure_caps_bound_a_round(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small, budget=7, max_failures=5)
    result = cur.update(10, ScriptedPolicy(knows=()))
    assert result.metrics["curriculum/candidates"] <= 7 and result.metrics["curriculum/failures"] == 5
    cur.close()


def test_a_round_that_raises_is_recorded_and_the_next_one_runs(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small)
    good = cur.analyzer
    cur.analyzer = BrokenAnalyzer()
    failed = cur.update(10, ScriptedPolicy())
    assert failed.status == "failed" and "analyzer unreachable" in failed.error
    summary = json.loads((tmp_path / "curriculum" / "round_00001" / "round.json").read_text())
    assert summary["status"] == "failed" and "ConnectionError" in summary["error"]
    assert len(cur.pool) == 0
    cur.analyzer = good
    assert cur.update(20, ScriptedPolicy()).status == "ok" and len(cur.pool) > 0
    cur.close()


def test_async_round_injects_after_the_staleness_bound(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small, mode="async", max_staleness=3)
    policy = ScriptedPolicy()
    assert cur.update(10, policy) is None  # probe done, the worker analyses and generates
    assert cur.poll(11, policy) is None and cur.poll(12, policy) is None
    result = cur.poll(13, policy)
    assert result.status == "ok" and len(cur.pool) == result.metrics["curriculum/kept"] > 0
    summary = json.loads((tmp_path / "curriculum" / "round_00001" / "round.json").read_text())
    assert summary["mode"] == "async" and summary["inject_step"] == 13 and "wait_s" in summary["timings"]
    assert cur.poll(14, policy) is None
    cur.close()


def test_sync_and_async_make_the_same_round(tmp_path, world_small):
    a = _curriculum(tmp_path / "a", world_small)
    b = _curriculum(tmp_path / "b", world_small, mode="async", max_staleness=1)
    a.update(10, ScriptedPolicy())
    b.update(10, ScriptedPolicy())
    b.poll(11, ScriptedPolicy())
    assert [ex.id for ex in a.pool.examples] == [ex.id for ex in b.pool.examples]
    a.close()
    b.close()


# ----------------------------------------------------------------------------- in the training loop


CURRICULUM = [
    "curriculum.enabled=true",
    "curriculum.budget=24",
    "curriculum.mix.ratio=0.5",
    "eval.at_start=false",
]


def _cfg(tmp_path, model_path, name, *extra):
    return load_config(
        None,
        [
            f"run.name={name}",
            *tiny_run_overrides(tmp_path, model_path),
            *CURRICULUM,
            "curriculum.every=3",
            *extra,
        ],
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rounds_feed_the_training_stream(tmp_path, tiny_qwen, mode):
    summary = run(
        _cfg(
            tmp_path,
            tiny_qwen,
            mode,
            "train.steps=8",
            f"curriculum.mode={mode}",
            "curriculum.max_staleness=1",
        )
    )
    rounds = summary["curriculum"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["status"] == "ok" for r in rounds)
    assert summary["curriculum"]["pool_size"] > 0 and 0 < summary["curriculum"]["round_share"] < 1
    metrics = [json.loads(x) for x in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
    inject = 3 if mode == "sync" else 4
    assert any(m.get("curriculum/round") == 1 and m["step"] == inject for m in metrics)
    assert all(
        m["train/pool_fraction"] == 0 for m in metrics if "train/pool_fraction" in m and m["step"] <= inject
    )
    assert any(m.get("train/pool_fraction", 0) > 0 for m in metrics)


def test_a_run_on_some_skills_trains_tests_and_pools_only_those(tmp_path, tiny_qwen):
    summary = run(_cfg(tmp_path, tiny_qwen, "some", "train.steps=4", "data.world.skills=[count, count_attr]"))
    skills = {"count", "count_attr"}
    assert {k[len("skill/") :] for k in summary["end"] if k.startswith("skill/")} == skills
    assert summary["curriculum"]["pool_size"] > 0
    pooled = [json.loads(x) for f in (tmp_path / "some" / "curriculum" / "pool").glob("round_*.jsonl")
              for x in f.read_text().splitlines()]  # fmt: skip
    assert {r["skill"] for r in pooled if "skill" in r} <= skills


_CHILD = """
import sys
from train.config import load_config
from train.loop import run
run(load_config(None, sys.argv[1:]))
"""


def _pool_ids(run_dir: Path) -> list[str]:
    rows = []
    for f in sorted((run_dir / "curriculum" / "pool").glob("round_*.jsonl")):
        rows += [json.loads(x) for x in f.read_text().splitlines()]
    return [r["id"] for r in rows if "id" in r]


def test_kill_9_anywhere_then_resume_loses_and_doubles_nothing(tmp_path, tiny_qwen):
    """A run killed at random moments and resumed each time ends with the same pool as a run
    that was never interrupted: every accepted example once, none lost."""
    base = [
        *tiny_run_overrides(tmp_path, tiny_qwen),
        *CURRICULUM,
        "curriculum.every=2",
        "train.steps=12",
        "train.save_every=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", _CHILD, "run.name=clean", *base], check=True, env=env, capture_output=True
    )
    clean = _pool_ids(tmp_path / "clean")
    assert clean and len(clean) == len(set(clean))
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "run.name=killed", *base],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(6.0, 14.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ids = _pool_ids(tmp_path / "killed")
        assert len(ids) == len(set(ids))
    subprocess.run(
        [sys.executable, "-c", _CHILD, "run.name=killed", *base], check=True, env=env, capture_output=True
    )
    assert _pool_ids(tmp_path / "killed") == clean


def test_two_processes_share_one_pool(tmp_path, tiny_qwen):
    """Two CPU ranks (gloo): the probe is sharded, rank 0 writes, both ranks end every round
    with the same pool (the engine checks this after each commit and raises otherwise)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train",
        "run.name=dist", *tiny_run_overrides(tmp_path, tiny_qwen), *CURRICULUM,
        "curriculum.every=3", "train.steps=8", "train.batch_size=4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "dist" / "summary.json").read_text())
    assert [r["status"] for r in summary["curriculum"]["rounds"]] == ["ok", "ok"]
    assert summary["curriculum"]["pool_size"] > 0 and "2 process(es)" in proc.stderr + proc.stdout
