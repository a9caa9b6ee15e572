"""``lessonloop compare``: did the curriculum beat just adding real data?

    lessonloop compare --config configs/compare_demo.yaml [key=value ...]

One config is the base of every arm; ``compare`` names the arms and seeds. Every arm trains the
same steps from the same model initialisation (per seed) and, where it adds examples, adds as
many as the curriculum did:

- ``base``: the real data only (curriculum off);
- ``targeted``: the curriculum as configured (failures analysed, generators aimed at them);
- ``real``: as many new real examples (the real data's own distribution) as ``targeted`` kept;
- ``untargeted``: the same generators with uniform specs, no failure analysis, same filters;
- ``replay``: hard real examples only (train items the student check keeps).

``targeted`` runs first (with ``base``); its kept count per round becomes the others'
``curriculum.quota`` and their budget is ``compare.oversample`` times its own, so a seed's matched
arms start as soon as its targeted run is done. Runs go one after another or ``compare.parallel``
at once (round-robin over the GPUs when there are any: small runs can share one); a finished run
is not run again and an interrupted one resumes. Everything lands under ``<run.output_dir>/<run.name>/``:
one folder per run (``<arm>-s<seed>``), ``logs/``, ``compare.json``, ``report.md`` and the plots
``accuracy_vs_steps.png`` and ``accuracy_vs_added.png``; with W&B on, all runs share one group
and a report run holds the table and the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.config import Config, dump, load_config

ARMS: dict[str, list[str]] = {
    "base": ["curriculum.enabled=false"],
    "targeted": ["curriculum.enabled=true", "curriculum.source=diagnosed"],
    "real": ["curriculum.enabled=true", "curriculum.source=real"],
    "untargeted": ["curriculum.enabled=true", "curriculum.source=uniform"],
    "replay": ["curriculum.enabled=true", "curriculum.source=hard_real"],
}
MATCHED = ("real", "untargeted", "replay")  # arms whose added count follows the targeted arm


@dataclass
class Job:
    arm: str
    seed: int
    overrides: list[str]

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"


def finished(run_dir: Path, steps: int) -> bool:
    path = run_dir / "summary.json"
    return path.is_file() and json.loads(path.read_text()).get("steps") == steps


def rounds_of(run_dir: Path) -> list[dict[str, Any]]:
    """Every round record of a run, in order."""
    out = []
    for path in sorted((run_dir / "curriculum").glob("round_*/round.json")):
        out.append(json.loads(path.read_text()))
    return out


def kept_per_round(run_dir: Path) -> list[int]:
    """Examples each round added (0 for a failed round), indexed by round number - 1."""
    kept: dict[int, int] = {}
    for r in rounds_of(run_dir):
        kept[r["round"]] = int(r.get("metrics", {}).get("curriculum/kept", 0)) if r["status"] == "ok" else 0
    return [kept.get(k, 0) for k in range(1, max(kept, default=0) + 1)]


class Compare:
    def __init__(self, cfg: Config, config_path: str | None, overrides: list[str]) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = list(overrides)
        self.root = cfg.run_dir
        self.logs = self.root / "logs"

    # ------------------------------------------------------------------ runs

    def job(self, arm: str, seed: int, quota: list[int] | None = None) -> Job:
        cfg = self.cfg
        extra = [
            f"run.output_dir={self.root}",
            f"run.name={arm}-s{seed}",
            f"run.seed={seed}",
            "train.resume=auto",
            *ARMS[arm],
        ]
        if cfg.model.build_tiny:  # a model built from scratch: one initialisation per seed
            extra.append(f"model.name_or_path={self.root / 'models' / f'seed{seed}'}")
        if cfg.wandb.enabled:
            extra += [f"wandb.group={cfg.wandb.group or cfg.run.name}", f"wandb.tags=[{arm}]"]
        if quota is not None:
            budget = max(1, round(cfg.curriculum.budget * cfg.compare.oversample))
            extra += [f"curriculum.quota=[{','.join(map(str, quota))}]", f"curriculum.budget={budget}"]
        return Job(arm, seed, extra)

    def command(self, job: Job) -> list[str]:
        config = ["--config", self.config_path] if self.config_path else []
        return [sys.executable, "-m", "train", *config, *self.overrides, *job.overrides]

    def run_jobs(self, jobs: list[Job], then: Callable[[Job], list[Job]] | None = None) -> dict[str, int]:
        """Run the jobs not yet finished, ``compare.parallel`` at a time; exit codes by name.

        ``then(job)`` is called as each job ends (finished before or now) and returns the jobs that
        may start after it: the matched arms of a seed start as soon as its targeted run is done.
        """
        todo: deque[Job] = deque()
        done: list[Job] = []

        def add(new: list[Job]) -> None:
            for j in new:
                if finished(self.root / j.name, self.cfg.train.steps):
                    print(f"compare: {j.name} already finished, kept", flush=True)
                    done.append(j)
                else:
                    todo.append(j)

        add(jobs)
        gpus = self._gpus()
        slots = self.cfg.compare.parallel
        threads = max(1, (os.cpu_count() or 2) // slots)
        running: dict[int, tuple[Job, subprocess.Popen, Any, float]] = {}
        codes: dict[str, int] = {}
        self.logs.mkdir(parents=True, exist_ok=True)
        while todo or running or done:
            while done:
                add(then(done.pop(0)) if then else [])
            free = [s for s in range(slots) if s not in running]
            while todo and free:
                slot, job = free.pop(0), todo.popleft()
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                if gpus:  # round-robin: several small runs may share a GPU
                    env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
                log = open(self.logs / f"{job.name}.log", "a")  # noqa: SIM115 (closed when it ends)
                print(f"compare: {job.name} started (log {self.logs / f'{job.name}.log'})", flush=True)
                proc = subprocess.Popen(self.command(job), env=env, stdout=log, stderr=subprocess.STDOUT)
                running[slot] = (job, proc, log, time.perf_counter())
            if not running:
                continue
            time.sleep(0.5)
            for slot, (job, proc, log, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                codes[job.name] = proc.returncode
                state = "finished" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"compare: {job.name} {state} in {time.perf_counter() - t0:.0f} s", flush=True)
                del running[slot]
                if proc.returncode == 0:
                    done.append(job)
        return codes

    def _gpus(self) -> list[str]:
        if self.cfg.train.cpu:
            return []
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            return [g for g in visible.split(",") if g.strip()]
        try:
            import torch

            return [str(i) for i in range(torch.cuda.device_count())]
        except Exception:
            return []

    def build_models(self) -> None:
        """Build each seed's tiny model once, before runs of that seed race to build it."""
        if not self.cfg.model.build_tiny:
            return
        from train.data import load_splits
        from train.loop import ensure_tiny_model

        train = None
        for seed in self.cfg.compare.seeds:
            cfg = load_config(
                self.config_path,
                [
                    *self.overrides,
                    f"run.seed={seed}",
                    f"model.name_or_path={self.root / 'models' / f'seed{seed}'}",
                ],
            )
            if not Path(cfg.model.name_or_path).exists():
                train = train if train is not None else load_splits(cfg.data, cfg.run.seed).train
                ensure_tiny_model(cfg, train)

    def run(self) -> int:
        arms, seeds = self.cfg.compare.arms, self.cfg.compare.seeds
        if any(a in MATCHED for a in arms) and "targeted" not in arms:
            print(
                "error: compare.arms: real, untargeted and replay add as many examples as targeted; add targeted"
            )
            return 2
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "compare_config.yaml").write_text(dump(self.cfg))
        self.build_models()

        def matched(job: Job) -> list[Job]:
            if job.arm != "targeted":
                return []
            quota = kept_per_round(self.root / job.name)
            return [self.job(a, job.seed, quota) for a in arms if a in MATCHED]

        first = [self.job(a, s) for s in seeds for a in arms if a not in MATCHED]
        self.run_jobs(first, then=matched)
        result = collect(self.root, self.cfg)
        write_report(self.root, self.cfg, result)
        print((self.root / "report.md").read_text())
        missing = [f"{a}-s{s}" for a in arms for s in seeds if f"{a}-s{s}" not in result["runs"]]
        if missing:
            print(f"error: runs that did not finish: {', '.join(missing)} (logs in {self.logs})")
            return 1
        return 0


