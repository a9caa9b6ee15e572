"""Failure mining: which probe items the model got wrong this round, and which of those are new.

``probe_items`` picks a round's probe items, ``answer_probe`` asks the model and marks each item right
or wrong (greedy, or by the pass rate of sampled answers), ``mine`` keeps the failures.

A round's cost is bounded by ``cap``: new failures (not failed and analysed in an earlier round)
come first; if there are more than ``cap`` of them a seeded random sample is kept, and any room
left is filled with a sample of repeated failures, so a stubborn weakness stays visible.
"""

from __future__ import annotations

import random

from curriculum.scoring import is_correct
from curriculum.types import Example, Failure, Policy


def probe_items(probe: list[Example], most: int, seed: int, round: int) -> list[Example]:
    """Round ``round``'s probe items: all, or a seeded sample of ``most`` (0: all)."""
    if most and len(probe) > most:
        return random.Random(f"{seed}|probe|{round}").sample(probe, most)
    return probe


def answer_probe(
    items: list[Example], policy: Policy, samples: int = 0, failure_pass_rate: float = 0.0
) -> tuple[list[str], list[bool]]:
    """The model's answer to each item and whether it is right. With ``samples``, an item is
    wrong when the pass rate of its sampled answers is at most ``failure_pass_rate`` (GRPO: all
    rollouts fail), and the answer recorded is a wrong sample when there is one."""
    if not samples:
        predictions = policy.answer(items)
        return predictions, [is_correct(p, ex.answer) for p, ex in zip(predictions, items, strict=True)]
    drawn = policy.sample(items, samples)
    marks = [[is_correct(p, ex.answer) for p in ps] for ps, ex in zip(drawn, items, strict=True)]
    predictions = [
        next((p for p, ok in zip(ps, m, strict=True) if not ok), ps[0])
        for ps, m in zip(drawn, marks, strict=True)
    ]
    return predictions, [sum(m) / len(m) > failure_pass_rate for m in marks]


def mine(
    probe: list[Example],
    predictions: list[str],
    correct: list[bool],
    seen: set[str],
    round: int,
    cap: int,
    rng: random.Random,
) -> list[Failure]:
    """The round's failures, new first, at most ``cap`` (0: no cap)."""
    if not len(probe) == len(predictions) == len(correct):
        raise ValueError("probe, predictions and correct must have the same length")
    wrong = [
        Failure(ex, pred, round, new=ex.id not in seen)
        for ex, pred, ok in zip(probe, predictions, correct, strict=True)
        if not ok
    ]
    new = [f for f in wrong if f.new]
    old = [f for f in wrong if not f.new]
    if not cap or len(wrong) <= cap:
        return new + old
    if len(new) >= cap:
        return rng.sample(new, cap)
    return new + rng.sample(old, cap - len(new))
