"""Greedy answering speed: items/s of the built-in world's test questions answered by a model.

    python benchmarks/generation.py --model runs/models/qwen2_5_vl_3b --out benchmarks/results/generation.json

Four ways, the same prompts and greedy decoding (``eval.max_new_tokens`` new tokens at most):

* ``one_at_a_time``: transformers' ``generate`` on one prompt at a time;
* ``batched_generate``: ``generate`` on ``--batch-size`` left-padded prompts at once (lessonloop's
  ``eval.decoder: generate``);
* ``static``: lessonloop's decoder (``train/decode.py``, ``eval.decoder: static``): the key-value
  cache allocated once for the longest answer and written in place, and on a GPU the next batch's
  prompts built in a thread meanwhile, as evaluation does;
* ``static_compiled`` (CUDA only): the same with the decoding step compiled (``eval.compile``).

Each way answers its items twice and the second pass is timed (the first, ``first_pass_s``, meets
every shape once: kernel selection, and for ``static_compiled`` the compiling), with the device
synchronised; ``agree_with_batched_generate``
is the share of answers equal to ``batched_generate``'s (the same by construction; on a GPU in
bf16, batches of other shapes may round differently). A CPU run of a tiny model checks the script:

    python benchmarks/generation.py --model runs/models/tiny-qwen2_5_vl --device cpu --items 32 --out /tmp/gen.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from curriculum.world import build_splits  # noqa: E402
from models import count_parameters, load_model  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.evaluate import generate_answers  # noqa: E402


def timed(device: torch.device, fn, *args) -> tuple[object, float]:
    """``fn(*args)`` and its wall seconds, the device synchronised on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a checkpoint folder or hub name")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/generation.json"))
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--one-at-a-time-items", type=int, default=32, help="items for the unbatched way")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)
    model.eval()
    collator = VLMCollator(processor)
    items = build_splits(seed=0, train_size=0, probe_size=0, test_size=args.items, image_size=args.image_size)
    test = items["test"]

    def answer(examples, batch, decoder="generate", compile=False):
        # The two generate ways are the peer (transformers alone): no prompts built ahead for them.
        return generate_answers(model, collator, examples, batch, args.max_new_tokens, device,
                                decoder=decoder, compile=compile, ahead=None if decoder == "static" else False)  # fmt: skip

    ways = {
        "one_at_a_time": (test[: args.one_at_a_time_items], 1, "generate", False),
        "batched_generate": (test, args.batch_size, "generate", False),
        "static": (test, args.batch_size, "static", False),
    }
    if device.type == "cuda":
        ways["static_compiled"] = (test, args.batch_size, "static", True)
    results, reference = {}, None
    for name, (examples, batch, decoder, compile) in ways.items():
        # A first pass meets every shape once (kernel selection, compiling); the second is timed.
        _, first = timed(device, answer, examples, batch, decoder, compile)
        (answers, generated), seconds = timed(device, answer, examples, batch, decoder, compile)
        row = {"items": len(examples), "batch_size": batch, "seconds": round(seconds, 3), "first_pass_s":
               round(first, 3), "items_per_s": len(examples) / seconds, "generated_tokens_per_s": generated / seconds}  # fmt: skip
        if name == "batched_generate":
            reference = answers
        elif reference is not None:
            row["agree_with_batched_generate"] = sum(
                a == b for a, b in zip(answers, reference[: len(answers)], strict=True)
            ) / len(answers)
        results[name] = row
        print(name, json.dumps(row), flush=True)
    base = results["batched_generate"]["items_per_s"]
    result = {
        "benchmark": "generation",
        "model": {"path": args.model, "parameters": count_parameters(model), "dtype": str(model.dtype)},
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "ways": results,
        "speedup_over_batched_generate": {k: r["items_per_s"] / base for k, r in results.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["speedup_over_batched_generate"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
