"""``lessonloop compare``: every arm runs, the matched arms add as many examples as the curriculum,
each baseline's examples come from where it says, the report is written with its statistics, and
a rerun keeps the finished runs. It runs as a user runs it: from a folder of their own that holds
a ``models/`` package, with the config named by a path relative to it."""

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from curriculum.world import skill_names
from train.compare import kept_by_skill, kept_per_round

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["base", "targeted", "real", "untargeted", "replay", "rebalanced"]
CONFIG = {  # the user's config file; the rest comes as overrides
    "model": {"build_tiny": "qwen2_5_vl", "tiny_preset": "tiny"},
    "data": {"world": {"image_size": 32, "train_size": 240, "probe_size": 40, "test_size": 54}},
}
# The ``lessonloop`` command: the working folder is not on sys.path (``python -m`` would put it first).
LESSONLOOP = f"import sys; sys.path[0] = {str(ROOT)!r}; from train.cli import main; sys.exit(main())"


def overrides(out: Path) -> list[str]:
    return [
        f"run.output_dir={out}", "run.name=c", "train.cpu=true", "train.batch_size=8", "train.lr=3e-3",
        "train.log_every=2", "train.warmup_steps=0", "train.steps=6", "train.save_model=false",
        "eval.batch_size=27", "eval.max_new_tokens=3", "eval.every=2", "curriculum.every=2",
        "curriculum.budget=16", f"compare.arms=[{','.join(ARMS)}]", "compare.seeds=[0,1]",
        "compare.parallel=2",
    ]  # fmt: skip


def user_folder(out: Path) -> Path:
    """A folder of the user's, holding the config and a ``models`` package of their own."""
    work = out / "work"
    (work / "models").mkdir(parents=True, exist_ok=True)
    (work / "models" / "__init__.py").write_text(
        "raise ImportError('the user models package was imported')\n"
    )
    (work / "compare.yaml").write_text(yaml.safe_dump(CONFIG))
    return work


