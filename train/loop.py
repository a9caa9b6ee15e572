"""The training loop: one explicit Accelerate loop, readable top to bottom.

    python -m train --config configs/demo.yaml [key=value ...]
    accelerate launch -m train --config configs/qwen2_5_vl_3b_lora.yaml

Set-up (data, model, optimizer, resume), an evaluation at the start, then the steps, with
logging, curriculum rounds, periodic evaluation and checkpoints as inline blocks, then a last
evaluation, the final model and a summary. What one optimizer step does is the objective's:
``train/sft.py`` (cross-entropy on the answers) or ``train/grpo.py`` (GRPO on sampled answers).
The same code runs on CPU, one GPU or many.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections import Counter
from functools import partial
from typing import Any

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from curriculum.mixer import Mixer, ratio_schedule
from curriculum.secrets import install_log_redaction
from models.vision_cache import feature_store
from train.checkpoint import checkpoint_dir, load_checkpoint, resolve_resume, save_checkpoint
from train.collate import VLMCollator
from train.config import Config, TrainConfig, dump
from train.data import column_names, describe_skipped, load_eval_sets, load_splits
from train.distributed import fill_deepspeed_config, full_state_dict
from train.evaluate import EvalResult, ModelPolicy, evaluate, prior_baseline, skill_table
from train.flops import flop_counter, peak_flops
from train.prefetch import BatchSource
from train.setup import preflight, prepare_model, world_skills_of
from train.tracking import Tracker

log = logging.getLogger("lessonloop")


def lr_scheduler(optimizer: Any, tc: TrainConfig) -> Any:
    """The learning-rate schedule as transformers builds it (``warmup_stable_decay``, one shape for
    all three): a linear warm-up from ``min_lr_ratio`` x ``lr`` to ``lr`` over ``warmup_steps``,
    then ``cosine`` or ``linear`` decay to ``min_lr_ratio`` x ``lr`` at ``steps``, or ``constant``."""
    decay = tc.steps - tc.warmup_steps
    constant = tc.schedule == "constant"
    # The stable and decay lengths given, not the total: with both, transformers warns on every run.
    return transformers.optimization.get_wsd_schedule(
        optimizer,
        num_warmup_steps=tc.warmup_steps,
        num_stable_steps=decay if constant else 0,
        num_decay_steps=0 if constant else decay,
        decay_type="linear" if tc.schedule == "linear" else "cosine",
        min_lr_ratio=tc.min_lr_ratio,
    )


COUNTS = ("samples", "tokens", "answer_tokens", "rollout_tokens")  # reported per second


def window_metrics(
    window: dict[str, float], reported: dict[str, int], seconds: float, world: int, peak: float | None = None
) -> dict[str, float]:
    """A log window's sums as metrics: counts per second (all ranks), ``data_s`` and
    ``pool_samples`` as fractions, ``model_flops`` as this device's model TFLOP/s and, given the
    device's ``peak`` FLOP/s, its utilisation ``train/mfu``; everything else averaged over the
    steps that reported it (``reported[key]``: a reward function that scored nothing, or a gradient norm DeepSpeed has
    not computed yet, is missing from some steps and must not pull the mean towards 0)."""
    out = {}
    for key, total in window.items():
        if key in COUNTS:
            out[f"train/{key}_per_s"] = total * world / seconds
        elif key == "data_s":
            out["train/data_fraction"] = total / seconds
        elif key == "model_flops":
            out["train/model_tflops_per_s"] = total / seconds / 1e12
            if peak:
                out["train/mfu"] = total / seconds / peak
        elif key == "pool_samples":
            out["train/pool_fraction"] = total / max(1.0, window.get("samples", 0.0))
        else:
            out[f"train/{key}"] = total / reported[key]
    return out


def sampled_view(metrics: dict[str, float]) -> dict[str, float]:
    """The sampled evaluation's metrics under the greedy names, for ``skill_table``."""
    out = {"accuracy": metrics["sampled"]}
    out.update({k[len("sampled/") :]: v for k, v in metrics.items() if k.startswith("sampled/skill/")})
    return out


def ndim(param: torch.Tensor) -> int:
    """A parameter's number of dimensions; under ZeRO-3 the local tensor is an empty shard and
    the real shape is in ``ds_shape``."""
    return len(getattr(param, "ds_shape", param.shape))


def resolve_mixed_precision(tc: TrainConfig) -> str:
    if tc.mixed_precision != "auto":
        return tc.mixed_precision
    on_gpu = torch.cuda.is_available() and not tc.cpu
    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"


