"""The SFT loop end to end on a tiny model: it learns, it resumes exactly, it logs."""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.conftest import tiny_run_overrides
from train.config import load_config
from train.loop import run


def _cfg(tmp_path, model_path, name, *extra):
    return load_config(
        None, [f"run.name={name}", *tiny_run_overrides(tmp_path, model_path), "train.warmup_steps=2", *extra]
    )


def _losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def test_steps_lower_the_loss_and_write_records(tmp_path, tiny_qwen):
    summary = run(_cfg(tmp_path, tiny_qwen, "learn", "train.steps=40", "train.save_model=true"))
    losses = _losses(tmp_path / "learn")
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(36, 41)) / 5
    assert last < 0.6 * first, (first, last)
    assert summary["start"]["accuracy"] < summary["end"]["accuracy"]
    assert {"start", "end", "history"} <= set(summary)
    run_dir = tmp_path / "learn"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "summary.json").is_file()
    assert len((run_dir / "eval_predictions.jsonl").read_text().splitlines()) == 54
    assert (run_dir / "model" / "config.json").is_file()
    card = (run_dir / "model" / "README.md").read_text()  # the model card, as the hub renders it
    assert (
        card.startswith("---\n") and "sft" in card.lower() and "| overall |" in card.lower().replace("**", "")
    )
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_00000040"]


def test_resume_continues_exactly(tmp_path, tiny_qwen):
    run(
        _cfg(
            tmp_path,
            tiny_qwen,
            "full",
            "train.steps=12",
            "train.save_every=6",
            "eval.at_start=false",
            "train.grad_accum=2",
        )
    )
    full = _losses(tmp_path / "full")
    ckpt = tmp_path / "full" / "checkpoints" / "step_00000006"
    assert ckpt.is_dir()
    run(_cfg(tmp_path, tiny_qwen, "resumed", "train.steps=12", f"train.resume={ckpt}", "train.grad_accum=2"))
    resumed = _losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(7, 13))
    for step in range(7, 13):
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-7), step


def test_auto_resume_after_a_finished_run_trains_no_more(tmp_path, tiny_qwen):
    run(_cfg(tmp_path, tiny_qwen, "again", "train.steps=4", "eval.at_start=false"))
    summary = run(_cfg(tmp_path, tiny_qwen, "again", "train.steps=4", "eval.at_start=false"))
    assert summary["steps"] == 4
    lines = (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()
    assert sum("train/loss" in line for line in lines) == 4  # no step was trained twice
    assert [h["step"] for h in summary["history"]] == [4]  # the repeated final evaluation replaced the first


def test_wandb_offline_run(tmp_path, tiny_qwen, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run(
        _cfg(
            tmp_path,
            tiny_qwen,
            "wb",
            "train.steps=3",
            "wandb.enabled=true",
            "wandb.mode=offline",
            "eval.at_start=false",
        )
    )
    run_dir = tmp_path / "wb"
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert (run_dir / "wandb_id").read_text().strip() in offline[0].name


def test_cli_refuses_a_typo_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train", "train.stpes=3"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'train.stpes' (did you mean 'train.steps'?)"


def test_sampled_metrics_count_pass_rates_and_any_right():
    from curriculum.types import Example
    from train.evaluate import sampled_metrics

    items = [Example(id=f"e{i}", image=None, question="q", answer=a, skill=s) for i, (a, s) in
             enumerate([("3", "count"), ("red", "colour"), ("4", "count")])]  # fmt: skip
    flat = ["3", "2", "3", "3",  "blue", "blue", "blue", "blue",  "4", "four", "5", "4.0"]  # fmt: skip
    m = sampled_metrics(items, flat, 4)
    assert m["sampled"] == pytest.approx((0.75 + 0.0 + 0.75) / 3)  # "four" and "4.0" are right
    assert m["pass_at_k"] == pytest.approx(2 / 3)
    assert m["sampled/skill/count"] == pytest.approx(0.75) and m["sampled/skill/colour"] == 0.0


def test_sampled_evaluation_reports_and_leaves_training_alone(tmp_path, tiny_qwen):
    """Sampling at evaluation draws from its own seed: the run's losses are the same with it on."""
    extra = ("train.steps=6", "eval.every=3")
    plain = run(_cfg(tmp_path, tiny_qwen, "plain", *extra))
    sampled = run(_cfg(tmp_path, tiny_qwen, "sampled", *extra, "eval.samples=4"))
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "sampled")
    assert plain["end"]["accuracy"] == sampled["end"]["accuracy"] and "sampled" not in plain["end"]
    for point in sampled["history"]:
        assert 0.0 <= point["sampled"] <= point["pass_at_k"] <= 1.0
        assert {k for k in point if k.startswith("sampled/skill/")} == {
            "sampled/" + k for k in point if k.startswith("skill/")
        }
    again = run(_cfg(tmp_path, tiny_qwen, "again", *extra, "eval.samples=4"))
    assert again["history"] == sampled["history"]  # the same seed draws the same samples


def test_start_up_refusals_are_one_line_and_come_before_anything_is_written(
    tmp_path, tiny_qwen, monkeypatch, capsys
):
    from train.cli import train_main

    def refusal(*overrides: str) -> str:
        capsys.readouterr()
        code = train_main([f"run.output_dir={tmp_path}", "run.name=r", "train.cpu=true", *overrides])
        assert code == 2 and not (tmp_path / "r").exists()  # no config.yaml, no run folder
        return capsys.readouterr().err.strip()

    missing = tmp_path / "no-such-model"
    assert refusal(f"model.name_or_path={missing}") == (
        f"error: model.name_or_path: no checkpoint directory at {missing}"
    )
    monkeypatch.delenv("LL_UNSET_KEY", raising=False)
    keyless = refusal(f"model.name_or_path={tiny_qwen}", "curriculum.enabled=true", "curriculum.analyzer=openai",
                      "curriculum.frontier.api_key_env=LL_UNSET_KEY", "curriculum.frontier.cache=null")  # fmt: skip
    assert keyless.startswith(
        "error: curriculum.frontier (model 'gpt-4o'): environment variable LL_UNSET_KEY"
    )
    assert "\n" not in keyless


def test_window_means_count_only_the_steps_that_reported_a_metric():
    from train.loop import window_metrics

    window = {"loss": 3.0, "grad_norm": 2.0, "samples": 16.0}
    out = window_metrics(window, {"loss": 2, "grad_norm": 1, "samples": 2}, seconds=2.0, world=1)
    assert out["train/loss"] == 1.5 and out["train/grad_norm"] == 2.0 and out["train/samples_per_s"] == 8.0


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_the_learning_rate_warms_up_then_follows_its_schedule_to_the_floor(schedule):
    import torch

    from train.config import TrainConfig
    from train.loop import lr_scheduler

    tc = TrainConfig(steps=20, warmup_steps=4, lr=1.0, min_lr_ratio=0.1, schedule=schedule)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=tc.lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # built without transformers' warning on every run
        scheduler = lr_scheduler(optimizer, tc)
    lrs = []
    for _ in range(tc.steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(0.55) and lrs[4] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:4], lrs[1:5], strict=True))  # warm-up rises
    if schedule == "constant":
        assert lrs[4:] == [pytest.approx(1.0)] * 16
    else:
        assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False)) and lrs[-1] > 0.1
        middle = 0.55 if schedule == "linear" else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
        assert lrs[12] == pytest.approx(middle)
