"""The launch configs on a GPU: SFT and GRPO with the curriculum under each strategy of launch/,
a checkpoint in that strategy's own format, and a resume that continues the same run.

    python -m pytest -m gpu tests/test_gpu_launch.py      (on a machine with a GPU and deepspeed)

Marked ``gpu``: ``make test`` leaves these out, and they skip without CUDA.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_run_overrides

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")]


def launch(strategy: str, *overrides: str, processes: int = 1) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "launch" / "accelerate" / f"{strategy}.yaml"), "--num_processes", str(processes),
           "-m", "train", *overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def checked(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.parametrize("strategy", ["zero2", "zero3", "fsdp"])
@pytest.mark.parametrize("mode", ["sft", "grpo"])
def test_train_checkpoint_and_resume(tmp_path, tiny_qwen, strategy, mode):
    base = [*tiny_run_overrides(tmp_path, tiny_qwen), "train.cpu=false", "run.name=r", f"train.mode={mode}",
            "train.save_every=2", "train.save_model=true", "curriculum.enabled=true", "curriculum.every=2",
            "curriculum.budget=24", "eval.at_start=false", "grpo.group_size=4", "grpo.max_new_tokens=3",
            "curriculum.student_check=" + ("band" if mode == "grpo" else "fails")]  # fmt: skip
    out = checked(launch(strategy, *base, "train.steps=3"))
    assert "1 process(es) on cuda" in out
    run_dir = tmp_path / "r"
    first = json.loads((run_dir / "summary.json").read_text())
    assert first["steps"] == 3 and [r["status"] for r in first["curriculum"]["rounds"]] == ["ok"]
    if strategy != "fsdp":  # DeepSpeed's own checkpoint layout
        assert list((run_dir / "checkpoints").glob("step_*/pytorch_model/*")) or list(
            (run_dir / "checkpoints").glob("step_*/*/mp_rank_*")
        )
    out = checked(launch(strategy, *base, "train.steps=6", "train.resume=auto"))
    assert "resumed from" in out and "step_00000003" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6
    assert [h["step"] for h in summary["history"]][-2:] == [3, 6]  # the same run, continued
    rounds = summary["curriculum"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["status"] in ("ok", "restored") for r in rounds)
    # The final model was gathered from the shards into a checkpoint that loads on its own.
    from models import count_parameters, load_model

    model, _ = load_model(str(run_dir / "model"))
    reference, _ = load_model(str(tiny_qwen))
    assert count_parameters(model) == count_parameters(reference)


def test_zero3_offload_trains(tmp_path, tiny_qwen):
    base = [*tiny_run_overrides(tmp_path, tiny_qwen), "train.cpu=false", "run.name=o", "train.steps=3",
            "eval.at_start=false"]  # fmt: skip
    checked(launch("zero3_offload", *base))
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["end"]["n"] > 0