def run(cfg: Config) -> dict[str, Any]:
    """Train as configured; returns the summary that is also written to ``<run>/summary.json``."""
    tc = cfg.train
    accelerator = Accelerator(
        gradient_accumulation_steps=tc.grad_accum, mixed_precision=resolve_mixed_precision(tc), cpu=tc.cpu
    )
    is_main = accelerator.is_main_process
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(message)s")
    install_log_redaction()  # no credential inside a URL reaches the console or W&B's copy of it
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    frontier = preflight(cfg)
    run_dir = cfg.run_dir
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump(cfg))
    set_seed(cfg.run.seed)
    t_start = time.perf_counter()

    # ---- data and model
    splits = load_splits(cfg.data, cfg.run.seed)
    log.info(
        "data: %s%s",
        splits.sizes(),
        f", skipped rows: {describe_skipped(splits.skipped)}" if splits.skipped else "",
    )
    model, processor = prepare_model(cfg, splits, accelerator)
    collator = VLMCollator(
        processor, cfg.data.question_first, cfg.data.question_suffix, cfg.data.image_cache_mib
    )
    from models import count_parameters

    trainable = [p for p in model.parameters() if p.requires_grad]
    log.info(
        "model: %s, %.2fM parameters (%.2fM trainable), mixed precision %s, %d process(es) on %s",
        cfg.model.name_or_path,
        count_parameters(model) / 1e6,
        count_parameters(model, trainable_only=True) / 1e6,
        accelerator.mixed_precision,
        accelerator.num_processes,
        accelerator.device,
    )
    groups = [
        {"params": [p for p in trainable if ndim(p) >= 2], "weight_decay": tc.weight_decay},
        {"params": [p for p in trainable if ndim(p) < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=tc.lr, betas=tuple(tc.betas), fused=accelerator.device.type == "cuda"
    )
    fill_deepspeed_config(accelerator, tc.batch_size, tc.max_grad_norm)
    model, optimizer = accelerator.prepare(model, optimizer)
    # On the prepared optimizer (DeepSpeed may have replaced the one built above, e.g. by its CPU
    # Adam when offloading), and unprepared: Accelerate would step it once per process per step.
    scheduler = lr_scheduler(optimizer, tc)
    accelerator.register_for_checkpointing(scheduler)
    cc = cfg.curriculum
    ratio = (
        ratio_schedule(cc.mix.ratio, cc.mix.ratio_end, cc.mix.ramp_steps) if cc.enabled else (lambda _: 0.0)
    )
    stream = Mixer(splits.train, cfg.run.seed, ratio, accelerator.process_index, accelerator.num_processes)
    ckpt = resolve_resume(tc.resume, run_dir)
    if ckpt is None and is_main and checkpoint_dir(run_dir).exists():
        log.info("starting over: removing the earlier checkpoints of %s", run_dir)
        shutil.rmtree(checkpoint_dir(run_dir))
    tracker = Tracker(cfg, run_dir, active=is_main, fresh=ckpt is None, report_to=cfg.tracking.report_to)
    eval_set = splits.test[: cfg.eval.max_examples] if cfg.eval.max_examples else splits.test
    skill_counts = Counter(ex.skill or "all" for ex in eval_set)
    grpo = tc.mode == "grpo"
    policy = ModelPolicy(model, collator, accelerator, cfg.eval.batch_size, cfg.eval.max_new_tokens,
                         *((cfg.grpo.temperature, cfg.grpo.max_new_tokens) if grpo else (1.0, None)),
                         cfg.eval.decoder, cfg.eval.compile)  # fmt: skip
    curriculum = None
    if cc.enabled:
        from curriculum.engine import Curriculum

        curriculum = Curriculum(
            cc,
            run_dir / "curriculum",
            splits.train,
            splits.probe,
            {"test": splits.test, **load_eval_sets(cc.eval_sets, cfg.data)},
            cfg.data.world.image_size,
            cfg.run.seed,
            accelerator=accelerator,
            fresh=ckpt is None,
            verified_only=grpo,
            allow_unverified=cc.allow_unverified,
            skills=world_skills_of(cfg),
            frontier=frontier,
            reserve=splits.reserve,
        )

    def run_eval(step: int) -> EvalResult:
        ec = cfg.eval
        result = evaluate(model, collator, eval_set, accelerator, ec.batch_size, ec.max_new_tokens,
                          ec.samples, ec.temperature, ec.sample_seed, ec.decoder, ec.compile)  # fmt: skip
        tokens_per_s = result.generated_tokens / max(result.seconds, 1e-9)
        tracker.log(
            {
                **{f"eval/{k}": v for k, v in result.metrics.items()},
                "eval/seconds": result.seconds,
                "eval/gen_tokens_per_s": tokens_per_s,
            },
            step,
        )
        m = result.metrics
        sampled = (
            f", sampled {m['sampled']:.3f} (pass@{ec.samples} {m['pass_at_k']:.3f})" if ec.samples else ""
        )
        log.info("eval @ step %d: accuracy %.3f (exact %.3f)%s on %d items in %.1fs",
                 step, m["accuracy"], m["exact"], sampled, len(eval_set), result.seconds)  # fmt: skip
        return result

    # ---- resume
    step, history = 0, []
    saved_step = None  # the step of the newest checkpoint on disk
    if ckpt is not None:
        state = load_checkpoint(accelerator, ckpt)
        step, history = state["step"], state["history"]
        saved_step = step
        stream.load_state_dict(state["stream"])
        if curriculum is not None and "curriculum" in state:
            curriculum.load_state_dict(state["curriculum"])
            stream.set_pool(*curriculum.pool_view())
        log.info("resumed from %s at step %d", ckpt, step)
    elif cfg.eval.at_start:
        history.append({"step": 0, **run_eval(0).metrics})
        log.info("test accuracy at the start:\n%s", skill_table({"start": history[0]}, skill_counts))

    def checkpoint_state() -> dict[str, Any]:
        state = {"stream": stream.state_dict(), "history": history}
        if curriculum is not None:
            state["curriculum"] = curriculum.state_dict()
        return state

    # ---- train
    model.train()
    flops = flop_counter(accelerator.unwrap_model(model))
    vision_store = feature_store(accelerator.unwrap_model(model))
    peak = peak_flops(accelerator.device, tc.peak_flops)
    if grpo:
        from train.grpo import GRPOStep

        train_step: Any = GRPOStep(cfg.grpo, model, collator, optimizer, accelerator, stream, tc.batch_size,
                                   tc.max_grad_norm, cfg.model.lora.enabled, column_names(cfg.data),
                                   tc.steps, tc.loss_chunk, flops)  # fmt: skip
    else:
        from train.sft import SFTStep

        on_gpu = accelerator.device.type == "cuda"
        from train.packing import Packer, RopePositions

        unwrapped = accelerator.unwrap_model(model)
        # Packed or not, M-RoPE positions come with the batch, computed off the step.
        pad = collator.tokenizer.pad_token_id
        transform = Packer(unwrapped, pad, tc.pack_tokens) if tc.packing else RopePositions.of(unwrapped)
        ahead = tc.prefetch == "always" or (tc.prefetch == "auto" and on_gpu)
        count = partial(flops.sft, chunk=tc.loss_chunk) if flops is not None else None
        stream = BatchSource(stream, collator, tc.grad_accum, ahead, on_gpu, tc.steps, transform, count,
                             workers=tc.data_workers)  # fmt: skip
        train_step = SFTStep(model, optimizer, accelerator, stream, tc)
    # A live bar on a terminal; in a log file, one line per log window instead.
    interactive = is_main and sys.stderr.isatty()
    bar = tqdm(total=tc.steps, initial=step, disable=not interactive, desc="train", dynamic_ncols=True)
    window: dict[str, float] = {}  # sums over the log window
    reported: dict[str, int] = {}  # steps of the window that reported each key
    t_window = time.perf_counter()
    round_seconds = 0.0  # wall time the loop spent in curriculum rounds
    t_loop = time.perf_counter()
    while step < tc.steps:
        out = train_step(step)
        scheduler.step()
        step += 1
        out["loss"] = float(accelerator.reduce(torch.tensor(out["loss"], device=accelerator.device), "mean"))
        for key, value in out.items():
            window[key] = window.get(key, 0.0) + value
            reported[key] = reported.get(key, 0) + 1
        bar.update(1)

        if step % tc.log_every == 0 or step == tc.steps:
            metrics = window_metrics(
                window, reported, time.perf_counter() - t_window, accelerator.num_processes, peak
            )
            metrics["train/lr"] = scheduler.get_last_lr()[0]
            metrics["train/epoch"] = stream.epoch
            if vision_store is not None:  # pictures served from the vision cache since the start
                metrics["train/vision_cache_hit_rate"] = vision_store.stats()["hit_rate"]
            if accelerator.device.type == "cuda":
                metrics["train/peak_mem_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
            tracker.log(metrics, step)
            if getattr(train_step, "samples", None):
                tracker.samples("train/completions", train_step.samples, step)
            bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", lr=f"{metrics['train/lr']:.2e}")
            if not interactive:
                extra = (
                    f"  reward {metrics['train/reward_mean']:.3f}" if "train/reward_mean" in metrics else ""
                )
                log.info(
                    "step %d/%d  loss %.4f%s  lr %.2e  %.1f samples/s  (%.0f%% building batches)",
                    step, tc.steps, metrics["train/loss"], extra, metrics["train/lr"],
                    metrics["train/samples_per_s"], 100 * metrics.get("train/data_fraction", 0.0),
                )  # fmt: skip
            window, reported, t_window = {}, {}, time.perf_counter()

        if curriculum is not None:
            # A round's examples join the stream at the next step; async rounds inject here too.
            t_round = time.perf_counter()
            result = curriculum.poll(step, policy)
            # A round whose examples would join at or after the last step would teach nothing.
            if curriculum.due(step) and step + (cc.max_staleness if cc.mode == "async" else 0) < tc.steps:
                result = curriculum.update(step, policy) or result
            if result is not None:
                stream.set_pool(*curriculum.pool_view())
                tracker.log(result.metrics, step)
                tracker.curriculum_round(result, curriculum.pool, step)
            round_seconds += time.perf_counter() - t_round

        if cfg.eval.every and step % cfg.eval.every == 0 and step < tc.steps:
            history.append({"step": step, **run_eval(step).metrics})
        if tc.save_every and step % tc.save_every == 0 and step < tc.steps:
            save_checkpoint(accelerator, run_dir, step, checkpoint_state(), tc.keep_checkpoints)
            saved_step = step
    bar.close()
    if isinstance(stream, BatchSource):
        stream.close()
    if curriculum is not None:
        curriculum.close()

    # ---- final evaluation, checkpoint, model and summary
    final = run_eval(step)
    if history and history[-1]["step"] == step:  # resumed from a finished run: evaluated again
        history.pop()
    history.append({"step": step, **final.metrics})
    if saved_step != step:
        save_checkpoint(accelerator, run_dir, step, checkpoint_state(), tc.keep_checkpoints)
    if tc.save_model:
        from models import save_model

        accelerator.wait_for_everyone()
        weights = full_state_dict(accelerator, model)  # ZeRO-3 / FSDP: gathered from every rank
        if is_main:
            save_model(accelerator.unwrap_model(model), processor, run_dir / "model", state_dict=weights)
    prior = prior_baseline(splits.train, eval_set)
    start = history[0] if history[0]["step"] == 0 else None
    columns = {"start": start, "end": final.metrics, "prior": prior}
    table = skill_table({k: v for k, v in columns.items() if v is not None}, skill_counts)
    summary = {
        "run": cfg.run.name,
        "steps": step,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "start": start,
        "end": final.metrics,
        "prior_baseline": prior,
        "history": history,
        "data": splits.sizes(),
        "skipped": dict(splits.skipped),
    }
    if curriculum is not None:
        loop_seconds = time.perf_counter() - t_loop
        summary["curriculum"] = {
            "mode": cc.mode,
            "rounds": curriculum.history,
            "pool_size": len(curriculum.pool),
            "round_seconds": round(round_seconds, 1),
            "loop_seconds": round(loop_seconds, 1),
            "round_share": round(round_seconds / max(loop_seconds, 1e-9), 3),
        }
    if is_main and tc.save_model:
        from models.card import write_model_card

        write_model_card(
            run_dir / "model",
            base_model=cfg.model.name_or_path,
            objective=tc.mode,
            steps=step,
            accuracy=columns,
            skill_counts=skill_counts,
            dataset=cfg.data.hf.path if cfg.data.source == "hf" else None,
            data_sizes=splits.sizes(),
            rounds=curriculum.history if curriculum is not None else None,
            pool_size=len(curriculum.pool) if curriculum is not None else None,
            cost_usd=(curriculum.state_dict()["spent"] or {}).get("cost") if curriculum is not None else None,
            run_name=cfg.run.name,
        )
    if is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        (run_dir / "eval_predictions.jsonl").write_text(
            "".join(json.dumps(s.__dict__) + "\n" for s in final.scores)
        )
        print(
            f"\nTest accuracy by skill ({len(eval_set)} held-out items; prior: always the skill's most "
            f"common train answer, the best a model blind to the image can do):\n{table}\n",
            flush=True,
        )
        if cfg.eval.samples:
            sampled = {k: sampled_view(v) for k, v in columns.items() if v is not None and "sampled" in v}
            print(
                f"Sampled test accuracy by skill (mean pass rate of {cfg.eval.samples} answers per item at "
                f"temperature {cfg.eval.temperature:g}):\n{skill_table(sampled, skill_counts)}\n",
                flush=True,
            )
    tracker.summary({"final/" + k: v for k, v in final.metrics.items()})
    tracker.close()
    accelerator.end_training()
    return summary
