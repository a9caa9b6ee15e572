"""``lessonloop compare`` without training: what it reads back from run folders, the statistics of
its report, the arms' overrides, the checks it makes before anything trains, and how it starts
the arms' processes."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from train.compare import Compare, kept_by_skill, train_command
from train.compare_report import write_report
from train.compare_results import collect
from train.config import load_config

SKILLS = {"count": 6, "spatial": 4}  # test items per skill of the fabricated runs


def fake_run(root: Path, name: str, skills: dict[str, float], rounds: list[dict] = ()) -> None:
    """A finished run of 4 steps: its summary, its final predictions and its round records."""
    d = root / name
    d.mkdir(parents=True)
    right = {s: round(acc * SKILLS[s]) for s, acc in skills.items()}
    overall = sum(right.values()) / sum(SKILLS.values())
    end = {"accuracy": overall, **{f"skill/{s}": right[s] / SKILLS[s] for s in SKILLS}}
    history = [{"step": 0, "accuracy": 0.1}, {"step": 4, "accuracy": overall}]
    (d / "summary.json").write_text(json.dumps({"steps": 4, "end": end, "history": history}))
    rows = [{"id": f"{s}{i}", "skill": s, "correct": i < right[s]} for s in SKILLS for i in range(SKILLS[s])]
    (d / "eval_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k, r in enumerate(rounds, 1):
        folder = d / "curriculum" / f"round_{k:05d}"
        folder.mkdir(parents=True)
        kept = sum(c["kept"] for c in r.get("candidates", []))
        record = {"round": k, "step": 2 * k, "status": r["status"], "metrics": {"curriculum/kept": kept}}
        (folder / "round.json").write_text(json.dumps(record))
        (folder / "analysis.json").write_text(json.dumps(r.get("weaknesses", [])))
        (folder / "candidates.jsonl").write_text(
            "".join(json.dumps(c) + "\n" for c in r.get("candidates", []))
        )


def test_kept_per_skill_reads_the_round_records(tmp_path):
    candidates = [
        {"skill": "count", "weakness": "w1", "kept": True},
        {"skill": "count", "weakness": "w1", "kept": True},
        {"skill": "count", "weakness": "w1", "kept": False},
        {"skill": None, "weakness": "w2", "kept": True},  # no skill of its own: its weakness's
        {"skill": None, "weakness": "w3", "kept": True},  # neither: any skill (not counted)
    ]
    weaknesses = [
        {"id": "w1", "skill": "count"},
        {"id": "w2", "skill": "spatial"},
        {"id": "w3", "skill": None},
    ]
    fake_run(tmp_path, "targeted-s0", {"count": 0.5, "spatial": 0.5}, [
        {"status": "ok", "candidates": candidates, "weaknesses": weaknesses},
        {"status": "failed"},
        {"status": "ok", "candidates": [{"skill": "spatial", "weakness": "w", "kept": True}]},
    ])  # fmt: skip
    assert kept_by_skill(tmp_path / "targeted-s0") == [{"count": 2, "spatial": 1}, {}, {"spatial": 1}]
    assert kept_by_skill(tmp_path / "nothing") == []


def test_the_report_gives_each_run_s_noise_and_each_pair_s_interval(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=c", "train.steps=4",
                             "compare.arms=[base,targeted]", "compare.seeds=[0,1,2]"])  # fmt: skip
    accuracy = {  # per seed: (count, spatial)
        "targeted": [(4 / 6, 2 / 4), (5 / 6, 3 / 4), (3 / 6, 2 / 4)],
        "base": [(3 / 6, 1 / 4), (4 / 6, 1 / 4), (4 / 6, 1 / 4)],
    }
    for arm, per_seed in accuracy.items():
        for seed, (c, s) in enumerate(per_seed):
            fake_run(cfg.run_dir, f"{arm}-s{seed}", {"count": c, "spatial": s})
    result = collect(cfg.run_dir, cfg, ["spatial"])
    t = result["runs"]["targeted-s1"]
    assert t["accuracy"] == 0.8 and t["test_items"] == 10
    assert t["accuracy_se"] == pytest.approx(math.sqrt(0.8 * 0.2 / 10))
    assert t["under_served"] == 0.75 and t["under_served_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    # Overall 0.6, 0.8, 0.5 against 0.4, 0.5, 0.5: differences 0.2, 0.3, 0.0 (mean 0.1667, sd 0.1528);
    # 95 % interval with t(0.975, 2) = 4.3027: 0.1667 ± 0.3795.
    paired = result["paired"]["base"]
    assert paired["accuracy"]["diffs"] == pytest.approx([0.2, 0.3, 0.0])
    assert paired["accuracy"]["low"] == pytest.approx(-0.21283, abs=1e-4)
    assert paired["accuracy"]["high"] == pytest.approx(0.54617, abs=1e-4)
    assert paired["accuracy"]["higher"] == 2 and paired["seeds"] == [0, 1, 2]
    assert paired["under_served"]["diffs"] == pytest.approx([0.25, 0.5, 0.25])
    write_report(cfg.run_dir, cfg, result)
    report = (cfg.run_dir / "report.md").read_text()
    assert "| base | +0.167 [-0.213, +0.546] | +0.200, +0.300, +0.000 | 2 of 3 |" in report
    assert "- targeted − base: overall +0.167 [-0.213, +0.546]" in report
    assert "| targeted-s1 | 10 | 0.800 ± 0.126 | 0.750 ± 0.217 | 0 |" in report
    assert json.loads((cfg.run_dir / "compare.json").read_text())["paired"]["base"]["accuracy"]["df"] == 2


def test_one_seed_gives_differences_without_an_interval(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=c", "train.steps=4",
                             "compare.arms=[base,targeted]", "compare.seeds=[0]"])  # fmt: skip
    fake_run(cfg.run_dir, "targeted-s0", {"count": 0.5, "spatial": 0.5})
    fake_run(cfg.run_dir, "base-s0", {"count": 0.5, "spatial": 0.25})
    result = collect(cfg.run_dir, cfg, [])
    assert (
        result["paired"]["base"]["accuracy"]["low"] is None
        and result["paired"]["base"]["under_served"] is None
    )
    write_report(cfg.run_dir, cfg, result)
    assert (
        "| base | +0.100 [no interval: one seed] | +0.100 | 1 of 1 |"
        in (cfg.run_dir / "report.md").read_text()
    )


def test_a_rebalanced_arm_gets_the_targeted_mix_and_quota(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "curriculum.budget=10", "compare.oversample=2"])
    odd = {"count": 2, "a b: {c}": 1}  # any text is a skill name in external data
    job = Compare(cfg, None, []).job("rebalanced", 1, [4, 2], [odd, {}])
    arm = load_config(None, job.overrides)
    assert (arm.curriculum.source, arm.curriculum.quota, arm.curriculum.budget) == ("rebalanced", [4, 2], 20)
    assert arm.curriculum.skill_quota == [odd, {}] and arm.run.name == "rebalanced-s1"
    # A targeted run that kept nothing: every matched arm keeps nothing (an empty quota is no limit).
    assert load_config(None, Compare(cfg, None, []).job("real", 0, [], []).overrides).curriculum.quota == [0]


def _hf_dataset(root: Path, skill: bool = True) -> list[str]:
    from tests.test_data import _skewed_dataset

    _skewed_dataset(root, n=40)
    return [
        f"run.output_dir={root / 'out'}", "run.name=c", "data.source=hf", "data.hf.path=json",
        f"data.hf.data_files={{train: {root}/train.jsonl, test: {root}/test.jsonl}}",
        "data.hf.image_column=img", "data.hf.question_column=q", "data.hf.answer_column=a",
        "data.hf.eval_holdout=4", *(["data.hf.skill_column=kind"] if skill else []),
        "train.steps=5", "curriculum.every=2", "curriculum.budget=4",
    ]  # fmt: skip


def test_a_reserve_smaller_than_the_arm_may_need_is_refused_before_training(tmp_path, capsys):
    from train.compare import main

    code = main([*_hf_dataset(tmp_path), "data.hf.reserve=7", "compare.arms=[targeted,real]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not (tmp_path / "out").exists()
    assert err == (
        "error: data.hf.reserve=7 is smaller than the 8 fresh real items arm real may need "
        "(curriculum.budget 4 x 2 rounds); raise it, or leave it 0 for compare to set"
    )


def test_an_arm_that_cannot_run_on_external_data_is_refused_before_training(tmp_path, capsys):
    from train.compare import main

    code = main([*_hf_dataset(tmp_path, skill=False), "compare.arms=[base,targeted,untargeted]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and not (tmp_path / "out").exists()
    assert err.startswith("error: compare.arms: arm untargeted cannot run: ")


def test_under_served_skills_of_external_data_come_from_its_skill_column(tmp_path):
    args = [*_hf_dataset(tmp_path), "compare.arms=[base,targeted]"]
    cmp = Compare(load_config(None, args), None, args)
    assert cmp.check() is None and cmp.weak == ["rare"]  # a quarter of the rows, below half


def test_a_run_s_threads_are_the_user_s_when_set(monkeypatch):
    cmp = Compare(load_config(None, []), None, [])
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert cmp.environment(2, None)["OMP_NUM_THREADS"] == "5"
    monkeypatch.delenv("OMP_NUM_THREADS")
    env = cmp.environment(2, "1")
    assert (env["OMP_NUM_THREADS"], env["CUDA_VISIBLE_DEVICES"]) == ("2", "1")


@pytest.mark.slow
def test_arms_start_outside_the_working_folder_s_packages_with_its_relative_paths(tmp_path):
    """A folder holding its own ``models`` package, and a config named relative to it: the arm's
    process imports the project's packages, and reads the config (it refuses its value)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('the user models package')\n")
    (tmp_path / "arm.yaml").write_text("train:\n  steps: 0\n")
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(train_command(["--config", "arm.yaml"]), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == "error: train.steps must be positive"
