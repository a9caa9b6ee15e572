"""Where curriculum rounds are committed and read back, alike on every rank.

Rank 0 commits a round to the pool (``curriculum.pool``) together with its outcome
(``curriculum.rounds``) and, just before the commit point, its record; the other ranks then read
the committed round back from disk. Every decision that depends on what is on disk is rank 0's
and is broadcast, and after each commit or load the ranks check that they hold the same pool, so
they always take the same branch: a commit that fails fails on every rank, and a round that some
rank cannot load stops the run on every rank (``RanksDisagree``) instead of leaving ranks to
train on different pools or to wait for each other forever.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curriculum.pool import Pool
from curriculum.ranks import Ranks
from curriculum.rounds import legacy_outcome
from curriculum.types import Example

# Given the ids a round will retire: its outcome, and a function that writes its record.
Describe = Callable[[list[str]], tuple[dict[str, Any], Callable[[], None]]]


class RoundStore:
    """The pool of a run's curriculum (``root/pool``) as every rank sees it."""

    def __init__(self, root: Path, cap: int, ranks: Ranks) -> None:
        self.root, self.cap, self.ranks = Path(root), cap, ranks
        self.pool = Pool(self.root / "pool", cap=cap)

    def reopen(self, upto: int) -> None:
        """The pool as a checkpoint saw it: rounds up to ``upto`` (later ones stay on disk)."""
        self.pool = Pool(self.root / "pool", self.cap, upto=upto)

    def on_disk(self, k: int) -> bool:
        """Whether round ``k`` is committed, as rank 0 sees it."""
        return bool(self.ranks.broadcast(self.pool.has_round(k) if self.ranks.is_main else None))

    def inject_step(self, k: int, default: int) -> int:
        """The step at which committed round ``k`` joined the run (its outcome's ``inject_step``)."""
        outcome = self.pool.round_outcome(k) if self.ranks.is_main else None
        return int(self.ranks.broadcast((outcome or {}).get("inject_step", default)))

    def outcome(self, k: int, step: int) -> dict[str, Any]:
        """Committed round ``k``'s outcome (a pool of an earlier version may have none)."""
        return self.pool.round_outcome(k) or legacy_outcome(k, step)

    def commit(
        self,
        k: int,
        step: int,
        kept: list[Example],
        retire: list[str],
        describe: Describe,
        apply: bool = True,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Rank 0 commits round ``k`` with the outcome and record that ``describe`` gives (the
        record is written just before the commit point); then every rank holds the round and
        gets its stored outcome, or no rank holds it (outcome None). The error is rank 0's.
        ``apply`` false (one process): committed to disk only; ``hold`` applies it later."""
        error, committed = None, False
        if self.ranks.is_main:
            try:
                outcome, record = describe(self.pool.plan_round(kept, retire))
                self.pool.commit_round(k, kept, retire, outcome=outcome, before_commit=record, apply=apply)
            except Exception:
                error = traceback.format_exc()
            committed = self.pool.has_round(k)  # the commit point may have passed before an error
        committed, error = self.ranks.broadcast((committed, error))
        if not committed:
            return None, error
        if apply:
            self.hold(k)
        return self.outcome(k, step), error

    def hold(self, k: int) -> None:
        """Apply committed round ``k`` here unless done; every rank checks that all hold one pool
        (``RanksDisagree`` on every rank otherwise)."""
        local = None
        if self.pool.version < k:
            try:
                self.pool.apply_round(k)
            except Exception:
                local = traceback.format_exc()
        self.ranks.check_same_pool(k, self.pool.ids(), self.pool.version, local)
