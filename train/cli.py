"""Command line: ``python -m train --config X.yaml key=value ...`` and ``lessonloop <command> ...``
(train, compare, report, export, config: ``COMMANDS`` says what each does)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from train.args import add_config_args, config_from
from train.config import ConfigError

__all__ = ["config_from", "main", "train_main"]  # config_from: re-exported for older callers


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=COMMANDS["train"][1])
    add_config_args(parser)
    args = parser.parse_args(argv)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if cfg is None:
        return 2
    from train.loop import run

    try:
        run(cfg)
    except ConfigError as err:  # refused at start-up (preflight), before anything trained
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # gloo workers sometimes abort in interpreter teardown after their work is done;
        # leaving the process group and exiting at once avoids it.
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


COMMANDS = {  # name -> (one line for the command list, what its own --help says)
    "train": (
        "train a model as a config says: SFT or GRPO, with the online curriculum when enabled",
        "Train a vision-language model as a config says: supervised fine-tuning (train.mode=sft) or GRPO "
        "(train.mode=grpo), with the online curriculum when curriculum.enabled is true: every curriculum.every "
        "steps it probes the model, diagnoses its failures, makes examples aimed at them and mixes them into "
        "training. Writes <run.output_dir>/<run.name>/: checkpoints, metrics.jsonl, summary.json, the "
        "curriculum's rounds and pool, the model. (lessonloop train and python -m train are one command.)",
    ),
    "compare": (
        "train every arm of a config's compare: section over its seeds, then report them",
        "Train every arm of the config's compare: section (base, targeted, real, untargeted, replay, "
        "rebalanced) over compare.seeds, the matched arms adding as many examples as the curriculum did, then "
        "write compare.json, report.md, report.html and the plots. Finished runs are kept, interrupted ones "
        "resume.",
    ),
    "report": (
        "write one HTML page of a run (did the curriculum help?) or of a compare folder",
        "Write one self-contained HTML page (inline images, no scripts, opens offline). Of a run folder: "
        "per-skill accuracy at the end against the image-blind prior and the run without the curriculum "
        "(a <name>-off folder beside it, or the base arm of its compare), warnings, the weaknesses followed "
        "across rounds, and each round. Of a compare folder (one holding compare.json): the claim with its "
        "paired differences and 95 % intervals, the plots, per-skill accuracy and cost per arm.",
    ),
    "export": (
        "write a run's pool as a Hugging Face dataset with a card",
        "Write every example the run's curriculum committed (live or retired) as a Hugging Face dataset "
        "(datasets.load_from_disk reads it back) with a dataset card: how the pool was made, a row per round, "
        "counts per skill, generator and answer check.",
    ),
    "config": (
        "print every config key with its type, default and meaning",
        "Print every config key with its type, default and meaning, as a markdown table.",
    ),
}

EXAMPLES = """examples:
  lessonloop train --config configs/demo.yaml train.steps=200
  lessonloop compare --config configs/compare_demo.yaml
  lessonloop report runs/demo           # runs/demo/report.html
  lessonloop report runs/compare_demo   # a compare folder: runs/compare_demo/report.html
  lessonloop export runs/demo           # runs/demo/export/
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lessonloop",
        description="Fine-tune vision-language models on a curriculum written from their own failures.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    parsers = {
        name: sub.add_parser(name, help=short, description=long) for name, (short, long) in COMMANDS.items()
    }
    add_config_args(parsers["train"])
    add_config_args(parsers["compare"])
    parsers["report"].add_argument(
        "run", help="a run folder (<run.output_dir>/<run.name>) or a compare folder (holding compare.json)"
    )
    parsers["report"].add_argument("--out", help="where to write (default: report.html inside the folder)")
    parsers["export"].add_argument("run", help="the run folder (<run.output_dir>/<run.name>)")
    parsers["export"].add_argument("--out", help="where to write (default: export/ inside the run folder)")
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "compare":
        from train.compare import compare

        return compare(args)
    if args.command in ("export", "report"):
        return _write(args.command, Path(args.run), Path(args.out) if args.out else None)
    if args.command == "config":
        from train.config import reference

        print("| key | type | default | meaning |\n|---|---|---|---|")
        for key, tp, default, doc in reference():
            print(f"| `{key}` | {tp} | `{default}` | {doc} |")
        return 0
    return 2


def _write(command: str, folder: Path, out: Path | None) -> int:
    """``export`` or ``report`` of ``folder``: prints the path written, or the one-line reason it
    cannot be (exit 2). A folder holding ``compare.json`` gets the compare report."""
    if (
        command == "report"
        and (folder / "compare_config.yaml").is_file()
        and not (folder / "compare.json").is_file()
    ):
        print(f"error: {folder} is a compare folder without compare.json yet: compare writes it (and "
              "report.html) when its runs end; a run inside it has its own report", file=sys.stderr)  # fmt: skip
        return 2
    if command == "export":
        from curriculum.export import export_run as write
    elif (folder / "compare.json").is_file():
        from train.compare_page import report_folder as write
    else:
        from curriculum.report import write_report as write
    try:
        path = write(folder, out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
