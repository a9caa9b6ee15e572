"""Config sections ``wandb`` and ``compare``: where a run reports, and how runs are compared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from train.config.fields import Section, require

ARMS = ("base", "real", "targeted", "untargeted", "replay", "rebalanced", "frontier", "lrf", "cads")
"""The arms ``lessonloop compare`` knows."""


@dataclass
class WandbConfig(Section):
    SECTION = "wandb"

    enabled: bool = False
    """Log to Weights & Biases as well as to ``metrics.jsonl``."""
    project: str = "lessonloop"
    """W&B project."""
    entity: str | None = None
    """W&B team or user; null: the default of the logged-in account."""
    mode: Literal["online", "offline", "disabled"] = "online"
    """``offline`` writes a local run folder to sync later."""
    group: str | None = None
    """W&B group, to show related runs together."""
    tags: list[str] = field(default_factory=list)
    """W&B tags."""

    def check(self) -> None:
        require(bool(self.project.strip()), "project", "must not be empty")


@dataclass
class CompareConfig(Section):
    """``lessonloop compare``: arms of one base config (this file) with the same steps and the
    same number of added examples, several seeds each."""

    SECTION = "compare"

    arms: list[str] = field(default_factory=lambda: ["base", "real", "targeted", "untargeted"])
    """Arms to run: ``base`` (the real data only), ``real`` (as many extra real examples as the
    curriculum added), ``targeted`` (the curriculum as configured), ``untargeted`` (the same
    generators with uniform specs), ``replay`` (hard real examples only), ``rebalanced`` (extra real
    examples in the skill mix the curriculum added, round by round: an oracle reweighting),
    ``frontier``, ``lrf``, ``cads`` (the curriculum with a frontier analyzer of preset ``analyze``,
    ``lrf``, ``cads``, as many examples as ``targeted`` added; its endpoints are
    ``curriculum.frontier``'s, or the simulator's when ``simulator`` is set)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds (``run.seed``; a built tiny model is initialised from it too)."""
    parallel: int = 1
    """Runs at once, spread round-robin over the GPUs (``CUDA_VISIBLE_DEVICES``): more runs than
    GPUs share them."""
    oversample: float = 3.0
    """Candidates per round of a matched arm, as a multiple of ``curriculum.budget``, so that
    enough survive its filters to reach the targeted arm's count."""
    under_served: list[str] = field(default_factory=list)
    """Skills the real data under-serves, reported together; empty: those whose share of the
    train split is below an even share."""
    simulator: dict[str, int | float | str] | None = None
    """Settings of the simulated frontier (``lessonloop-sim``'s, e.g. ``{proposal_error: 0.2,
    judge_error: 0.2}``; ``{}``: its defaults) that compare starts for the frontier arms and sends
    every ``curriculum.frontier`` endpoint to (the reply cache off, prices and budgets kept); null:
    the frontier arms call the endpoints the config names."""

    def check(self) -> None:
        require(set(self.arms) <= set(ARMS) and len(set(self.arms)) == len(self.arms) > 0, "arms",
                f"must be distinct names among {', '.join(ARMS)}")  # fmt: skip
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds",
                "must name at least one seed, each once")  # fmt: skip
        require(self.parallel >= 1, "parallel", "must be >= 1")
        require(self.oversample >= 1.0, "oversample", "must be >= 1")
        if self.simulator is not None:
            from curriculum.frontier.sim.config import SimConfig

            try:
                SimConfig.from_dict(dict(self.simulator))
            except (TypeError, ValueError) as err:
                require(False, "simulator", f": {err}")


@dataclass
class TrackingConfig(Section):
    SECTION = "tracking"

    report_to: list[str] = field(default_factory=list)
    """Trackers that get every metric besides ``metrics.jsonl``, through accelerate: ``wandb``,
    ``tensorboard``, ``mlflow``, ``comet_ml``, ``aim``, ``clearml``, ``dvclive``, ``swanlab``,
    ``trackio``, a tracker registered with ``accelerate.tracking.register_tracker_class``, or ``all``
    (every one installed); each must be installed. ``wandb.enabled: true`` adds ``wandb``. Trackers
    that keep files write them under ``<run>/trackers``."""

    def check(self) -> None:
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        known = sorted({*LOGGER_TYPE_TO_CLASS, "all"})
        unknown = [name for name in self.report_to if name not in known]
        require(
            not unknown, "report_to", f"names unknown trackers {unknown}: choose among {', '.join(known)}"
        )
        require(len(set(self.report_to)) == len(self.report_to), "report_to", "must name each tracker once")
