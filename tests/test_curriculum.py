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
    record = json.loads((tmp_path / mode / "curriculum" / "round_00001" / "round.json").read_text())
    assert ("snapshot_s" in record["timings"]) == (mode == "async")  # async: probed on a copy, in the worker


def test_a_run_on_some_skills_trains_tests_and_pools_only_those(tmp_path, tiny_qwen):
    summary = run(_cfg(tmp_path, tiny_qwen, "some", "train.steps=4", "data.world.skills=[count, count_attr]"))
    skills = {"count", "count_attr"}
    assert {k[len("skill/") :] for k in summary["end"] if k.startswith("skill/")} == skills
    assert summary["curriculum"]["pool_size"] > 0
    pooled = [json.loads(x) for f in (tmp_path / "some" / "curriculum" / "pool").glob("round_*.jsonl")
              for x in f.read_text().splitlines()]  # fmt: skip
    assert {r["skill"] for r in pooled if "skill" in r} <= skills


# A training run that SIGKILLs itself at one boundary of a round, given as its first argument:
# ``commit:K`` right after round K's pool commit, ``record:K`` right after round K's record is
# written, ``checkpoint:S`` right before the checkpoint of step S; ``none``: no kill.
_CHILD = """
import os, signal, sys

import curriculum.pool, curriculum.records, train.loop
from train.config import load_config

point, _, at = sys.argv[1].partition(":")


def after(fn, hit):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if hit(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped


if point == "commit":
    curriculum.pool.Pool.commit_round = after(curriculum.pool.Pool.commit_round, lambda pool, k, *a: k == int(at))
elif point == "record":
    real = curriculum.records.write_round
    for module in [m for name, m in sys.modules.items() if name.startswith("curriculum")]:
        if getattr(module, "write_round", None) is real:
            module.write_round = after(real, lambda root, k, *a: k == int(at))
elif point == "checkpoint":
    real_save = train.loop.save_checkpoint

    def save_checkpoint(accelerator, run_dir, step, *args):
        if step == int(at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(accelerator, run_dir, step, *args)

    train.loop.save_checkpoint = save_checkpoint
train.loop.run(load_config(None, sys.argv[2:]))
"""


def _pool_ids(run_dir: Path) -> list[str]:
    rows = []
    for f in sorted((run_dir / "curriculum" / "pool").glob("round_*.jsonl")):
        rows += [json.loads(x) for x in f.read_text().splitlines()]
    return [r["id"] for r in rows if "id" in r]


def _run_view(run_dir: Path) -> dict:
    """What an interrupted run must share with an uninterrupted one: the pool, every round's
    record (wall times aside), the last value logged at each step (a resumed run logs the steps
    after its checkpoint again; wall times aside), the rounds' history and the final accuracy."""

    def timing(key: str) -> bool:
        return key == "time" or key.endswith(("_s", "seconds")) or key == "train/data_fraction"

    logged: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        logged.setdefault(row["step"], {}).update({k: v for k, v in row.items() if not timing(k)})
    records = {}
    for folder in sorted(p for p in (run_dir / "curriculum").glob("round_*") if p.is_dir()):
        summary = json.loads((folder / "round.json").read_text())
        summary.pop("timings")
        summary["metrics"].pop("curriculum/blocked_s", None)
        files = {f: (folder / f).read_text() for f in ("failures.jsonl", "analysis.json", "candidates.jsonl")}
        records[folder.name] = {
            **files,
            "round.json": summary,
            "sheet": (folder / "contact_sheet.png").is_file(),
        }
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"pool": _pool_ids(run_dir), "records": records, "logged": logged,
            "rounds": summary["curriculum"]["rounds"], "end": summary["end"]}  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "kills"),
    [
        # Rounds at steps 3, 6, 9; checkpoints at 2, 4, 6, 8, 10. Each kill resumes from the
        # checkpoint before the round: the run reaches the round again with it committed.
        ("sync", ["commit:1", "record:2", "checkpoint:6", "commit:3", "random"]),
        # Async: probes at 3, 6, 9, injections (and commits) a step later. record:2 resumes from
        # the checkpoint of step 6, taken with round 2 in flight; commit:2 then finds it on disk.
        ("async", ["commit:1", "record:2", "commit:2", "checkpoint:10"]),
    ],
)
@pytest.mark.slow
def test_kill_9_at_round_boundaries_then_resume_as_if_never_killed(tmp_path, tiny_qwen, mode, kills):
    """A run killed at each boundary of a round (right after its pool commit, right after its
    record, right before the checkpoint that follows; sync: also once at a random moment) and
    resumed each time ends exactly as an uninterrupted run: the same pool, the same round
    records, the same losses and metrics at every step."""
    base = [*tiny_run_overrides(tmp_path, tiny_qwen), *CURRICULUM, f"curriculum.mode={mode}",
            "curriculum.max_staleness=1", "curriculum.every=3", "train.steps=11", "train.save_every=2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    log = tmp_path / "child.log"

    def child(point: str, name: str) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen([sys.executable, "-c", _CHILD, point, f"run.name={name}", *base], env=env,
                                    stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip

    assert child("none", "clean").wait() == 0, log.read_text()[-3000:]
    for point in kills:
        proc = child("none" if point == "random" else point, "killed")
        if point == "random":  # an arbitrary moment: in start-up, a step, a round, or after the end
            time.sleep(random.Random(0).uniform(4.0, 9.0))
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL or point == "random", (point, log.read_text()[-3000:])
        ids = _pool_ids(tmp_path / "killed")
        assert len(ids) == len(set(ids))
    assert child("none", "killed").wait() == 0, log.read_text()[-3000:]
    expected, got = _run_view(tmp_path / "clean"), _run_view(tmp_path / "killed")
    assert [r["status"] for r in expected["rounds"]] == ["ok", "ok", "ok"] and expected["pool"]
    assert got["pool"] == expected["pool"]
    assert got["records"] == expected["records"]
    assert got["rounds"] == expected["rounds"] and got["end"] == expected["end"]
    assert got["logged"] == expected["logged"]


@pytest.mark.slow
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
