"""``lessonloop compare``: did the curriculum beat just adding real data?

    lessonloop compare --config configs/compare_demo.yaml [key=value ...]

One config is the base of every arm; ``compare`` names the arms and seeds. Every arm trains the
same steps from the same model initialisation (per seed) and, where it adds examples, adds as
many as the curriculum did:

- ``base``: the real data only (curriculum off);
- ``targeted``: the curriculum as configured (failures analysed, generators aimed at them);
- ``real``: as many new real examples (the real data's own distribution) as ``targeted`` kept;
- ``untargeted``: the same generators with uniform specs, no failure analysis, same filters;
- ``replay``: hard real examples only (train items the student check keeps);
- ``rebalanced``: new real examples in the skill mix ``targeted`` kept, round by round (an oracle
  reweighting of the real data: does the curriculum do more than pick the right skills?);
- ``frontier``, ``lrf``, ``cads``: the curriculum with a frontier analyzer of that preset
  (``analyze``, ``lrf``, ``cads``), as many examples as ``targeted`` kept; the endpoints are
  ``curriculum.frontier``'s, or the simulated frontier that compare starts when
  ``compare.simulator`` is set (``train.compare_frontier``).

On external data (``data.source: hf``) the arms that add fresh real data (``real``,
``untargeted``, ``rebalanced``) draw it from a reserve of the train split that no arm trains on:
``data.hf.reserve``, which ``compare`` sets for every arm of the comparison (the most the
targeted arm can keep: ``curriculum.budget`` x rounds) unless the config sets it. Every arm is
checked before anything trains, and one that cannot run is refused in one line.

``targeted`` runs first (with ``base``); its kept count per round becomes the others'
``curriculum.quota`` (and its kept count per skill ``rebalanced``'s ``curriculum.skill_quota``),
and their budget is ``compare.oversample`` times its own, so a seed's matched arms start as soon
as its targeted run is done. Runs go one after another or ``compare.parallel`` at once
(round-robin over the GPUs when there are any: small runs can share one); a finished run is not
run again and an interrupted one resumes. Everything lands under ``<run.output_dir>/<run.name>/``:
one folder per run (``<arm>-s<seed>``), ``logs/``, ``compare.json``, ``report.md``, ``report.html`` and the plots
``accuracy_vs_steps.png`` and ``accuracy_vs_added.png`` (``train.compare_results`` reads the
runs back, ``train.compare_report`` writes the report); with W&B on, all runs share one group
and a report run holds the table and the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.args import add_config_args, config_from
from train.compare_frontier import KEY_ENV, PRESETS, SIM_KEY, arm_overrides, simulator_overrides, unreachable
from train.compare_report import write_report
from train.compare_results import collect, finished, kept_by_skill, kept_per_round, under_served
from train.config import Config, ConfigError, dump, load_config

__all__ = ["ARMS", "Compare", "Job", "compare", "kept_by_skill", "kept_per_round", "main", "under_served"]

ARMS: dict[str, list[str]] = {
    "base": ["curriculum.enabled=false"],
    "targeted": ["curriculum.enabled=true", "curriculum.source=diagnosed"],
    "real": ["curriculum.enabled=true", "curriculum.source=real"],
    "untargeted": ["curriculum.enabled=true", "curriculum.source=uniform"],
    "replay": ["curriculum.enabled=true", "curriculum.source=hard_real"],
    "rebalanced": ["curriculum.enabled=true", "curriculum.source=rebalanced"],
    **{arm: arm_overrides(arm) for arm in PRESETS},
}
MATCHED = ("real", "untargeted", "replay", "rebalanced", *PRESETS)  # added count follows the targeted arm
PLACEHOLDER_URL = "http://127.0.0.1:9/v1"  # the simulator's address while checking, before it starts
FRESH = ("real", "untargeted", "rebalanced")  # arms that add fresh real data: external data's reserve

HOME = Path(__file__).resolve().parent.parent
"""The folder that holds the ``train``, ``curriculum`` and ``models`` packages this process runs."""

_BOOT = (
    "import runpy, sys; sys.path = [{home!r}] + [p for p in sys.path if p != '']; "
    "runpy.run_module('train', run_name='__main__', alter_sys=True)"
)


def train_command(args: list[str]) -> list[str]:
    """``python -m train ARGS`` in a new interpreter that does not put the working folder on
    ``sys.path`` (``python -m`` does, so a folder holding its own ``models/`` would hide the
    project's), but the folder of the packages this process runs, first (what ``python -m`` from
    there would do). The working folder stays the same, so relative paths in the config and
    the arguments still resolve. (``python -P`` does the first half, but only from Python 3.11.)"""
    return [sys.executable, "-c", _BOOT.format(home=str(HOME)), *args]


def rounds_in(cfg: Config) -> int:
    """Curriculum rounds a run of ``cfg`` holds: at every ``curriculum.every`` steps before the last."""
    return max(0, (cfg.train.steps - 1) // cfg.curriculum.every)


@dataclass
class Job:
    arm: str
    seed: int
    overrides: list[str]

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"


class Compare:
    def __init__(self, cfg: Config, config_path: str | None, overrides: list[str]) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = list(overrides)
        self.root = cfg.run_dir
        self.logs = self.root / "logs"
        self.weak: list[str] = []  # under-served skills, set by ``check``
        self.sim_url: str | None = None  # the simulated frontier's address while it runs

    # ------------------------------------------------------------------ before anything trains

    def check(self) -> str | None:
        """Check every arm before anything trains: None when all can run, else the reason one
        cannot (one line). Sets the reserve every arm holds back on external data (added to the
        overrides of every arm, so each arm of a seed trains on the same items) and the
        under-served skills."""
        cfg, arms = self.cfg, self.cfg.compare.arms
        if any(a in MATCHED for a in arms) and "targeted" not in arms:
            return f"compare.arms: {', '.join(MATCHED)} add as many examples as targeted; add targeted"
        fresh = [a for a in arms if a in FRESH]
        external = cfg.data.source != "world"
        if external and fresh:
            need = max(1, cfg.curriculum.budget * rounds_in(cfg))
            if cfg.data.hf.reserve == 0:
                self.overrides.append(f"data.hf.reserve={need}")
            elif cfg.data.hf.reserve < need:
                return (
                    f"data.hf.reserve={cfg.data.hf.reserve} is smaller than the {need} fresh real items "
                    f"arm {fresh[0]} may need (curriculum.budget {cfg.curriculum.budget} x {rounds_in(cfg)} "
                    "rounds); raise it, or leave it 0 for compare to set"
                )
        for arm in arms:  # each arm's own config, as it will run (a placeholder for the matched quota)
            quota = [0] if arm in MATCHED else None
            try:
                load_config(
                    self.config_path,
                    [*self.overrides, *self.job(arm, cfg.compare.seeds[0], quota, [{}]).overrides],
                )
            except ConfigError as err:
                return f"compare.arms: arm {arm} cannot run: {err}"
        refused = self._check_frontier()
        if refused is not None:
            return refused
        train_skills: Counter | None = None
        if external and (fresh or not cfg.compare.under_served):
            from train.data import load_splits

            try:
                splits = load_splits(load_config(self.config_path, self.overrides).data, cfg.run.seed)
            except (ConfigError, ValueError) as err:
                return f"data: {err}"
            train_skills = Counter(ex.skill for ex in [*splits.train, *splits.reserve] if ex.skill)
            by_skill = [a for a in fresh if a != "real"]
            if by_skill and not any(ex.skill for ex in splits.reserve):
                return (
                    f"compare.arms: arm {by_skill[0]} draws the reserve by skill, but no reserve item has a "
                    "skill (name data.hf.skill_column, or leave the arm out)"
                )
        self.weak = under_served(cfg, train_skills)
        return None

    def _check_frontier(self) -> str | None:
        """Each frontier arm's run checked as ``train`` checks it before it trains; without the
        simulator, each endpoint's server must answer."""
        from train.setup import preflight

        arms = [a for a in self.cfg.compare.arms if a in PRESETS]
        simulated = self.cfg.compare.simulator is not None
        if simulated:
            os.environ.setdefault(KEY_ENV, SIM_KEY)
        for arm in arms:
            job = self.job(arm, self.cfg.compare.seeds[0], [0], [{}])
            try:
                cfg = load_config(self.config_path, [*self.overrides, *job.overrides])
                preflight(cfg)
            except ConfigError as err:
                return f"compare.arms: arm {arm} cannot run: {err}"
            reason = None if simulated else unreachable(cfg)
            if reason is not None:
                return f"compare.arms: arm {arm} cannot run: {reason}"
        return None

    # ------------------------------------------------------------------ runs

    def job(
        self,
        arm: str,
        seed: int,
        quota: list[int] | None = None,
        skill_quota: list[dict[str, int]] | None = None,
    ) -> Job:
        """Arm ``arm`` of seed ``seed``; a matched arm gets the targeted run's ``quota`` (and
        ``rebalanced`` its ``skill_quota``) and ``compare.oversample`` times the budget."""
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
            # No round kept anything (or none ran): an empty quota would mean "no limit".
            extra += [f"curriculum.quota=[{','.join(map(str, quota or [0]))}]", f"curriculum.budget={budget}"]
            if arm == "rebalanced":
                # JSON is YAML: skill names of any text survive the override.
                extra.append(f"curriculum.skill_quota={json.dumps(skill_quota or [{}])}")
        if arm in PRESETS and cfg.compare.simulator is not None:
            extra += simulator_overrides(cfg, self.sim_url or PLACEHOLDER_URL)
        return Job(arm, seed, extra)

    def command(self, job: Job) -> list[str]:
        config = ["--config", self.config_path] if self.config_path else []
        return train_command([*config, *self.overrides, *job.overrides])

    def environment(self, threads: int, gpu: str | None) -> dict[str, str]:
        """A run's environment: this one, with ``OMP_NUM_THREADS`` set to its share of the cores
        unless the user set it, and its GPU when there are any."""
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(threads))
        if self.sim_url is not None:
            env.setdefault(KEY_ENV, SIM_KEY)
        if gpu is not None:  # round-robin: several small runs may share a GPU
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return env

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
                env = self.environment(threads, gpus[slot % len(gpus)] if gpus else None)
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
        from train.setup import ensure_tiny_model

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
        if self.cfg.compare.simulator is None or not any(a in PRESETS for a in self.cfg.compare.arms):
            return self._run()
        from curriculum.frontier.sim import SimConfig, SimServer

        with SimServer(SimConfig.from_dict(self.cfg.compare.simulator)) as sim:
            self.sim_url = sim.url
            print(f"compare: simulated frontier at {sim.url}", flush=True)
            try:
                return self._run()
            finally:
                if self.root.is_dir():  # what it served, and the mistakes it made on purpose
                    (self.root / "simulator.json").write_text(json.dumps(sim.stats(), indent=1) + "\n")

    def _run(self) -> int:
        arms, seeds = self.cfg.compare.arms, self.cfg.compare.seeds
        refused = self.check()
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "compare_config.yaml").write_text(dump(load_config(self.config_path, self.overrides)))
        self.build_models()

        def matched(job: Job) -> list[Job]:
            if job.arm != "targeted":
                return []
            run_dir = self.root / job.name
            quota, mix = kept_per_round(run_dir), kept_by_skill(run_dir)
            return [self.job(a, job.seed, quota, mix) for a in arms if a in MATCHED]

        first = [self.job(a, s) for s in seeds for a in arms if a not in MATCHED]
        self.run_jobs(first, then=matched)
        result = collect(self.root, self.cfg, self.weak)
        write_report(self.root, self.cfg, result)
        print((self.root / "report.md").read_text())
        missing = [f"{a}-s{s}" for a in arms for s in seeds if f"{a}-s{s}" not in result["runs"]]
        if missing:
            print(
                f"error: runs that did not finish: {', '.join(missing)} (logs in {self.logs})",
                file=sys.stderr,
            )
            return 1
        return 0


def compare(args: argparse.Namespace) -> int:
    """Run the comparison that ``args.config`` and ``args.overrides`` describe."""
    cfg = config_from(args)
    return 2 if cfg is None else Compare(cfg, args.config, args.overrides).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lessonloop compare", description=__doc__.split("\n")[0])
    add_config_args(parser)
    return compare(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
