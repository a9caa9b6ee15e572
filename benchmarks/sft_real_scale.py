"""SFT at real scale on one GPU: a random-initialised Qwen2.5-VL-3B-shaped model, bf16, trained
by lessonloop's loop on the built-in world, and the same model and data through TRL's SFTTrainer.

    python benchmarks/sft_real_scale.py --out benchmarks/results/sft_real_scale.json

Each trainer runs in its own process so neither sees the other's memory. TRL runs three times:
with SFTConfig's defaults (gradient checkpointing on), matched to lessonloop (checkpointing off),
and at its fastest setting for a vision dataset (checkpointing off, Liger's layer kernels through
``use_liger_kernel``, which needs ``liger-kernel`` installed; TRL 1.x refuses ``padding_free`` for
vision data and fuses the LM head's loss itself). A TRL run that fails is recorded with its error.
Reported: samples/s, tokens/s (all tokens, image tokens included) and answer tokens/s in steady
state (the first log window is warm-up and left out), peak GPU memory, the share of step time
spent building batches, lessonloop's model TFLOP/s and utilisation of the GPU's peak (``mfu``),
evaluation items/s (batched greedy generation); lessonloop / TRL ratios.

``--variant NAME:KEY=VALUE,...`` (repeatable) runs lessonloop once per variant on the same built
model, before the TRL runs, so every ratio comes from one call; each run's loss per log window is
kept, and a variant repeated under another name shows how far two runs of one setting drift apart
in bf16 (the yardstick for "the same loss curve within noise"):

    python benchmarks/sft_real_scale.py --steps 80 --trl-modes off,fastest --variant plain: \
        --variant plain_again: --variant compiled:model.compile=true --out sft.json
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


def build_model(path: Path, image_size: int) -> dict:
    import torch

    from models import build_vlm, count_parameters

    t0 = time.perf_counter()
    model, processor = build_vlm(
        "qwen2_5_vl", preset="qwen2_5_vl_3b", image_size=image_size, device="cuda", dtype=torch.bfloat16
    )
    params = count_parameters(model)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return {"parameters": params, "build_and_save_s": round(time.perf_counter() - t0, 1)}


def run_lessonloop(
    args: argparse.Namespace, model_path: Path, work: Path, name: str, extra: list[str]
) -> dict:
    """One lessonloop run of variant ``name``: the common settings, ``--set``, then ``extra``."""
    overrides = [
        f"run.name=bench-{name}",
        f"run.output_dir={work}",
        f"model.name_or_path={model_path}",
        "model.dtype=bfloat16",
        f"data.world.image_size={args.image_size}",
        f"data.world.train_size={args.train_size}",
        "data.world.probe_size=16",
        f"data.world.test_size={args.eval_items}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.lr=1e-4",
        "train.warmup_steps=10",
        f"train.log_every={args.log_every}",
        "train.save_model=false",
        "train.mixed_precision=bf16",
        f"train.loss_chunk={args.loss_chunk}",
        f"eval.batch_size={args.eval_batch_size}",
        "eval.max_new_tokens=8",
        *args.set,
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "train", *overrides], check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    run_dir = work / f"bench-{name}"
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "train/loss" in r][1:]  # the first window is warm-up
    evals = [r for r in lines if "eval/accuracy" in r]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in train)

    return {
        "samples_per_s": med("train/samples_per_s"),
        "tokens_per_s": med("train/tokens_per_s"),
        "answer_tokens_per_s": med("train/answer_tokens_per_s"),
        "step_time_s": args.batch_size / med("train/samples_per_s"),
        "data_fraction": med("train/data_fraction"),
        # Model FLOPs per second and their share of the GPU's dense bf16 peak (train/flops.py).
        "model_tflops_per_s": med("train/model_tflops_per_s"),
        "mfu": med("train/mfu") if all("train/mfu" in r for r in train) else None,
        "peak_mem_gib": max(r.get("train/peak_mem_gib", 0.0) for r in train),
        "eval_gen_tokens_per_s": evals[-1]["eval/gen_tokens_per_s"],
        "eval_items_per_s": args.eval_items / evals[-1]["eval/seconds"],
        "eval_seconds": evals[-1]["eval/seconds"],
        "eval_items": args.eval_items,
        "loss_first_window": train[0]["train/loss"],
        "loss_last_window": train[-1]["train/loss"],
        "loss_windows": [[r["step"], r["train/loss"]] for r in lines if "train/loss" in r],
        "overrides": extra,
        "wall_s": round(wall, 1),
    }


def run_trl(args: argparse.Namespace, model_path: Path, work: Path) -> dict:
    """TRL's SFTTrainer on the same model, data, batch size and precision, completion-only loss.

    ``--trl-checkpointing default`` keeps SFTConfig's own default (gradient checkpointing on in
    TRL 1.x), ``off`` matches lessonloop's setting (off), ``fastest`` is off with Liger's kernels."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from curriculum.world import build_splits
    from models import load_model
    from train.collate import messages

    train = build_splits(
        seed=0, train_size=args.train_size, probe_size=16, test_size=16, image_size=args.image_size
    )["train"]
    rows = [
        {
            "prompt": messages(ex.question),
            "completion": messages(ex.question, ex.answer)[1:],
            "images": [ex.image],
        }
        for ex in train
    ]
    model, processor = load_model(str(model_path), dtype="bfloat16", device="cuda")
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    config = SFTConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.trl_steps,
        learning_rate=1e-4,
        warmup_steps=10,
        lr_scheduler_type="cosine",
        bf16=True,
        logging_steps=args.log_every,
        save_strategy="no",
        report_to=[],
        max_length=None,
        dataloader_num_workers=0,
        seed=0,
        **({"gradient_checkpointing": False} if args.trl_checkpointing in ("off", "fastest") else {}),
        **({"use_liger_kernel": True} if args.trl_checkpointing == "fastest" else {}),
    )
    torch.cuda.reset_peak_memory_stats()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        callbacks=[Clock()],
    )
    trainer.train()
    skip = args.log_every  # the same warm-up as lessonloop's first window
    steady = (len(stamps) - 1 - skip) / (stamps[-1] - stamps[skip])
    return {
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        "use_liger_kernel": bool(config.use_liger_kernel),
        "samples_per_s": steady * args.batch_size,
        "step_time_s": 1 / steady,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        "steps": len(stamps),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/sft_real_scale.json"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trl-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--eval-items", type=int, default=512)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--loss-chunk", type=int, default=1024, help="train.loss_chunk (0: full logits)")
    parser.add_argument("--peer", choices=["trl", "none"], default="trl", help="also run TRL's SFTTrainer")
    parser.add_argument(
        "--trl-modes", default="default,off,fastest", help="the TRL runs, in order (comma-separated)"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="more config overrides for the lessonloop run, e.g. train.packing=true model.attn_implementation=flash_attention_2",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
        help="a lessonloop run with these overrides on top of --set (repeatable; default: one run, 'plain'); "
             "two variants with the same overrides measure the run-to-run spread",
    )  # fmt: skip
    parser.add_argument(
        "--trl-checkpointing",
        choices=["default", "off", "fastest"],
        default="default",
        help="internal: one TRL run's setting (checkpointing as TRL's default, off, or off with Liger)",
    )
    parser.add_argument("--only", choices=["trl"], help="internal: run TRL alone")
    parser.add_argument("--model", help="internal: the built checkpoint")
    parser.add_argument("--work", help="internal: scratch folder")
    args = parser.parse_args()
    modes = [m for m in args.trl_modes.split(",") if m]
    if unknown := set(modes) - {"default", "off", "fastest"}:
        parser.error(f"--trl-modes: unknown {sorted(unknown)}; choose from default, off, fastest")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from world_throughput import parse_variant

    variants = [parse_variant(v) for v in args.variant] or [("plain", [])]
    if len({name for name, _ in variants}) < len(variants):
        parser.error("--variant: each variant needs its own name")
    if args.only == "trl":
        print("TRL_RESULT " + json.dumps(run_trl(args, Path(args.model), Path(args.work))), flush=True)
        return

    import torch
    import transformers

    work = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    model_path = work / "qwen2_5_vl_3b_random"
    result = {
        "benchmark": "sft_real_scale",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in {"only", "model", "work", "out", "trl_checkpointing", "peer", "trl_modes", "variant"}
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every run: a command cut short keeps what finished
        out.write_text(json.dumps(result, indent=1))

    result["model"] = {
        "arch": "qwen2_5_vl",
        "preset": "qwen2_5_vl_3b",
        "dtype": "bfloat16",
        **build_model(model_path, args.image_size),
    }
    torch.cuda.empty_cache()
    # Every variant's run; "lessonloop" is the first one's, which the ratios below are taken of.
    result["lessonloop_variants"] = {}
    for name, extra in variants:
        try:
            result["lessonloop_variants"][name] = run_lessonloop(args, model_path, work, name, extra)
        except subprocess.CalledProcessError as err:  # a failing variant is recorded; the others still run
            result["lessonloop_variants"][name] = {"error": f"exit {err.returncode}", "overrides": extra}
        save()  # after every variant: a command cut short keeps what finished
    result["lessonloop"] = result["lessonloop_variants"][variants[0][0]]
    save()
    for mode in modes if args.peer == "trl" else ():
        key = f"trl_checkpointing_{mode}"
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--only",
                    "trl",
                    "--model",
                    str(model_path),
                    "--work",
                    str(work),
                    f"--trl-checkpointing={mode}",
                    *[f"--{k.replace('_', '-')}={v}" for k, v in result["settings"].items()],
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ},
            )
            line = [x for x in proc.stdout.splitlines() if x.startswith("TRL_RESULT ")]
            if proc.returncode or not line:
                result[key] = {"error": (proc.stderr or proc.stdout)[-3000:]}
                continue
            result[key] = json.loads(line[-1][len("TRL_RESULT ") :])
            for name, run in result["lessonloop_variants"].items():
                if "samples_per_s" in run:
                    prefix = "lessonloop" if name == variants[0][0] else f"lessonloop_{name}"
                    result[f"ratio_samples_per_s_{prefix}_over_{key}"] = (
                        run["samples_per_s"] / result[key]["samples_per_s"]
                    )
                    if "peak_mem_gib" in result[key]:
                        result[f"ratio_peak_mem_{prefix}_over_{key}"] = (
                            run["peak_mem_gib"] / result[key]["peak_mem_gib"]
                        )
        except Exception as err:  # the peer is a comparison, not the subject: record why it failed
            result[key] = {"error": repr(err)}
        save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
