"""What a curriculum round hands on, and what it leaves behind for a resumed run.

A round changes more than the pool: the failures it mined join the ``seen`` set (the next round
marks them as repeats), its accepted examples that the student still failed become the next
analysis's exemplars, the run's history gains an entry, the frontier ledger its spending. All of
this is the round's *outcome*, a JSON object committed atomically with the round's examples (in
the pool file's header) and applied to the curriculum from there, whether the round was just
computed or is loaded back from disk by a resumed run. So a run killed at any point after the
commit resumes into exactly the state an uninterrupted run has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from curriculum.types import Candidate, Example, Failure, Weakness


@dataclass
class RoundResult:
    """What the loop gets from a round: ``status`` is ``ok``, ``failed``, or ``restored`` (a round
    an earlier process of this run committed, loaded back from disk with the metrics it had)."""

    round: int
    step: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    failures: list[Failure] = field(default_factory=list)  # an ok round's, with their images
    weaknesses: list[Weakness] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # kept and dropped, with images


@dataclass
class Prepared:
    """What rank 0 prepares for the model-dependent end of a round (broadcast to all ranks)."""

    round: int
    step: int
    probe_accuracy: float
    failures: list[Failure]
    weaknesses: list[Weakness]
    candidates: list[Candidate]
    timings: dict[str, float]
    probe_skills: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    image_errors: list[str] = field(default_factory=list)


@dataclass
class InFlight:
    """An async round between its probe (at ``step``) and its injection (at ``inject``).

    ``probe`` (the probe's predictions and verdicts) goes into checkpoints, so a run resumed
    while the round was in flight prepares the very round the probe at ``step`` saw, not one
    from a later model. ``committed``: a resumed run found the round on disk already and loads
    it back at ``inject``, the step where it joined the run the first time. ``background``: the
    probe and the student check run in the worker too (``curriculum.snapshot``), and the worker
    commits the round to disk; the loop applies it at ``inject``.
    """

    round: int
    step: int
    inject: int
    blocked_s: float = 0.0
    future: Future | None = None
    probe: dict[str, list[Any]] | None = None
    committed: bool = False
    background: bool = False  # the whole round runs in the worker, on a copy of the model

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"round": self.round, "step": self.step}
        if self.probe is not None and not self.committed:
            state["probe"] = self.probe
        return state


def ok_outcome(
    work: Prepared,
    kept: int,
    retired: int,
    pool_size: int,
    inject_step: int,
    cost: dict[str, float],
    spent: dict[str, float] | None,
) -> dict[str, Any]:
    """The outcome of a round that adds ``kept`` examples: its metrics (all but the wall time
    the loop waited, which is the process's, not the round's) and what the run's state gains."""
    dropped = Counter(c.dropped for c in work.candidates if c.dropped)
    metrics: dict[str, float] = {
        "curriculum/round": work.round,
        "curriculum/probe_accuracy": work.probe_accuracy,
        "curriculum/failures": len(work.failures),
        "curriculum/new_failures": sum(f.new for f in work.failures),
        "curriculum/weaknesses": len(work.weaknesses),
        "curriculum/candidates": len(work.candidates),
        "curriculum/kept": kept,
        "curriculum/retired": retired,
        "curriculum/pool_size": pool_size,
        **{f"curriculum/dropped_{name}": float(n) for name, n in dropped.items()},
        **{f"curriculum/probe_skill/{s}": v for s, v in work.probe_skills.items()},
        **{f"curriculum/{key}": value for key, value in cost.items()},
    }
    if work.image_errors:
        metrics["curriculum/image_errors"] = len(work.image_errors)
    return {
        "status": "ok",
        "step": work.step,
        "inject_step": inject_step,
        "failures": [f.example.id for f in work.failures],
        "history": {"round": work.round, "step": work.step, "status": "ok", "kept": kept},
        "metrics": metrics,
        "spent": spent,
    }


def ok_summary(work: Prepared, outcome: dict[str, Any], mode: str, cost: dict[str, float]) -> dict[str, Any]:
    """``round.json`` of an ok round: its outcome's metrics with the time the loop waited."""
    summary = {
        "round": work.round,
        "step": work.step,
        "inject_step": outcome["inject_step"],
        "status": "ok",
        "mode": mode,
        "weaknesses": [w.id for w in work.weaknesses],
        "kept_by_generator": dict(Counter(c.generator for c in work.candidates if c.dropped is None)),
        "dropped_by_filter": dict(Counter(c.dropped for c in work.candidates if c.dropped)),
        "timings": work.timings,
        "metrics": {**outcome["metrics"], "curriculum/blocked_s": work.timings["blocked_s"]},
    }
    if cost:
        summary["cost"] = cost
    if work.image_errors:
        summary["image_errors"] = work.image_errors
    return summary


def failed_outcome(
    k: int, step: int, inject_step: int, error: str, failures: list[Failure], spent: dict[str, float] | None
) -> dict[str, Any]:
    """The outcome of a round that failed with ``error`` (its last line): nothing added; the
    failures it had mined, if any, count as seen, as they would have in the round it was."""
    return {
        "status": "failed",
        "step": step,
        "inject_step": inject_step,
        "failures": [f.example.id for f in failures],
        "history": {"round": k, "step": step, "status": "failed", "error": error},
        "metrics": {"curriculum/round": k, "curriculum/failed": 1.0},
        "spent": spent,
    }


def round_cost(ledger: Any, candidates: list[Candidate]) -> dict[str, float]:
    """What this round spent on the frontier (``ledger``), and per accepted example (all of
    them, and those the frontier proposed); the run totals. Empty when nothing calls an API."""
    if ledger is None:
        return {}
    kept = [c for c in candidates if c.dropped is None]
    proposed = [c for c in kept if c.generator == "proposals"]
    spent = ledger.round_dict()
    return {
        "round_cost_usd": spent["cost"],
        "cost_per_kept_usd": spent["cost"] / max(1, len(kept)),
        "cost_per_kept_proposal_usd": spent["cost"] / max(1, len(proposed)),
        "cost_usd": ledger.cost,
        **{f"frontier_{key}": value for key, value in spent.items() if key != "cost"},
    }


def failed_summary(
    k: int, step: int, error: str, timings: dict[str, float], cost: dict[str, float], image_errors: list[str]
) -> dict[str, Any]:
    """``round.json`` of a failed round: the whole error, and what it spent before it failed."""
    summary: dict[str, Any] = {
        "round": k,
        "step": step,
        "status": "failed",
        "error": error,
        "timings": timings,
    }
    if cost:
        summary["cost"] = cost
    if image_errors:
        summary["image_errors"] = image_errors
    return summary


def legacy_outcome(k: int, step: int) -> dict[str, Any]:
    """The outcome of a round committed without one (a pool written by an earlier version): its
    examples are known, the rest is not."""
    return {
        "status": "ok",
        "step": step,
        "inject_step": step,
        "failures": [],
        "history": {"round": k, "step": step, "status": "restored"},
        "metrics": {"curriculum/round": k},
        "spent": None,
    }


def exemplars_of(kept: list[Example]) -> list[dict[str, Any]]:
    """A round's accepted examples that the student still failed, one weakness at a time
    (round-robin). Read from the examples alone, so a restored round gives the same ones."""
    by_weakness: dict[str, list[Example]] = {}
    for ex in kept:
        if "student_answer" in ex.meta or ex.meta.get("student_pass_rate", 1.0) < 1.0:
            by_weakness.setdefault(ex.meta.get("weakness", ""), []).append(ex)
    out: list[dict[str, Any]] = []
    for depth in range(max((len(v) for v in by_weakness.values()), default=0)):
        for weakness, items in by_weakness.items():
            if depth < len(items):
                ex = items[depth]
                out.append({"question": ex.question, "answer": ex.answer, "skill": ex.skill,
                            "student_answer": ex.meta.get("student_answer"), "weakness": weakness})  # fmt: skip
    return out[:64]


@contextmanager
def own_rng(seed: int) -> Iterator[None]:
    """Run the block on torch's random streams (CPU, and the current GPU) seeded with ``seed``,
    then give the streams back as they were.

    A round's sampled answers (probe samples, the band check) then neither depend on nor move
    the training's random state: training draws the same after a computed round as after one a
    resumed run loaded from disk, and the round draws the same whenever it runs.
    """
    import torch

    devices = (
        [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed(seed)
        yield
