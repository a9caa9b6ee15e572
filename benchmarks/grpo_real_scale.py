"""GRPO at real scale on one GPU: a random-initialised Qwen2.5-VL-3B-shaped model, bf16, trained
by lessonloop's GRPO (``train.mode=grpo``) on the built-in world, and the same model, prompts and
settings through TRL's GRPOTrainer.

    python benchmarks/grpo_real_scale.py --out benchmarks/results/grpo_real_scale.json

Toy check on a CPU (a tiny model, a couple of minutes):

    python benchmarks/grpo_real_scale.py --preset tiny --image-size 32 --steps 4 --log-every 2 \\
        --train-size 64 --device cpu --out /tmp/grpo_toy.json

Each trainer runs in its own process so neither sees the other's memory. Both draw
``--batch-size`` prompts per optimizer step, sample ``--group-size`` completions of at most
``--max-new-tokens`` tokens for each in one batch (no vLLM, no top-k; lessonloop encodes each
prompt once and decodes from its repeated cache, TRL through ``generate``), score them with the
same rewards, and take one optimizer step per batch (one iteration, no reference model: beta 0). A random model almost never emits end-of-sequence, so
completions run to the limit and every step does the same work; the rewards (``length_reward``
below plus ``correct``) only need to vary so that advantages are not all zero, and work does not
depend on them. Dynamic sampling is off in lessonloop so no step draws extra prompts.

TRL runs twice (``--trl-checkpointing both``): matched to lessonloop (gradient checkpointing off,
reported as ``peer``) and with GRPOConfig's own default (checkpointing on, ``peer_trl_defaults``).

Reported, in steady state (the first log window is warm-up and left out): completion (rollout)
tokens/s, completions/s, mean step time and its split into generation (sampling and scoring) and
update (log-probabilities, backward and optimizer step) seconds, peak GPU memory, lessonloop's
model TFLOP/s and ``mfu``; lessonloop / TRL ratios. If TRL cannot run, its entry holds
``{"error": ...}`` with the reason. ``--loss-chunk 0`` gives lessonloop's full-logits update.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REWARD = "benchmarks.grpo_real_scale:length_reward"  # how lessonloop's config names length_reward


# ----------------------------------------------------------------------------- rewards (TRL's signature)


def _text(completion: Any) -> str:
    """A completion as text: lessonloop passes strings, TRL conversational completions
    (``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content") or ""
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text") or "" for p in content if isinstance(p, dict))
    return "".join(parts)


def length_reward(completions: list[Any], **_: Any) -> list[float]:
    """Characters of the completion / 64, capped at 1: varies between a random model's completions,
    where ``correct`` is almost always 0."""
    return [min(len(_text(c)), 64) / 64 for c in completions]


def correct_reward(completions: list[Any], answer: list[str], **_: Any) -> list[float]:
    """lessonloop's built-in ``correct`` on the completions' text (TRL passes messages)."""
    from train.rewards import correct

    return correct([_text(c).strip() for c in completions], answer)


# ----------------------------------------------------------------------------- the model


def build_model(args: argparse.Namespace, path: Path) -> dict:
    import torch

    from models import build_vlm, count_parameters

    t0 = time.perf_counter()
    model, processor = build_vlm(
        "qwen2_5_vl",
        preset=args.preset,
        image_size=args.image_size,
        device=args.device,
        dtype=getattr(torch, args.dtype),
    )
    params = count_parameters(model)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return {"parameters": params, "build_and_save_s": round(time.perf_counter() - t0, 1)}


# ----------------------------------------------------------------------------- lessonloop


def lessonloop_overrides(args: argparse.Namespace, model_path: Path, work: Path) -> list[str]:
    rewards = json.dumps({REWARD: 1.0, "correct": 1.0})  # JSON is YAML; keys quoted for the colon
    return [
        "run.name=bench",
        f"run.output_dir={work}",
        f"model.name_or_path={model_path}",
        f"model.dtype={args.dtype}",
        f"data.world.image_size={args.image_size}",
        f"data.world.train_size={args.train_size}",
        "data.world.probe_size=16",
        f"data.world.test_size={args.eval_items}",
        "train.mode=grpo",
        f"train.loss_chunk={args.loss_chunk}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.lr=1e-6",
        "train.warmup_steps=0",
        f"train.log_every={args.log_every}",
        "train.save_model=false",
        f"train.mixed_precision={'bf16' if args.dtype == 'bfloat16' else 'no'}",
        f"train.cpu={'true' if args.device == 'cpu' else 'false'}",
        f"grpo.group_size={args.group_size}",
        f"grpo.max_new_tokens={args.max_new_tokens}",
        "grpo.temperature=1.0",
        "grpo.top_p=1.0",
        f"grpo.rewards={rewards}",
        "grpo.dynamic_sampling=false",
        "grpo.updates=1",
        "grpo.kl_coef=0.0",
        "grpo.scale_rewards=group",
        "grpo.loss_norm=sequence",
        "eval.at_start=false",
        f"eval.max_examples={args.eval_items}",
        f"eval.batch_size={args.eval_items}",
        "eval.max_new_tokens=8",
        *args.set,
    ]


def run_lessonloop(args: argparse.Namespace, model_path: Path, work: Path) -> dict:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "train", *lessonloop_overrides(args, model_path, work)], check=True, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (work / "bench" / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in lines if "train/loss" in r]
    per_step = args.batch_size * args.group_size  # completions per optimizer step
    # Each window's steps and wall seconds; the first window is warm-up.
    rows = []
    previous = 0
    for r in windows:
        n = r["step"] - previous
        previous = r["step"]
        rows.append((n, n * per_step / r["train/samples_per_s"], r))
    steady = rows[1:]
    steps = sum(n for n, _, _ in steady)
    seconds = sum(s for _, s, _ in steady)

    def step_mean(key: str) -> float:  # window means, weighted by the window's steps
        return sum(n * r[key] for n, _, r in steady) / steps

    step_time = seconds / steps
    generation, update = step_mean("train/generation_s"), step_mean("train/update_s")
    peaks = [r["train/peak_mem_gib"] for _, _, r in steady if "train/peak_mem_gib" in r]
    return {
        "steady_steps": steps,
        "steps_per_s": steps / seconds,
        "completions_per_s": steps * per_step / seconds,
        "rollout_tokens_per_s": sum(r["train/rollout_tokens_per_s"] * s for _, s, r in steady) / seconds,
        "step_time_s": step_time,
        "generation_s": generation,
        "update_s": update,
        "generation_fraction": generation / step_time,
        "completion_length": step_mean("train/completion_length"),
        "peak_mem_gib": max(peaks) if peaks else None,
        "model_tflops_per_s": step_mean("train/model_tflops_per_s"),  # rollouts and update (train/flops.py)
        "mfu": step_mean("train/mfu") if all("train/mfu" in r for _, _, r in steady) else None,
        "reward_mean": step_mean("train/reward_mean"),
        "zero_spread_fraction": step_mean("train/zero_spread_fraction"),
        # Sampler against update, per token, in bf16: cached decoding against one full pass.
        "sampler_logprob_gap": step_mean("train/sampler_logprob_gap"),
        "loss_first_window": windows[0]["train/loss"],
        "loss_last_window": windows[-1]["train/loss"],
        "wall_s": round(wall, 1),
    }


