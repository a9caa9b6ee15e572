"""Where one SFT step's time goes: building the batch, the forward and backward passes, the
optimizer, and within them the operators, on the host and on the GPU.

    python benchmarks/step_profile.py --preset medium --batch-size 64 --out step_profile_medium.json
    python benchmarks/step_profile.py --model models/bases/tiny-qwen2_5_vl --device cpu --out /tmp/p.json

The model is a checkpoint (``--model``) or a tiny Qwen2.5-VL built at ``--preset``; world items
at ``--image-size`` px go through lessonloop's collator and its SFT loss (``train.loss_chunk``
``--loss-chunk``), AdamW on whatever trains (``--freeze-vision``: the tower frozen, as the claim
runs train). After ``--warmup`` steps, ``--steps`` steps are timed twice: once as the loop runs them
(no synchronisation inside a step: the wall time per step), once with the device synchronised at
each phase boundary (the time of each phase), and once more under ``torch.profiler``: the operators
with the most host time and the most device time, the kernels launched per step, and the share of
the step's wall time the device was busy. ``--sdpa-backends flash,efficient,math`` limits the
attention kernels PyTorch may pick (``model.sdpa_backends`` in a run). A small model whose device is idle most of the step is
bound by the host (launching kernels, building batches); the operator tables say which.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from curriculum.world import build_splits  # noqa: E402
from models import build_tiny_vlm, count_parameters, load_model  # noqa: E402
from models.sdpa import allow_sdpa_backends, allowed_sdpa_backends  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.losses import answer_loss  # noqa: E402
from train.packing import RopePositions  # noqa: E402

PHASES = ("batch", "to_device", "forward", "backward", "optimizer")


def _top(events, key: str, n: int, steps: int) -> list[dict]:
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:n]
    return [{"op": e.key, "calls_per_step": e.count / steps, "ms_per_step": getattr(e, key) / 1000 / steps}
            for e in rows if getattr(e, key) > 0]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint folder (default: a tiny model built at --preset)")
    parser.add_argument("--preset", default="tiny", help="tiny, small or medium, when --model is not given")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loss-chunk", type=int, default=1024)
    parser.add_argument("--freeze-vision", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--sdpa-backends", help="attention kernels allowed (comma-separated; models.sdpa names)"
    )
    parser.add_argument("--top", type=int, default=15, help="operators listed per table")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.sdpa_backends:
        try:
            allow_sdpa_backends(args.sdpa_backends.split(","))
        except ValueError as err:
            parser.error(f"--sdpa-backends: {err}")

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n_items = args.batch_size * (args.warmup + 3 * args.steps)
    world = build_splits(seed=0, train_size=n_items, probe_size=0, test_size=0, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            corpus = [t for ex in world["train"] for t in (ex.question, ex.answer)]
            path = str(build_tiny_vlm(Path(tmp) / "model", preset=args.preset, image_size=args.image_size,
                                      corpus=corpus, seed=0))  # fmt: skip
        model, processor = load_model(
            path, dtype=args.dtype, device=args.device, freeze_vision=args.freeze_vision
        )
    model.train()
    collator = VLMCollator(processor, question_first=True)
    positions = RopePositions.of(model)  # the loop's batches carry their M-RoPE positions

    def build(examples: list) -> dict[str, torch.Tensor]:
        batch = collator(examples)
        return positions(batch) if positions is not None else batch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = iter(world["train"][i : i + args.batch_size] for i in range(0, n_items, args.batch_size))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def step(phases: dict[str, list[float]] | None = None) -> None:
        marks = [time.perf_counter()]

        def mark() -> None:
            if phases is not None:
                sync()
                marks.append(time.perf_counter())

        built = build(next(batches))
        mark()
        batch = {k: v.to(device, non_blocking=True) for k, v in built.items()}
        mark()
        loss = answer_loss(model, batch, args.loss_chunk)
        mark()
        loss.backward()
        mark()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark()
        if phases is not None:
            for name, a, b in zip(PHASES, marks[:-1], marks[1:], strict=True):
                phases[name].append(b - a)

    for _ in range(args.warmup):
        step()
    sync()
    walls = []
    for _ in range(args.steps):  # as the loop runs them: nothing waits for the device inside a step
        t0 = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
    sync()
    wall = statistics.median(walls)
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for _ in range(args.steps):
        step(phases)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if cuda else []
    )
    sync()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync()
    profiled_wall = (time.perf_counter() - t0) / args.steps
    events = prof.key_averages()
    result = {
        "benchmark": "step_profile",
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sdpa_backends": allowed_sdpa_backends(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "parameters": count_parameters(model),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "step_ms": round(1000 * wall, 2),
        "samples_per_s": round(args.batch_size / wall, 1),
        "phase_ms_synchronised": {k: round(1000 * statistics.median(v), 2) for k, v in phases.items()},
        "profiled_step_ms": round(1000 * profiled_wall, 2),
        "host_ops": _top(events, "self_cpu_time_total", args.top, args.steps),
    }
    if cuda:
        kernels = [e for e in events if getattr(e, "self_device_time_total", 0) > 0]
        busy = sum(e.self_device_time_total for e in kernels) / 1e6 / args.steps
        result["device_ops"] = _top(events, "self_device_time_total", args.top, args.steps)
        result["device_busy_ms_per_step"] = round(1000 * busy, 2)
        result["device_busy_fraction"] = round(busy / profiled_wall, 3)
        result["kernel_launches_per_step"] = (
            sum(
                e.count
                for e in events
                if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel")
            )
            / args.steps
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_ops")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
