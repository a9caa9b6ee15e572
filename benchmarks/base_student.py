"""How well does a base student perceive? Its accuracy on every skill of a uniform held-out split.

    python benchmarks/base_student.py --model models/bases/tiny-qwen2_5_vl \
        --per-skill 500 --out benchmarks/results/base_tiny_cpu.json

The held-out items are the test split of world seed ``--world-seed`` with ``--per-skill`` items of
each of the nine skills, parameters uniform over their full ranges (distractors, sizes, overlap,
counts 1 to 9). The model answers by greedy generation, question first unless the base's record
says otherwise; each skill's accuracy is reported with its standard error, sqrt(p (1 - p) / n),
next to the prior (always the skill's most common answer in 2,000 uniform items of it drawn from a
stream of their own: what a model blind to the image reaches).

``--from-run runs/base-tiny`` first installs a finished run of ``configs/base_tiny.yaml`` as the
base: it copies the run's final model into ``--model`` and writes ``base.json`` there, the record
of how it was made (the run's config, steps, wall time, final test table, the vision pretraining's
record, the machine). The script copies that record into its result and, from the world options it
names, rebuilds the base's train split and leaves out the held-out items whose picture is in it
(named in the result).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curriculum.scoring import is_correct  # noqa: E402
from curriculum.types import Example, image_hash  # noqa: E402
from curriculum.world import build_splits, skill_names  # noqa: E402
from models import count_parameters, load_model  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.evaluate import generate_answers, prior_baseline  # noqa: E402

PERCEPTION = ("shape", "colour", "count")


def held_out(world_seed: int, per_skill: int, image_size: int) -> list[Example]:
    """The uniform test split of ``world_seed``: ``per_skill`` items of each skill."""
    skills = skill_names()
    return build_splits(world_seed, 0, 0, per_skill * len(skills), image_size)["test"]


def uniform_prior(test: list[Example], image_size: int) -> dict[str, float]:
    """Per skill, the accuracy of always giving its most common answer among 2,000 uniform items
    per skill (world seed 999,999's test stream, which no base trains on)."""
    sample = build_splits(999_999, 0, 0, 2000 * len(skill_names()), image_size)["test"]
    prior = prior_baseline(sample, test)
    return {k[len("skill/") :]: v for k, v in prior.items() if k.startswith("skill/")}


def in_train(record: dict[str, Any], test: list[Example]) -> set[str] | None:
    """Ids of the held-out items whose image is also in the base's train split, rebuilt from its
    record's world options (None when the record does not name them). The splits of one build
    share no image, but the held-out set here is larger than the base's own test split, and a
    40,000-item train split drawn with uniform parameters repeats a few of its simplest pictures."""
    world = record.get("config", {}).get("data", {}).get("world")
    if not world:
        return None
    train = build_splits(
        world["seed"],
        world["train_size"],
        world["probe_size"],  # train is drawn after test and probe, away from their pictures
        world["test_size"],
        world["image_size"],
        skills=world.get("skills") or None,
        train_mix=world.get("train_mix", "natural"),
        train_skills=world.get("train_skills") or None,
    )["train"]
    seen = {image_hash(ex.image) for ex in train}
    return {ex.id for ex in test if image_hash(ex.image) in seen}


def machine() -> dict[str, Any]:
    """What the measurement ran on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def store_bfloat16(folder: Path) -> None:
    """Rewrite a model folder's float32 weights in bfloat16 (half the file: the tiny base is 8.6 MB
    so); it is loaded in float32 again, and measured after the rounding, as it ships."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    for holder in (config, *(v for v in config.values() if isinstance(v, dict))):
        for key in ("dtype", "torch_dtype"):
            if key in holder:
                holder[key] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def install(run_dir: Path, folder: Path) -> dict[str, Any]:
    """Copy the final model of a finished base run into ``folder`` (replacing it) and write its
    record, ``base.json``; returns the record."""
    if not (run_dir / "summary.json").exists():
        raise SystemExit(f"--from-run {run_dir}: not a finished run (no summary.json there)")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    init = Path(config["model"]["name_or_path"]) / "vision_pretraining.json"
    record = {
        "command": "make base",
        "config": config,
        "steps": summary["steps"],
        "wall_seconds": summary["wall_seconds"],
        "final_test": {
            k: round(v, 4) for k, v in summary["end"].items() if k == "accuracy" or k.startswith("skill/")
        },
        "vision_pretraining": json.loads(init.read_text()) if init.exists() else None,
        "machine": machine(),
        "built": time.strftime("%Y-%m-%d"),
    }
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(run_dir / "model", folder)
    store_bfloat16(folder)
    (folder / "base.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/bases/tiny-qwen2_5_vl")
    parser.add_argument("--per-skill", type=int, default=500)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--from-run", help="first install this finished base run as --model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    folder = Path(args.model)
    if args.from_run:
        install(Path(args.from_run), folder)
    record = json.loads((folder / "base.json").read_text()) if (folder / "base.json").exists() else {}
    question_first = record.get("config", {}).get("data", {}).get("question_first", True)
    model, processor = load_model(str(folder), dtype="float32", device=args.device)
    collator = VLMCollator(processor, question_first=question_first)
    test = held_out(args.world_seed, args.per_skill, args.image_size)
    seen = in_train(record, test)
    test = [ex for ex in test if ex.id not in (seen or set())]  # measured on pictures it never saw

    t0 = time.perf_counter()
    answers, _ = generate_answers(model, collator, test, args.batch, 4, torch.device(args.device))
    seconds = time.perf_counter() - t0
    marks: dict[str, list[bool]] = {}
    for answer, ex in zip(answers, test, strict=True):
        marks.setdefault(ex.skill or "", []).append(is_correct(answer, ex.answer))
    prior = uniform_prior(test, args.image_size)
    skills = {}
    for skill, hits in sorted(marks.items()):
        p, n = sum(hits) / len(hits), len(hits)
        skills[skill] = {"n": n, "accuracy": round(p, 4), "stderr": round(math.sqrt(p * (1 - p) / n), 4),
                         "prior": round(prior.get(skill, 0.0), 4)}  # fmt: skip
    every = [m for hits in marks.values() for m in hits]
    result = {
        "what": "base student: greedy accuracy per skill on a uniform held-out split (test split of the world seed)",
        "model": str(folder),
        "parameters": count_parameters(model),
        "world_seed": args.world_seed,
        "per_skill": args.per_skill,
        "question_first": question_first,
        "skills": skills,
        "overall": round(sum(every) / len(every), 4),
        "perception_min": min(skills[s]["accuracy"] for s in PERCEPTION if s in skills),
        "left_out_as_seen_in_train": None if seen is None else sorted(seen),
        "eval_seconds": round(seconds, 1),
        "machine": machine(),
        "build": record,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    width = max(map(len, skills))
    print(f"{'skill':<{width}}  {'n':>5}  {'accuracy':>8}  {'stderr':>6}  {'prior':>6}")
    for skill, row in skills.items():
        print(
            f"{skill:<{width}}  {row['n']:>5}  {row['accuracy']:>8.3f}  {row['stderr']:>6.3f}  {row['prior']:>6.3f}"
        )
    print(
        f"overall {result['overall']:.3f} on {len(test)} items"
        + (f" ({len(seen)} left out: their pictures are in the base's train split)" if seen else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
