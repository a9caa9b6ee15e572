"""Throughput, curriculum round time and peak memory under each launch strategy and GPU count.

    python benchmarks/distributed_scaling.py --scale real --gpus 1,2,4 --stages zero2,zero3 \
        --out benchmarks/results/distributed_scaling_real.json

Every (stage, GPU count) is one ``accelerate launch`` of ``python -m train`` with the launch/
config of that stage and the curriculum on (sync rounds every ``--every`` steps). ``--scale real``
trains a random-initialised Qwen2.5-VL-3B-shaped model in bf16; ``--scale demo`` the demo's tiny
model. ``train.batch_size`` is per GPU, so the global batch grows with the GPU count (weak
scaling). Reported per run: samples/s in steady state (the median of the log windows after the
first), rank 0's peak GPU memory, each curriculum round's blocked time and its split into probe,
analysis, generation and student check, the wall time. Scaling efficiency is samples/s on n GPUs
over n times samples/s on one, for the same stage. GPU counts beyond what is visible are recorded
as skipped, not guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_real_model(path: Path, image_size: int) -> dict:
    import torch

    from models import build_vlm, count_parameters

    model, processor = build_vlm(
        "qwen2_5_vl", preset="qwen2_5_vl_3b", image_size=image_size, device="cuda", dtype=torch.bfloat16
    )
    params = count_parameters(model)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return {"arch": "qwen2_5_vl", "preset": "qwen2_5_vl_3b", "dtype": "bfloat16", "parameters": params}


def overrides(args: argparse.Namespace, work: Path, name: str, model_path: Path | None) -> list[str]:
    common = [
        f"run.name={name}",
        f"run.output_dir={work}",
        "train.cpu=false",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.log_every={args.log_every}",
        "train.save_every=0",
        "train.save_model=false",
        "train.mixed_precision=bf16",
        "eval.at_start=false",
        "curriculum.enabled=true",
        "curriculum.mode=sync",
        f"curriculum.every={args.every}",
        f"curriculum.budget={args.budget}",
    ]
    if args.scale == "demo":
        return ["--config", str(ROOT / "configs/demo.yaml"), *common, "data.world.test_size=128"]
    return [
        f"model.name_or_path={model_path}",
        "model.dtype=bfloat16",
        f"data.world.image_size={args.image_size}",
        "data.world.train_size=2000",
        "data.world.probe_size=64",
        "data.world.test_size=64",
        "train.lr=1e-4",
        "train.warmup_steps=10",
        "eval.batch_size=32",
        "eval.max_new_tokens=8",
        "curriculum.max_failures=32",
        *common,
    ]


def run_one(args: argparse.Namespace, work: Path, stage: str, gpus: int, model_path: Path | None) -> dict:
    name = f"{stage}-{gpus}gpu"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "launch/accelerate" / f"{stage}.yaml"), "--num_processes", str(gpus),
           "--main_process_port", str(29500 + gpus), "-m", "train",
           *overrides(args, work, name, model_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // gpus))}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if (work / name / "checkpoints").exists():  # a 3B model's ZeRO checkpoint is ~50 GB
        shutil.rmtree(work / name / "checkpoints")
    if proc.returncode:
        return {"error": (proc.stdout + proc.stderr)[-4000:], "wall_s": round(wall, 1)}
    rows = [json.loads(x) for x in (work / name / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/samples_per_s" in r][1:]  # the first window is warm-up
    rounds = []
    for path in sorted((work / name / "curriculum").glob("round_*/round.json")):
        summary = json.loads(path.read_text())
        rounds.append({"round": summary["round"], "step": summary["step"], "status": summary["status"],
                       "kept": summary.get("metrics", {}).get("curriculum/kept"),
                       **{k: round(v, 2) for k, v in summary.get("timings", {}).items()}})  # fmt: skip
    return {
        "samples_per_s": statistics.median(r["train/samples_per_s"] for r in train),
        "tokens_per_s": statistics.median(r["train/tokens_per_s"] for r in train),
        "peak_mem_gib_rank0": max(r.get("train/peak_mem_gib", 0.0) for r in train),
        "rounds": rounds,
        "round_blocked_s_mean": statistics.mean(r["blocked_s"] for r in rounds) if rounds else None,
        "loss_last_window": train[-1]["train/loss"],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=["real", "demo"], default="real")
    parser.add_argument("--gpus", default="1,2,4", help="GPU counts to run, comma-separated")
    parser.add_argument("--stages", default="zero2,zero3", help="launch/accelerate configs to run")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8, help="per GPU")
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--every", type=int, default=25, help="curriculum round every N steps")
    parser.add_argument("--budget", type=int, default=32, help="candidates per round")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    import transformers

    visible = torch.cuda.device_count()
    work = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    result: dict = {
        "benchmark": "distributed_scaling",
        "device": torch.cuda.get_device_name(0),
        "visible_gpus": visible,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": {},
    }
    model_path = None
    if args.scale == "real":
        model_path = work / "qwen2_5_vl_3b_random"
        result["model"] = build_real_model(model_path, args.image_size)
    for stage in args.stages.split(","):
        for gpus in (int(g) for g in args.gpus.split(",")):
            key = f"{stage}/{gpus}"
            if gpus > visible:
                result["runs"][key] = {"skipped": f"{gpus} GPUs asked, {visible} visible"}
                continue
            print(f"== {key}", flush=True)
            result["runs"][key] = run_one(args, work, stage, gpus, model_path)
            print(json.dumps(result["runs"][key]), flush=True)
        one = result["runs"].get(f"{stage}/1", {})
        for gpus in (int(g) for g in args.gpus.split(",")):
            run = result["runs"][f"{stage}/{gpus}"]
            if gpus > 1 and "samples_per_s" in run and "samples_per_s" in one:
                run["scaling_efficiency"] = run["samples_per_s"] / (gpus * one["samples_per_s"])
                if one.get("round_blocked_s_mean") and run.get("round_blocked_s_mean"):
                    run["round_time_over_1gpu"] = run["round_blocked_s_mean"] / one["round_blocked_s_mean"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
