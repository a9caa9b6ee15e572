"""Peak memory of one SFT step and one GRPO update, full logits against hidden states in chunks.

    python benchmarks/loss_memory.py --out benchmarks/results/loss_memory.json            # GPU, 3B shape
    python benchmarks/loss_memory.py --preset tiny --vocab 32768 --device cpu --out /tmp/loss_memory.json

One forward and backward pass each way on the same random-initialised Qwen2.5-VL and batch:

* SFT: ``model(**batch).loss`` (the model's own cross-entropy over the full logits) against
  ``train.losses.answer_loss`` (the answer tokens' hidden states, ``--chunk`` at a time);
* GRPO: ``train.grpo.token_logprobs`` with ``chunk=0`` (full logits over the completions) against
  ``chunk=--chunk``, each prompt encoded once for its ``--group-size`` completions.

Reported: the peak memory each pass allocates above what was allocated before it (on CUDA
``max_memory_allocated``; on a CPU the allocations the torch profiler records, in order), and the
largest difference between the two losses (or log-probabilities). ``--vocab`` widens a small
preset's vocabulary towards a real model's (Qwen2.5-VL: 151,936 rows), where the logits dominate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from curriculum.world import build_splits  # noqa: E402
from models import build_vlm, count_parameters  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.grpo import token_logprobs  # noqa: E402
from train.losses import answer_loss  # noqa: E402


def peak_bytes(fn, device: torch.device) -> tuple[torch.Tensor, int]:
    """``fn()``'s result and the most memory allocated at once while it ran, above the start."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, torch.cuda.max_memory_allocated(device) - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    now = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        now += event.nbytes()
        peak = max(peak, now)
    return out, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/loss_memory.json"))
    parser.add_argument("--preset", default="qwen2_5_vl_3b", help="models.tiny preset of Qwen2.5-VL")
    parser.add_argument("--vocab", type=int, default=0, help="vocabulary rows (0: the preset's)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--batch-size", type=int, default=8, help="SFT rows; GRPO prompts")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    overrides = {"text_config": {"vocab_size": args.vocab}} if args.vocab else None
    model, processor = build_vlm("qwen2_5_vl", args.preset, args.image_size, overrides=overrides,
                                 device=device, dtype=dtype)  # fmt: skip
    model.train()
    collator = VLMCollator(processor)
    world = build_splits(
        seed=0, train_size=args.batch_size, probe_size=0, test_size=0, image_size=args.image_size
    )
    examples = world["train"][: args.batch_size]
    batch = {k: v.to(device) for k, v in collator(examples).items()}
    inputs = {k: v.to(device) for k, v in collator.prompts(examples).items()}
    generator = torch.Generator().manual_seed(0)
    rows = args.batch_size * args.group_size
    ids = torch.randint(10, len(collator.tokenizer), (rows, args.completion_tokens), generator=generator).to(
        device
    )
    mask = torch.ones_like(ids)

    def sft(lean: bool):
        def run():
            loss = answer_loss(model, batch, args.chunk) if lean else model(**batch).loss
            loss.backward()
            return loss.detach()

        return run

    def grpo(chunk: int):
        def run():
            logp = token_logprobs(model, inputs, ids, mask, 1.0, collator.media_token_ids, chunk)
            logp.sum().backward()
            return logp.detach()

        return run

    result = {
        "benchmark": "loss_memory",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": {
            "preset": args.preset,
            "vocab": model.config.text_config.vocab_size,
            "parameters": count_parameters(model),
            "dtype": str(dtype),
        },  # fmt: skip
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "sft_tokens": int(batch["attention_mask"].sum()),
        "sft_answer_tokens": int((batch["labels"] != -100).sum()),
        "grpo_completion_tokens": rows * args.completion_tokens,
    }
    for name, full_fn, lean_fn in (("sft", sft(False), sft(True)), ("grpo", grpo(0), grpo(args.chunk))):
        model.zero_grad(set_to_none=True)
        full, full_peak = peak_bytes(full_fn, device)
        model.zero_grad(set_to_none=True)
        lean, lean_peak = peak_bytes(lean_fn, device)
        model.zero_grad(set_to_none=True)
        result[name] = {
            "full_logits_peak_mib": full_peak / 2**20,
            "hidden_states_peak_mib": lean_peak / 2**20,
            "saved_fraction": 1 - lean_peak / full_peak,
            "max_abs_difference": float((full.float() - lean.float()).abs().max()),
        }
        print(name, json.dumps(result[name]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