# ----------------------------------------------------------------------------- TRL


def trl_config_kwargs(args: argparse.Namespace, work: Path, checkpointing: str) -> dict:
    """GRPOConfig arguments matched to lessonloop's run. A TRL 'step' is one optimizer step over
    ``gradient_accumulation_steps`` micro-batches of ``per_device_train_batch_size`` completions,
    and one generation batch (``steps_per_generation`` defaults to the accumulation steps) holds
    their product: ``batch_size`` prompts x ``group_size`` completions, as in lessonloop."""
    kwargs = {
        "output_dir": str(work / f"trl_{checkpointing}"),
        "per_device_train_batch_size": args.group_size,  # one group per micro-batch
        "gradient_accumulation_steps": args.batch_size,  # prompts per optimizer step
        "num_generations": args.group_size,
        "max_completion_length": args.max_new_tokens,
        "num_iterations": 1,
        "beta": 0.0,
        "use_vllm": False,
        "loss_type": "grpo",  # per-completion mean, then mean over completions: lessonloop's "sequence"
        "scale_rewards": "group",
        "epsilon": 0.2,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,  # no top-k, as lessonloop's rollouts: both sample the full distribution
        "learning_rate": 1e-6,
        "warmup_steps": 0,
        "lr_scheduler_type": "cosine",
        "max_grad_norm": 1.0,
        "max_steps": args.steps,
        "bf16": args.dtype == "bfloat16",
        "use_cpu": args.device == "cpu",
        "logging_steps": args.log_every,
        "save_strategy": "no",
        "report_to": [],
        "log_completions": False,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    if checkpointing == "off":
        kwargs["gradient_checkpointing"] = False
    return kwargs


def run_trl(args: argparse.Namespace, model_path: Path, work: Path) -> dict:
    """TRL's GRPOTrainer on the same model, prompts, group size, completion length and precision.

    ``--trl-gc default`` keeps GRPOConfig's own default (gradient checkpointing on in TRL 1.x),
    ``off`` matches lessonloop's setting (off)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from curriculum.world import build_splits
    from models import load_model
    from train.collate import messages

    cuda = args.device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    train = build_splits(
        seed=0,
        train_size=args.train_size,
        probe_size=16,
        test_size=args.eval_items,
        image_size=args.image_size,
    )["train"]
    rows = [{"prompt": messages(ex.question), "images": [ex.image], "answer": ex.answer} for ex in train]
    model, processor = load_model(str(model_path), dtype=args.dtype, device=args.device)
    # GRPOTrainer left-pads the prompt ids and re-runs the processor for the image fields
    # (mm_token_type_ids among them), expecting it to pad on the left too: the processor it loads
    # itself is made with padding_side="left", a processor passed in must be set so.
    processor.tokenizer.padding_side = "left"
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            sync()
            stamps.append(time.perf_counter())

    config = GRPOConfig(**trl_config_kwargs(args, work, args.trl_gc))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[length_reward, correct_reward],
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        callbacks=[Clock()],
    )
    # Time generation and scoring per step (one call per optimizer step here): the counterpart of
    # lessonloop's generation_s. The rest of the step is the update.
    generation: list[float] = []
    tokens: list[float] = []
    lengths: list[float] = []
    inner = trainer._generate_and_score_completions

    def timed(inputs):
        sync()
        t0 = time.perf_counter()
        out = inner(inputs)
        sync()
        generation.append(time.perf_counter() - t0)
        per_completion = out["completion_mask"].sum(dim=1).float()
        tokens.append(float(per_completion.sum()))
        lengths.append(float(per_completion.mean()))
        return out

    trainer._generate_and_score_completions = timed
    trainer.train()
    skip = args.log_every  # the same warm-up as lessonloop's first window: steps 1..log_every
    if len(stamps) <= skip or len(generation) != len(stamps):
        raise RuntimeError(
            f"{len(stamps)} steps timed and {len(generation)} generations, expected {args.steps}"
        )
    steps = len(stamps) - skip
    seconds = stamps[-1] - stamps[skip - 1]  # from the end of step `skip` to the end of the last
    per_step = args.batch_size * args.group_size
    step_time = seconds / steps
    gen = sum(generation[skip:]) / steps
    logged = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][1:]
    return {
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        "steady_steps": steps,
        "steps_per_s": steps / seconds,
        "completions_per_s": steps * per_step / seconds,
        "rollout_tokens_per_s": sum(tokens[skip:]) / seconds,
        "step_time_s": step_time,
        "generation_s": gen,
        "update_s": step_time - gen,
        "generation_fraction": gen / step_time,
        "completion_length": sum(lengths[skip:]) / steps,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "trl_logged_step_time_s": sum(logged) / len(logged) if logged else None,
        "generation_batch_size": config.generation_batch_size,
        "steps_per_generation": config.steps_per_generation,
        "loss_type": config.loss_type,
        "optim": str(config.optim),
        "steps": len(stamps),
    }


def spawn_trl(args: argparse.Namespace, settings: dict, model_path: Path, work: Path, gc: str) -> dict:
    """One TRL run in its own process; ``{"error": ...}`` with the reason when it cannot run."""
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
                f"--trl-gc={gc}",
                *[f"--{k.replace('_', '-')}={v}" for k, v in settings.items()],
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ},
        )
    except Exception as err:  # the peer is a comparison, not the subject: record why it failed
        return {"error": repr(err)}
    line = [x for x in proc.stdout.splitlines() if x.startswith("TRL_RESULT ")]
    if proc.returncode or not line:
        log = (proc.stderr or proc.stdout).strip()
        # The exception's own line (a traceback's last) first, the tail of the log for context.
        raised = [x for x in log.splitlines() if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", x)]
        reason = raised[-1] if raised else f"exit status {proc.returncode}"
        return {"error": reason, "log_tail": log[-3000:]}
    return json.loads(line[-1][len("TRL_RESULT ") :])


# ----------------------------------------------------------------------------- main


def ratios(ours: dict, peer: dict, suffix: str) -> dict:
    out = {}
    for key in ("completions_per_s", "rollout_tokens_per_s", "step_time_s", "generation_s", "update_s",
                "peak_mem_gib"):  # fmt: skip
        if ours.get(key) and peer.get(key):
            out[f"{key}_lessonloop_over_{suffix}"] = ours[key] / peer[key]
    return out


def environment(device: str) -> dict:
    import accelerate
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except Exception as err:
        trl_version = f"not importable: {err!r}"
    return {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or "cpu"),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "trl": trl_version,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/grpo_real_scale.json"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per optimizer step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--loss-chunk", type=int, default=1024, help="train.loss_chunk (0: full logits)")
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--eval-items", type=int, default=8, help="the final evaluation (outside the timing)")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--preset", choices=["qwen2_5_vl_3b", "small", "tiny"], default="qwen2_5_vl_3b",
                        help="model size (Qwen2.5-VL architecture); tiny/small for a CPU check")  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="weights; bfloat16 also turns on bf16 mixed precision in both trainers")  # fmt: skip
    parser.add_argument("--peer", choices=["trl", "none"], default="trl", help="also run TRL's GRPOTrainer")
    parser.add_argument(
        "--trl-checkpointing",
        choices=["both", "off"],
        default="both",
        help="off: TRL matched to lessonloop only; both: also with GRPOConfig's default (checkpointing on)",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for the lessonloop run, e.g. grpo.forward_groups=2")  # fmt: skip
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the scratch folder (the built model, lessonloop's run and its final checkpoint)")  # fmt: skip
    parser.add_argument("--trl-gc", choices=["default", "off"], default="off", help="internal: one TRL run")
    parser.add_argument("--only", choices=["trl"], help="internal: run TRL alone")
    parser.add_argument("--model", help="internal: the built checkpoint")
    parser.add_argument("--work", help="internal: scratch folder")
    args = parser.parse_args()
    if args.steps < 2 * args.log_every:
        parser.error("--steps must be at least 2 x --log-every: the first log window is warm-up")
    if args.only == "trl":
        print("TRL_RESULT " + json.dumps(run_trl(args, Path(args.model), Path(args.work))), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    model_path = work / f"qwen2_5_vl_{args.preset}_random"
    internal = {"only", "model", "work", "out", "trl_gc", "peer", "trl_checkpointing", "keep_work"}
    settings = {k: v for k, v in vars(args).items() if k not in internal}
    result: dict[str, Any] = {
        "benchmark": "grpo_real_scale",
        "config": {
            **settings,
            "peer": args.peer,
            "trl_checkpointing": args.trl_checkpointing,
            "completions_per_step": args.batch_size * args.group_size,
            "rewards": {REWARD: 1.0, "correct": 1.0},
            "lessonloop_overrides": lessonloop_overrides(args, model_path, work),
        },
        "environment": environment(args.device),
        "work_dir": str(work) if args.keep_work else None,
    }
    result["model"] = {"arch": "qwen2_5_vl", "preset": args.preset, "dtype": args.dtype,
                       **build_model(args, model_path)}  # fmt: skip
    result["lessonloop"] = run_lessonloop(args, model_path, work)
    result["ratios"] = {}
    if args.peer == "trl":
        runs = [("peer", "off")] + (
            [("peer_trl_defaults", "default")] if args.trl_checkpointing == "both" else []
        )
        for key, gc in runs:
            res = spawn_trl(args, settings, model_path, work, gc)
            if "error" not in res:
                res = {
                    "name": "trl.GRPOTrainer",
                    "config": trl_config_kwargs(args, work, gc)
                    | {"reward_funcs": ["length_reward", "correct_reward"]},
                    **res,
                }
                result["ratios"].update(ratios(result["lessonloop"], res, key))
            result[key] = res
    else:
        result["peer"] = {"error": "not run (--peer none)"}
    if not args.keep_work:  # at real scale: a 7.5 GB model and a 22 GB checkpoint
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