def compare(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", LESSONLOOP, "compare", "--config", "compare.yaml", *overrides(out), *extra]
    return subprocess.run(cmd, cwd=user_folder(out), capture_output=True, text=True, timeout=600)


def pool_rows(run_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((run_dir / "curriculum" / "pool").glob("round_*.jsonl"))
        for line in path.read_text().splitlines()[1:]  # the first line is the round's header
    ]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    proc = compare(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "c", proc.stdout


@pytest.mark.slow
def test_every_arm_and_seed_finishes_with_a_report(compared):
    root, stdout = compared
    result = json.loads((root / "compare.json").read_text())
    assert sorted(result["runs"]) == sorted(f"{a}-s{s}" for a in ARMS for s in (0, 1))
    assert set(result["arms"]) == set(ARMS)
    assert result["under_served_skills"] == ["arithmetic", "bar_compare", "bar_value", "compare", "spatial"]
    for a in result["arms"].values():
        assert a["accuracy"]["n"] == 2 and set(a["skills"]) == set(skill_names())
    assert set(result["paired"]) == {"base", "real", "untargeted", "replay", "rebalanced"}
    report = (root / "report.md").read_text()
    for arm in ARMS:
        assert f"| {arm} | 2 |" in report
    assert "targeted − real: overall" in report
    assert (root / "compare_config.yaml").is_file()  # the config file was found by its relative path


@pytest.mark.slow
def test_each_run_s_accuracy_comes_with_its_standard_error(compared):
    root, _ = compared
    result = json.loads((root / "compare.json").read_text())
    for name, run in result["runs"].items():
        p = run["accuracy"]
        assert run["test_items"] == 54, name
        assert run["accuracy_se"] == pytest.approx(math.sqrt(p * (1 - p) / 54))
        weak = [run["skills"][s] for s in result["under_served_skills"]]  # 6 test items each
        assert run["under_served_se"] == pytest.approx(
            math.sqrt(sum(q * (1 - q) / 6 for q in weak)) / len(weak)
        )
    report = (root / "report.md").read_text()
    r = result["runs"]["real-s1"]
    assert f"| real-s1 | 54 | {r['accuracy']:.3f} ± {r['accuracy_se']:.3f} |" in report


@pytest.mark.slow
def test_paired_differences_come_with_a_t_interval(compared):
    root, stdout = compared
    result = json.loads((root / "compare.json").read_text())
    runs = result["runs"]
    for arm, p in result["paired"].items():
        diffs = [runs[f"targeted-s{s}"]["accuracy"] - runs[f"{arm}-s{s}"]["accuracy"] for s in (0, 1)]
        a = p["accuracy"]
        assert a["diffs"] == pytest.approx(diffs) and (a["n"], a["df"]) == (2, 1)
        # Two seeds: one degree of freedom, t(0.975, 1) = 12.706.
        half = 12.7062 * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
        assert a["high"] - a["mean"] == pytest.approx(half, rel=1e-4, abs=1e-9)
        assert p["under_served"]["n"] == 2
    assert "Student's t" in result["interval"]
    report = (root / "report.md").read_text()
    assert "95% confidence interval from Student's t distribution with n - 1 degrees of freedom" in report
    real = result["paired"]["real"]["accuracy"]
    assert f"| real | {real['mean']:+.3f} [{real['low']:+.3f}, {real['high']:+.3f}] |" in report
    assert "targeted − real: overall" in stdout  # the printed summary is the report
    for name in ("accuracy_vs_steps.png", "accuracy_vs_added.png"):
        assert (root / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Curves: an evaluation every 2 steps, and the added count only grows.
    curve = result["runs"]["targeted-s0"]["curve"]
    assert [p["step"] for p in curve] == [0, 2, 4, 6]
    assert [p["added"] for p in curve] == sorted(p["added"] for p in curve) and curve[-1]["added"] > 0
    assert all(p["added"] == 0 for p in result["runs"]["base-s0"]["curve"])


@pytest.mark.slow
def test_matched_arms_add_what_the_curriculum_added(compared):
    root, _ = compared
    for seed in (0, 1):
        target = kept_per_round(root / f"targeted-s{seed}")
        assert len(target) == 2 and sum(target) > 0
        # New real data passes no student check, so it always reaches the quota.
        assert kept_per_round(root / f"real-s{seed}") == target
        for arm in ("untargeted", "replay"):
            kept = kept_per_round(root / f"{arm}-s{seed}")
            assert all(k <= t for k, t in zip(kept, target, strict=True)), (arm, kept, target)
        # Rebalanced real data passes no student check either: the targeted mix, skill by skill.
        mix = kept_by_skill(root / f"targeted-s{seed}")
        assert sum(mix[0].values()) == target[0] and len(mix) == 2
        assert kept_by_skill(root / f"rebalanced-s{seed}") == mix


@pytest.mark.slow
def test_the_report_says_what_each_arm_added_per_skill(compared):
    root, _ = compared
    result = json.loads((root / "compare.json").read_text())
    for name, run in result["runs"].items():
        by_round = kept_by_skill(root / name)
        assert run["added_by_skill"] == dict(sum((Counter(r) for r in by_round), Counter()))
    rebalanced, targeted = result["arms"]["rebalanced"], result["arms"]["targeted"]
    assert rebalanced["added_by_skill"] == targeted["added_by_skill"] and targeted["added_by_skill"]
    assert result["arms"]["base"]["added_by_skill"] == {}
    report = (root / "report.md").read_text()
    section = report.split("What each arm added, per skill")[1].split("\n\n")[1]
    assert "| targeted |" in section and "| base |" not in section


@pytest.mark.slow
def test_each_baseline_draws_from_its_own_source(compared):
    root, _ = compared
    real = pool_rows(root / "real-s0")
    assert real and all(r["source"] == "real" and r["meta"]["generator"] == "real" for r in real)
    untargeted = pool_rows(root / "untargeted-s0")
    assert untargeted and {r["meta"]["weakness"] for r in untargeted} <= {
        f"uniform/{s}" for s in skill_names()
    }
    assert all(r["meta"]["generator"] == "world" for r in untargeted)
    rebalanced = pool_rows(root / "rebalanced-s0")
    assert rebalanced and all(
        r["source"] == "real" and r["meta"]["generator"] == "skill_real" for r in rebalanced
    )
    assert all(r["meta"]["weakness"] == f"rebalanced/{r['skill']}" and r["weight"] == 1.0 for r in rebalanced)
    replay = pool_rows(root / "replay-s0")
    assert replay and all(r["meta"]["replay_of"].startswith("real-train-") for r in replay)
    assert all(r["meta"]["verdicts"]["student"] == "ok" for r in replay)  # the model got them wrong
    targeted = {json.loads((d / "round.json").read_text())["weaknesses"][0] for d in
                (root / "targeted-s0" / "curriculum").glob("round_*")}  # fmt: skip
    assert not any(w.startswith("uniform/") for w in targeted)
    # Quota: what a matched round did not keep is recorded as dropped by it.
    rows = (root / "untargeted-s0" / "curriculum" / "round_00001" / "candidates.jsonl").read_text()
    assert '"dropped_by": "quota"' in rows


@pytest.mark.slow
def test_a_rerun_keeps_finished_runs(compared):
    root, _ = compared
    before = (root / "compare.json").read_text()
    proc = compare(root.parent)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert proc.stdout.count("already finished, kept") == 12 and " started " not in proc.stdout
    assert json.loads((root / "compare.json").read_text())["runs"] == json.loads(before)["runs"]


def test_matched_arms_need_the_targeted_arm(tmp_path, capsys):
    from train.cli import main

    assert main(["compare", *overrides(tmp_path), "compare.arms=[base,real]"]) == 2
    assert "add targeted" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_compare_config_typos_are_refused(tmp_path, capsys):
    from train.cli import main

    assert main(["compare", *overrides(tmp_path), "compare.seed=[0]"]) == 2
    assert "did you mean 'compare.seeds'" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_with_wandb_offline_puts_every_run_and_the_report_in_one_group(tmp_path, monkeypatch):
    from tests.test_tracking import _isolate_wandb, _offline_run, _run_records

    _isolate_wandb(monkeypatch, tmp_path / "wandb_home")
    proc = compare(tmp_path, "compare.arms=[base,targeted]", "compare.seeds=[0]", "wandb.enabled=true",
                   "wandb.mode=offline")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    root = tmp_path / "c"
    for name, job_type in (("base-s0", ""), ("targeted-s0", ""), ("", "report")):
        run = next(r.run for r in _run_records(_offline_run(root / name)) if r.HasField("run"))
        assert run.run_group == "c" and run.job_type == job_type
        assert run.display_name == (name or "c-report")
    tables = list(_offline_run(root).glob("files/media/table/report_*.table.json"))
    rows = json.loads(tables[0].read_text())["data"]
    assert [r[0] for r in rows] == ["base", "targeted"]


def test_runs_share_gpus_round_robin_and_matched_arms_follow_their_own_seed(tmp_path, monkeypatch):
    """Scheduling alone, with a stand-in for training: 3 slots over 2 GPUs, and a seed's matched
    runs start once that seed's targeted run is done, not after every first-wave run."""
    from train.compare import Compare, Job
    from train.config import load_config

    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=c", "train.cpu=false",
                             "train.steps=5", "compare.parallel=3"])  # fmt: skip
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice, kept
    cmp = Compare(cfg, None, [])
    started: list[str] = []
    slow = {"base-s0": 1.5}  # base-s0 outlives targeted-s0: s0's matched runs must not wait for it

    def command(job: Job) -> list[str]:
        started.append(job.name)
        d = cmp.root / job.name
        code = (
            "import json, os, pathlib, time; "
            f"time.sleep({slow.get(job.name, 0.1)}); d = pathlib.Path({str(d)!r}); "
            "d.mkdir(parents=True, exist_ok=True); "
            "(d / 'gpu').write_text(os.environ['CUDA_VISIBLE_DEVICES']); "
            "(d / 'threads').write_text(os.environ['OMP_NUM_THREADS']); "
            "(d / 'summary.json').write_text(json.dumps({'steps': 5}))"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(cmp, "command", command)
    first = [cmp.job("base", 0), cmp.job("targeted", 0)]
    codes = cmp.run_jobs(first, then=lambda j: [cmp.job("real", 0, [3])] if j.arm == "targeted" else [])
    assert codes == {"base-s0": 0, "targeted-s0": 0, "real-s0": 0}
    assert started == ["base-s0", "targeted-s0", "real-s0"]
    ended = {n: (cmp.root / n / "summary.json").stat().st_mtime for n in started}
    assert ended["real-s0"] < ended["base-s0"]
    # real-s0 takes targeted-s0's freed slot, so each GPU holds one of the two runs left
    assert [(cmp.root / n / "gpu").read_text() for n in started] == ["4", "7", "7"]
    assert {(cmp.root / n / "threads").read_text() for n in started} == {"3"}


def test_under_served_skills_are_those_of_the_run_s_world():
    from collections import Counter

    from train.compare import under_served
    from train.config import load_config

    # Natural shares 20 %, 6 % and 3 %: below the even share of these three, spatial and arithmetic.
    cfg = load_config(None, ["data.world.skills=[count, spatial, arithmetic]"])
    assert under_served(cfg) == ["arithmetic", "spatial"]
    assert under_served(load_config(None, ["compare.under_served=[count]"])) == ["count"]
    # External data: the skill column's counts in the train split.
    hf = load_config(None, ["data.source=hf", "data.hf.path=json"])
    assert under_served(hf, Counter({"colour": 50, "count": 40, "spatial": 6, "ocr": 4})) == [
        "ocr",
        "spatial",
    ]
    assert under_served(hf, Counter({"colour": 50})) == [] and under_served(hf) == []
