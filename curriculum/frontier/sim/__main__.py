"""Start the simulated frontier, or point a run's config at it.

    lessonloop-sim [--port 8765] [--seed 0] [--settings sim.yaml] [--proposal-error 0.1 ...]
    lessonloop-sim config configs/X.yaml [--url http://127.0.0.1:8765/v1] > dry_run.yaml

The first serves until interrupted (also ``python -m curriculum.frontier.sim``); every setting of
``SimConfig`` is a flag (``--judge-error 0.2``) or a key of the ``--settings`` YAML file. The second
prints the config with every frontier endpoint (analyst, committee, judges, image model) sent to
the simulator under the key variable ``LESSONLOOP_SIM_KEY`` and the reply cache off, prices and
budgets untouched: a dry run of the config's calls, spending and timing before paying for them.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from curriculum.frontier.sim.config import SimConfig
from curriculum.frontier.sim.server import SimServer

KEY_ENV = "LESSONLOOP_SIM_KEY"
DEFAULT_PORT = 8765


def dry_run_config(config: dict[str, Any], url: str) -> dict[str, Any]:
    """A run config (as read from YAML) whose frontier endpoints all call the simulator at ``url``."""
    out = json.loads(json.dumps(config))
    frontier = out.setdefault("curriculum", {}).setdefault("frontier", {})

    def point(endpoint: dict[str, Any]) -> dict[str, Any]:
        return {**endpoint, "base_url": url, "api_key_env": KEY_ENV}

    frontier.update(point(frontier))
    for name in ("judges", "committee"):
        if frontier.get(name):
            frontier[name] = [point(dict(e)) for e in frontier[name]]
    if frontier.get("image_model"):
        frontier["image_model"] = point(dict(frontier["image_model"]))
    frontier["cache"] = None  # simulated replies must never answer a real run from the cache
    out["curriculum"]["analyzer"] = "openai"
    return out


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lessonloop-sim", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--settings", help="YAML file of simulator settings (flags override it)")
    for f in fields(SimConfig):
        kind = int if f.type in ("int", int) else str if f.type in ("str", str) else float
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None, dest=f.name)
    args = parser.parse_args(argv)
    settings: dict[str, Any] = {}
    if args.settings:
        settings = yaml.safe_load(Path(args.settings).read_text()) or {}
    settings.update(
        {f.name: getattr(args, f.name) for f in fields(SimConfig) if getattr(args, f.name) is not None}
    )
    try:
        config = SimConfig.from_dict(settings)
    except (TypeError, ValueError) as err:
        print(f"lessonloop-sim: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill also prints what was served
    server = SimServer(config, args.host, args.port).start()
    print(
        f"simulated frontier at {server.url} (seed {config.seed}); any model name, any key; Ctrl-C stops it"
    )
    print(f"settings: {json.dumps(config.to_dict())}", flush=True)
    server.serve_forever()
    print(json.dumps(server.stats(), indent=1))
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lessonloop-sim config", description="print a dry-run config")
    parser.add_argument("config", help="a run config (YAML)")
    parser.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}/v1")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text()) or {}
    print(f"# {args.config} with every frontier endpoint at the simulator {args.url}")
    print(f"# export {KEY_ENV}=sim, start lessonloop-sim, then: python -m train --config <this file>")
    print(yaml.safe_dump(dry_run_config(raw, args.url), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["config"]:
        return _config(argv[1:])
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
