"""The command-line arguments every command that trains shares, and the config they name.

``lessonloop train``, ``python -m train``, ``lessonloop compare`` and the demo all take a config
file and dotted overrides. This module sits below both ``train.cli`` (which dispatches the
commands) and ``train.compare`` (one of them), so neither has to import the other.
"""

from __future__ import annotations

import argparse
import sys

from train.config import Config, ConfigError, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the positional ``key=value`` overrides."""
    parser.add_argument("--config", "-c", help="YAML config file (defaults apply without one)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=200 run.name=try2")


def config_from(args: argparse.Namespace) -> Config | None:
    """The config of ``args.config`` and ``args.overrides``; None once the reason it is refused
    has been printed (every command then exits with 2)."""
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
