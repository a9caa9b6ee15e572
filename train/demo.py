"""The demo: the same run with and without the curriculum, side by side.

    python -m train.demo [--config configs/demo.yaml] [key=value ...]

Builds the tiny model once, then trains two runs of the config at the same time, one process
each (same seed, same steps, same data): ``<name>`` with the curriculum as configured and
``<name>-off`` with it disabled. The curriculum run's log is shown; the other goes to
``<run>-off.log``. At the end it prints per-skill test accuracy of both, with the start and the
blind-model prior, and what the rounds cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from curriculum.stats import t_interval
from train.cli import config_from
from train.evaluate import skill_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", default="configs/demo.yaml")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = config_from(args)
    if cfg is None:
        return 2
    if not cfg.curriculum.enabled:
        print(
            "error: the demo compares a curriculum run with one without; enable curriculum", file=sys.stderr
        )
        return 2
    import logging

    from train.data import load_splits
    from train.setup import ensure_tiny_model

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if cfg.model.build_tiny and not Path(cfg.model.name_or_path).exists():
        # Built once here, before the two runs start, so they do not race to build it.
        ensure_tiny_model(cfg, load_splits(cfg.data, cfg.run.seed).train)

    name = cfg.run.name
    off_name = f"{name}-off"
    # Two processes on the machine's cores: one thread each keeps them from fighting.
    threads = max(1, (os.cpu_count() or 2) // 2) if cfg.train.cpu else None
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-m", "train", "--config", args.config, *args.overrides]
    cfg.run_dir.parent.mkdir(parents=True, exist_ok=True)
    off_log = cfg.run_dir.parent / f"{off_name}.log"
    with open(off_log, "w") as log_file:
        off = subprocess.Popen(
            [*command, f"run.name={off_name}", "curriculum.enabled=false"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        on = subprocess.run([*command, f"run.name={name}"], env=env)
        off_code = off.wait()
    if on.returncode or off_code:
        print(
            f"error: a demo run failed (curriculum: exit {on.returncode}, without: exit {off_code}; see {off_log})"
        )
        return 1
    from train.compare_results import under_served

    print(report(cfg.run_dir, cfg.run_dir.parent / off_name, under_served(cfg)))
    return 0


def _marks(run_dir: Path) -> dict[str, tuple[str, bool]]:
    """Per test item of a run's final evaluation: its skill and whether the answer was right."""
    rows = [json.loads(line) for line in (run_dir / "eval_predictions.jsonl").read_text().splitlines()]
    return {r["id"]: (r["skill"] or "all", bool(r["correct"])) for r in rows}


def paired(on_dir: Path, off_dir: Path, skills: list[str] | None = None) -> dict | None:
    """The curriculum run's accuracy minus its twin's over the test items both answered (of
    ``skills``, or all), with a 95 % interval from the per-item differences (the same items, so
    the item-to-item spread cancels); None when no item qualifies."""
    on, off = _marks(on_dir), _marks(off_dir)
    diffs = [
        float(on[i][1]) - float(off[i][1])
        for i in sorted(on.keys() & off.keys())
        if skills is None or on[i][0] in skills
    ]
    return t_interval(diffs) if diffs else None


def _difference_line(name: str, d: dict | None) -> str:
    if d is None:
        return f"  {name}: no test items"
    if d["low"] is None:
        return f"  {name}: {d['mean']:+.3f} ({d['n']} item)"
    verdict = "beyond the noise" if d["low"] > 0 or d["high"] < 0 else "within the noise"
    return (
        f"  {name}: {d['mean']:+.3f}, 95 % interval {d['low']:+.3f} to {d['high']:+.3f} over "
        f"{d['n']} items ({verdict})"
    )


def report(on_dir: Path, off_dir: Path, weak: list[str] | None = None) -> str:
    """The side-by-side table of a curriculum run and its curriculum-off twin, then the
    curriculum's paired difference overall and on the under-served skills ``weak``."""
    on = json.loads((on_dir / "summary.json").read_text())
    off = json.loads((off_dir / "summary.json").read_text())
    columns = {"prior": on["prior_baseline"]}
    if on.get("start"):
        columns["start"] = on["start"]
    columns["no curr."] = off["end"]
    columns["curric."] = on["end"]
    counts = Counter(skill for skill, _ in _marks(on_dir).values())
    cur = on.get("curriculum", {})
    rounds = cur.get("rounds", [])
    lines = [
        "",
        f"Test accuracy by skill, {on['steps']} steps each, same seed: without the curriculum "
        f"({off_dir.name}) and with it ({on_dir.name}).",
        skill_table(columns, counts),
        "",
        "With minus without the curriculum, paired over the same test items:",
        _difference_line("overall", paired(on_dir, off_dir)),
        *(
            [_difference_line(f"under-served skills ({', '.join(weak)})", paired(on_dir, off_dir, weak))]
            if weak
            else []
        ),
        "",
        f"curriculum: {sum(r.get('status') == 'ok' for r in rounds)} rounds ({cur.get('mode')}), "
        f"pool {cur.get('pool_size')} examples, rounds took {cur.get('round_seconds')} s of the "
        f"{cur.get('loop_seconds')} s training loop ({100 * cur.get('round_share', 0):.0f} %).",
        f"round records, contact sheets: {on_dir / 'curriculum'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
