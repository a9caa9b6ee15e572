"""The vision tower's forward (and backward) on a batch of pictures: transformers' SDPA path, which
attends one picture or window at a time, against lessonloop's grouped attention
(``models/vision_attention.py``: one call per distinct segment length).

    python benchmarks/vision_tower.py --model models/bases/tiny-qwen2_5_vl --pictures 64 --out tower.json

Both ways run on the same model and pictures, alternating, ``--repeats`` times each after a
warm-up; the JSON holds the median milliseconds of a forward without autograd (a frozen tower, as
in evaluation) and of a forward and backward (a trained tower), the attention calls each makes
(counted by the profiler) and the largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from curriculum.types import as_pil  # noqa: E402
from curriculum.world import build_splits  # noqa: E402
from models import load_model  # noqa: E402
from models.load import find_vision_tower  # noqa: E402
from models.vision_attention import group_vision_attention, ungroup_vision_attention  # noqa: E402


def _features(out) -> torch.Tensor:
    out = getattr(out, "pooler_output", out)
    return torch.cat(list(out)) if isinstance(out, (list, tuple)) else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a Qwen2-VL or Qwen2.5-VL checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--pictures", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)
    _, tower = find_vision_tower(model)
    if not group_vision_attention(tower):
        raise SystemExit(f"{args.model}: no vision attention to group (a Qwen-VL model under SDPA is needed)")
    world = build_splits(
        seed=0, train_size=args.pictures, probe_size=0, test_size=0, image_size=args.image_size
    )
    pixels = processor.image_processor(
        images=[as_pil(ex.image) for ex in world["train"]], return_tensors="pt"
    )
    pixel_values = pixels["pixel_values"].to(device, dtype=next(tower.parameters()).dtype)
    grid = pixels["image_grid_thw"].to(device)

    def set_way(way: str) -> None:
        (group_vision_attention if way == "grouped" else ungroup_vision_attention)(tower)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return _features(tower(pixel_values, grid_thw=grid))

    def forward_backward() -> None:
        tower.zero_grad(set_to_none=True)
        _features(tower(pixel_values, grid_thw=grid)).float().square().mean().backward()

    def seconds(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    ways = ("native", "grouped")
    outputs, calls = {}, {}
    for way in ways:
        set_way(way)
        outputs[way] = forward()
        forward_backward()  # warm-up: every shape met once
        with torch.profiler.profile() as prof:
            forward()
        calls[way] = sum(
            e.count for e in prof.key_averages() if e.key == "aten::scaled_dot_product_attention"
        )
    times = {way: {"forward": [], "forward_backward": []} for way in ways}
    for _ in range(args.repeats):
        for way in ways:
            set_way(way)
            times[way]["forward"].append(seconds(forward))
            times[way]["forward_backward"].append(seconds(forward_backward))
    result = {
        "benchmark": "vision_tower",
        "args": vars(args),
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "grid": pixels["image_grid_thw"][0].tolist(),
        "ways": {
            way: {
                "attention_calls_per_forward": calls[way],
                **{f"{part}_ms": round(1000 * statistics.median(s), 2) for part, s in times[way].items()},
            }
            for way in ways
        },
        "max_abs_difference": float((outputs["grouped"].float() - outputs["native"].float()).abs().max()),
    }
    result["speedup"] = {
        part: round(result["ways"]["native"][f"{part}_ms"] / result["ways"]["grouped"][f"{part}_ms"], 2)
        for part in ("forward", "forward_backward")
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["ways"]), "speedup", result["speedup"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
