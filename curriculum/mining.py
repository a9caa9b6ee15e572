"""Failure mining: which probe items the model got wrong this round, and which of those are new.

A round's cost is bounded by ``cap``: new failures (not failed and analysed in an earlier round)
come first; if there are more than ``cap`` of them a seeded random sample is kept, and any room
left is filled with a sample of repeated failures, so a stubborn weakness stays visible.
"""

from __future__ import annotations

import random

from curriculum.types import Example, Failure


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
