"""Command line: ``python -m train --config X.yaml key=value ...`` and ``lessonloop train ...``."""

from __future__ import annotations

import argparse
import os
import sys

from train.args import add_config_args, config_from
from train.config import ConfigError

__all__ = ["config_from", "main", "train_main"]  # config_from: re-exported for older callers


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Fine-tune a vision-language model.")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lessonloop", description="Fine-tune VLMs on their own failures.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_config_args(sub.add_parser("train", help="train (SFT) as a config says"))
    sub.add_parser("config", help="print every config key with its type, default and meaning")
    compare = sub.add_parser("compare", help="run the arms of a compare: section and report them")
    add_config_args(compare)
    for name, text in (("export", "write a run's pool as a Hugging Face dataset with a card"),
                       ("report", "write a run's rounds as one self-contained HTML page")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("run", help="the run folder (<run.output_dir>/<run.name>)")
        p.add_argument("--out", help="where to write (default: inside the run folder)")
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "compare":
        from train.compare import compare

        return compare(args)
    if args.command in ("export", "report"):
        from pathlib import Path

        if args.command == "export":
            from curriculum.export import export_run as write
        else:
            from curriculum.report import write_report as write
        try:
            path = write(Path(args.run), Path(args.out) if args.out else None)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(path)
        return 0
    if args.command == "config":
        from train.config import reference

        print("| key | type | default | meaning |\n|---|---|---|---|")
        for key, tp, default, doc in reference():
            print(f"| `{key}` | {tp} | `{default}` | {doc} |")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
