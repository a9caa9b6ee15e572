"""The SFT data path: what building a batch costs on the host, and what the loop trains per second.

    python benchmarks/data_path.py                       # CPU: collator, padding, short runs
    python benchmarks/data_path.py --gpu --runs 1        # the same runs on a GPU (pinned, prefetched)

Three parts, written to one JSON (``--out``):

* ``collator``: milliseconds per batch of ``--batch-size`` world items through ``VLMCollator`` on
  one thread, measured three ways: encoding every prompt again to measure it (the collator's
  fallback, which was its only path before), encoding once, and encoding once with the image
  cache on (its first pass processes every picture, later passes reuse them). Median over the
  batches of each pass.
* ``padding``: the share of a padded micro-batch's positions that are padding, which packing
  (``train.packing``) does not compute.
* ``runs``: ``python -m train`` on ``--config`` with the curriculum off, once per variant (data
  built on demand, built ahead, packed in rows of at most 128 tokens), ``--runs`` times each in
  turn: the median
  of ``train/samples_per_s`` and ``train/data_fraction`` over the log windows after the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "on_demand": ["train.prefetch=never"],
    "prefetch": ["train.prefetch=always"],
    "packed_128": ["train.prefetch=never", "train.packing=true", "train.pack_tokens=128"],
}


def collator_times(model: str, items: int, batch_size: int, image_size: int, passes: int) -> dict:
    import torch

    from curriculum.world import build_splits
    from models import load_model
    from train.collate import VLMCollator

    torch.set_num_threads(1)
    _, processor = load_model(model, device="cpu")
    world = build_splits(seed=0, train_size=items, probe_size=0, test_size=8, image_size=image_size)
    batches = [world["train"][i : i + batch_size] for i in range(0, items, batch_size)]

    def timed(collator) -> list[float]:
        out = []
        for _ in range(passes):
            seconds = []
            for batch in batches:
                t = time.perf_counter()
                collator(batch)
                seconds.append(time.perf_counter() - t)
            out.append(round(1000 * statistics.median(seconds), 2))
        return out

    again = VLMCollator(processor, question_first=True)
    again._spans_from_text = lambda *args: None  # measured by encoding again, as before
    padded = VLMCollator(processor, question_first=True)
    masks = [padded(batch)["attention_mask"] for batch in batches]
    return {
        "collator_ms_per_batch": {
            "encode_again": timed(again),
            "encode_once": timed(VLMCollator(processor, question_first=True)),
            "encode_once_image_cache": timed(
                VLMCollator(processor, question_first=True, image_cache_mib=256)
            ),
        },
        "padding_fraction": round(
            float(sum((m == 0).sum() for m in masks) / sum(m.numel() for m in masks)), 4
        ),
    }


def run_variant(config: str, name: str, overrides: list[str], work: Path, steps: int, gpu: bool) -> dict:
    argv = [
        sys.executable, "-m", "train", "--config", config, "curriculum.enabled=false", f"train.steps={steps}",
        "train.log_every=25", "eval.at_start=false", "eval.max_examples=64", "train.save_model=false",
        "train.cpu=false" if gpu else "train.cpu=true",
        f"run.output_dir={work}", f"run.name={name}", *overrides,
    ]  # fmt: skip
    subprocess.run(
        argv, check=True, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True
    )
    lines = [json.loads(x) for x in (work / name / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in lines if "train/samples_per_s" in r][1:]  # the first window warms up
    return {
        "samples_per_s": round(statistics.median(r["train/samples_per_s"] for r in windows), 1),
        "data_fraction": round(statistics.median(r["train/data_fraction"] for r in windows), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models/bases/tiny-qwen2_5_vl"))
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (0: none)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--gpu", action="store_true", help="train on the GPU (the config's train.cpu off)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/data_path_cpu.json"))
    args = parser.parse_args(argv)
    result = {
        "benchmark": "data_path",
        "args": vars(args),
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        **collator_times(args.model, args.items, args.batch_size, args.image_size, args.passes),
    }
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.runs):
            for name, overrides in VARIANTS.items():
                runs[name].append(
                    run_variant(args.config, f"{name}{k}", overrides, Path(tmp), args.steps, args.gpu)
                )
    if args.runs:
        result["runs"] = runs
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