# ---------------------------------------------------------------------- results


def under_served(cfg: Config) -> list[str]:
    if cfg.compare.under_served:
        return list(cfg.compare.under_served)
    if cfg.data.source == "world":
        from curriculum.world import NATURAL_SKILL_WEIGHTS, world_skills

        weights = {s: NATURAL_SKILL_WEIGHTS[s] for s in world_skills(cfg.data.world.skills)}
        even = sum(weights.values()) / len(weights)
        return sorted(s for s, w in weights.items() if w < even)
    return []


def run_result(run_dir: Path, weak: list[str]) -> dict[str, Any]:
    """One finished run: final accuracies, the curve against steps and against added examples."""
    summary = json.loads((run_dir / "summary.json").read_text())
    end = summary["end"]
    skills = {k[len("skill/") :]: v for k, v in end.items() if k.startswith("skill/")}
    rounds = [r for r in rounds_of(run_dir) if r["status"] == "ok"]
    added_at = sorted((r.get("inject_step", r["step"]), r["metrics"]["curriculum/kept"]) for r in rounds)
    curve = []
    for h in summary["history"]:
        added = sum(n for at, n in added_at if at <= h["step"])
        curve.append({"step": h["step"], "accuracy": h["accuracy"], "added": added})
    cost = max((r.get("cost", {}).get("cost_usd", 0.0) for r in rounds), default=0.0)
    return {
        "accuracy": end["accuracy"],
        "under_served": statistics.mean(skills[s] for s in weak if s in skills) if weak else None,
        "skills": skills,
        "added": sum(n for _, n in added_at),
        "rounds": len(rounds),
        "wall_s": summary.get("wall_seconds"),
        "api_cost_usd": cost,
        "curve": curve,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def collect(root: Path, cfg: Config) -> dict[str, Any]:
    weak = under_served(cfg)
    runs: dict[str, dict[str, Any]] = {}
    for arm in cfg.compare.arms:
        for seed in cfg.compare.seeds:
            d = root / f"{arm}-s{seed}"
            if finished(d, cfg.train.steps):
                runs[f"{arm}-s{seed}"] = {"arm": arm, "seed": seed, **run_result(d, weak)}
    arms: dict[str, Any] = {}
    for arm in cfg.compare.arms:
        rs = [r for r in runs.values() if r["arm"] == arm]
        if not rs:
            continue
        skills = sorted({s for r in rs for s in r["skills"]})
        arms[arm] = {
            "accuracy": _stats([r["accuracy"] for r in rs]),
            "under_served": _stats([r["under_served"] for r in rs]) if weak else None,
            "skills": {s: _stats([r["skills"][s] for r in rs if s in r["skills"]]) for s in skills},
            "added": _stats([r["added"] for r in rs]),
            "wall_s": _stats([r["wall_s"] or 0.0 for r in rs]),
            "api_cost_usd": _stats([r["api_cost_usd"] for r in rs]),
            "seeds": [r["seed"] for r in rs],
        }
    # Paired by seed: targeted minus each other arm, where both finished.
    paired: dict[str, Any] = {}
    for arm in arms:
        if arm == "targeted" or "targeted" not in arms:
            continue
        pairs = [
            (runs[f"targeted-s{s}"], runs[f"{arm}-s{s}"])
            for s in cfg.compare.seeds
            if f"targeted-s{s}" in runs and f"{arm}-s{s}" in runs
        ]
        if pairs:
            paired[arm] = {
                "accuracy": [t["accuracy"] - o["accuracy"] for t, o in pairs],
                "under_served": [t["under_served"] - o["under_served"] for t, o in pairs] if weak else None,
                "seeds": [t["seed"] for t, _ in pairs],
            }
    return {
        "under_served_skills": weak,
        "steps": cfg.train.steps,
        "arms": arms,
        "paired": paired,
        "runs": runs,
    }


def _pm(stat: dict[str, float] | None) -> str:
    return "" if not stat else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report table: one row per arm, mean ± sd over seeds."""
    arms = result["arms"]
    skills = sorted({s for a in arms.values() for s in a["skills"]})
    columns = ["arm", "seeds", "added", "overall"]
    if result["under_served_skills"]:
        columns.append("under-served")
    columns += [*skills, "wall s", "API $"]
    rows = []
    for name, a in arms.items():
        row = [name, len(a["seeds"]), f"{a['added']['mean']:.0f}", _pm(a["accuracy"])]
        if result["under_served_skills"]:
            row.append(_pm(a["under_served"]))
        row += [_pm(a["skills"].get(s)) for s in skills]
        row += [f"{a['wall_s']['mean']:.0f}", f"{a['api_cost_usd']['mean']:.2f}"]
        rows.append(row)
    return columns, rows


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Plain sentences of what the numbers say, seed by seed."""
    lines = []
    for arm, p in result["paired"].items():
        diffs = p["accuracy"]
        wins = sum(d > 0 for d in diffs)
        text = (
            f"- targeted − {arm}: overall {statistics.mean(diffs):+.3f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)}; targeted higher in {wins} of {len(diffs)})"
        )
        if p["under_served"] is not None:
            u = p["under_served"]
            text += f"; under-served skills {statistics.mean(u):+.3f} (higher in {sum(d > 0 for d in u)} of {len(u)})"
        lines.append(text + ".")
    return lines


def plots(root: Path, result: dict[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for x, fname, label in (("step", "accuracy_vs_steps.png", "training step"),
                            ("added", "accuracy_vs_added.png", "examples added")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for arm in result["arms"]:
            curves = [r["curve"] for r in result["runs"].values() if r["arm"] == arm]
            length = min(len(c) for c in curves)
            xs = [statistics.mean(c[i][x] for c in curves) for i in range(length)]
            ys = [[c[i]["accuracy"] for c in curves] for i in range(length)]
            (line,) = ax.plot(xs, [statistics.mean(y) for y in ys], marker="o", ms=3, label=arm)
            ax.fill_between(
                xs, [min(y) for y in ys], [max(y) for y in ys], color=line.get_color(), alpha=0.15
            )
        ax.set_xlabel(label + " (mean over seeds; band: min to max)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(root / fname)
        plt.close(fig)
        out[fname.removesuffix(".png")] = root / fname
    return out


def write_report(root: Path, cfg: Config, result: dict[str, Any]) -> None:
    (root / "compare.json").write_text(json.dumps(result, indent=1))
    if not result["arms"]:
        (root / "report.md").write_text("# compare\n\nNo run finished.\n")
        return
    files = plots(root, result)
    columns, rows = table(result)
    weak = ", ".join(result["under_served_skills"]) or "none named"
    md = [
        f"# compare: {cfg.run.name}",
        "",
        f"{cfg.train.steps} steps per run, seeds {cfg.compare.seeds}; test accuracy, mean ± sd over seeds. "
        f"Under-served skills (below an even share of the train split): {weak}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
        "",
        *summary_lines(result),
        "",
        "![accuracy against steps](accuracy_vs_steps.png) ![accuracy against added examples](accuracy_vs_added.png)",
        "",
    ]
    (root / "report.md").write_text("\n".join(md))
    if cfg.wandb.enabled and cfg.wandb.mode != "disabled":
        from train.tracking import log_table_run

        log_table_run(
            project=cfg.wandb.project,
            group=cfg.wandb.group or cfg.run.name,
            name=f"{cfg.run.name}-report",
            mode=cfg.wandb.mode,
            entity=cfg.wandb.entity,
            columns=columns,
            rows=rows,
            files=files,
            summary={f"{arm}/accuracy": a["accuracy"]["mean"] for arm, a in result["arms"].items()},
            dir=root,
        )


def compare(args: argparse.Namespace) -> int:
    """Run the comparison that ``args.config`` and ``args.overrides`` describe."""
    from train.cli import config_from

    cfg = config_from(args)
    return 2 if cfg is None else Compare(cfg, args.config, args.overrides).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lessonloop compare", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", help="the base config, with a compare: section")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every arm")
    return compare(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
