"""How fast one run of the loop trains a tiny VLM on the built-in world: samples/s in steady state.

    python benchmarks/world_throughput.py --preset medium --batch-size 64 --steps 150 \
        --variant plain: --variant other:train.some_switch=true --out world_throughput.json

Each ``--variant NAME:KEY=VALUE,KEY=VALUE`` is one run of ``python -m train`` with those config
overrides on top of a common base (world data, curriculum off, no checkpoints, one evaluation at
the end); every variant trains the same freshly built model (``model.tiny_preset``, built once).
Reported per variant, over the log windows after the first (warm-up): the median samples/s and
tokens/s, the share of step time spent building batches, the loss of the last window, the peak
GPU memory where there is one, and the wall time of the whole run. A goal (``--goal``, samples/s)
is checked against the fastest variant, for the record, not as a pass or fail.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` (nothing after the colon: no overrides) -> (name, overrides); a
    comma inside brackets belongs to a list value (``model.sdpa_backends=[flash,efficient]``)."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,... (the part after ':' may be empty)")
    overrides, depth, part = [], 0, ""
    for char in rest + ",":
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            overrides += [part] if part else []
            part = ""
        else:
            part += char
    bad = [part for part in overrides if "=" not in part]
    if bad:
        raise SystemExit(f"--variant {name}: {bad[0]!r} is not KEY=VALUE")
    return name, overrides


def common_overrides(args: argparse.Namespace, model: Path, work: Path, name: str) -> list[str]:
    return [
        f"run.name={name}",
        f"run.output_dir={work}",
        f"model.name_or_path={model}",
        "model.build_tiny=qwen2_5_vl",
        f"model.tiny_preset={args.preset}",
        "model.freeze_vision=true",
        f"data.world.image_size={args.image_size}",
        f"data.world.train_size={args.train_size}",
        "data.world.probe_size=0",
        f"data.world.test_size={args.test_size}",
        "data.question_first=true",
        "curriculum.enabled=false",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.lr=5e-4",
        f"train.warmup_steps={min(10, args.steps)}",
        f"train.log_every={args.log_every}",
        "train.save_every=0",
        "train.save_model=false",
        f"train.cpu={str(args.device == 'cpu').lower()}",
        "eval.at_start=false",
        "eval.every=0",
        "eval.batch_size=256",
        "eval.max_new_tokens=4",
    ]


def measure(run_dir: Path, batch_size: int) -> dict:
    """Steady-state figures of a finished run, from its ``metrics.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in rows if "train/samples_per_s" in r]
    if len(windows) < 2:
        raise SystemExit(f"{run_dir}: {len(windows)} log window(s); give --steps several --log-every")
    steady = windows[1:]

    def median(key: str) -> float | None:
        values = [r[key] for r in steady if key in r]
        return statistics.median(values) if values else None

    samples = median("train/samples_per_s")
    return {
        "samples_per_s": samples,
        "tokens_per_s": median("train/tokens_per_s"),
        "step_time_s": batch_size / samples if samples else None,
        "data_fraction": median("train/data_fraction"),
        "peak_mem_gib": max((r.get("train/peak_mem_gib", 0.0) for r in steady), default=0.0) or None,
        "loss_last_window": steady[-1].get("train/loss"),
        "windows": len(steady),
    }


def device_name(device: str) -> str:
    if device == "cpu":
        return f"CPU ({platform.processor() or platform.machine()})"
    import torch

    return torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", help="model.tiny_preset: tiny, small, medium")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--test-size", type=int, default=90)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    parser.add_argument("--goal", type=float, default=1000.0, help="samples/s the fastest variant is held to")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant] or [("plain", [])]
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"--variant names must differ: {names}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        model = work / f"model-{args.preset}"
        results: dict[str, dict] = {}
        for name, overrides in variants:
            t0 = time.perf_counter()
            command = [sys.executable, "-m", "train", *common_overrides(args, model, work, name), *overrides]
            subprocess.run(command, check=True, cwd=ROOT)
            results[name] = {
                "overrides": overrides,
                **measure(work / name, args.batch_size),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            print(f"{name}: {results[name]['samples_per_s']:.1f} samples/s", flush=True)
    fastest = max(results, key=lambda n: results[n]["samples_per_s"])
    record = {
        "device": device_name(args.device),
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "variants": results,
        "fastest": fastest,
        "goal_samples_per_s": args.goal,
        "goal_met": results[fastest]["samples_per_s"] >= args.goal,
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
