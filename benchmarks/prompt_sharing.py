"""What encoding each GRPO prompt once saves: both ways of a step, timed in one process.

    python benchmarks/prompt_sharing.py --out sharing.json [--preset tiny --image-size 64 \
        --prompts 16 --group 8 --new-tokens 4 --repeats 10 --device cpu --dtype float32]

A GRPO step samples ``--group`` completions for each of ``--prompts`` prompts (with their images)
and then scores them with a forward and backward pass. Each half is timed two ways on the same
model, prompts and completions, alternating so that drift hits both alike:

- rollout: ``generate`` with ``num_return_sequences`` (every copy of a prompt encoded), against
  ``train.prompt_sharing.sample_completions`` (each prompt encoded once, its cache repeated);
- update: ``train.prompt_sharing.full_logits`` over a copy of the prompt per completion, against
  ``train.prompt_sharing.shared_prompt_logits``, each followed by the backward pass of a GRPO-like loss.

Reported: median seconds of each, the ratios, peak GPU memory of each update (on CUDA), and the
largest difference between the two updates' log-probabilities as a check that they compute the
same thing. The model is built from random weights (``models.build_vlm``), nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curriculum.world import build_splits  # noqa: E402
from models import build_vlm, count_parameters  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.prompt_sharing import full_logits, repeat_prompts, sample_completions, shared_prompt_logits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model, processor = build_vlm("qwen2_5_vl", args.preset, image_size=args.image_size, seed=0)
    model.to(device=device, dtype=getattr(torch, args.dtype)).train()
    collator = VLMCollator(processor, question_first=True)
    prompts = build_splits(0, 0, 0, args.prompts, args.image_size)["test"]
    inputs = {k: v.to(device) for k, v in collator.prompts(prompts).items()}
    vocab = len(collator.tokenizer)
    ids = torch.randint(10, vocab - 10, (args.prompts * args.group, args.new_tokens), device=device)
    mask = torch.ones_like(ids)
    weights = torch.randn(ids.shape, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def update(shared: bool) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        if shared:
            logits = shared_prompt_logits(model, inputs, ids, mask, args.group)
        else:
            logits = full_logits(model, repeat_prompts(inputs, args.group), ids, mask)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        (logp * weights).sum().backward()
        return logp.detach()

    @torch.no_grad()
    def rollout(shared: bool) -> None:
        model.eval()
        if shared:
            sample_completions(model, inputs, args.group, args.new_tokens, 1.0)
        else:
            model.generate(**inputs, do_sample=True, top_k=0, num_return_sequences=args.group,
                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                           pad_token_id=collator.tokenizer.pad_token_id)  # fmt: skip
        model.train()

    gap = float((update(True) - update(False)).abs().max())
    times: dict[str, list[float]] = {
        k: [] for k in ("rollout_generate", "rollout_shared", "update_full", "update_shared")
    }
    peaks: dict[str, float] = {}
    for i in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, run in (("rollout_generate", lambda: rollout(False)), ("rollout_shared", lambda: rollout(True)),
                          ("update_full", lambda: update(False)), ("update_shared", lambda: update(True))):  # fmt: skip
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            if i:
                times[name].append(time.perf_counter() - t0)
            if device.type == "cuda" and name.startswith("update"):
                peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "args": vars(args),
        "environment": {
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },  # fmt: skip
        "parameters": count_parameters(model),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "median_s": median,
        "ratios": {
            "rollout_generate_over_shared": median["rollout_generate"] / median["rollout_shared"],
            "update_full_over_shared": median["update_full"] / median["update_shared"],
        },
        "peak_mem_gib": peaks or None,
        "max_logprob_difference": gap,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({"median_s": median, "ratios": result["ratios"], "peak_mem_gib": peaks or None,
                      "max_logprob_difference": gap}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
