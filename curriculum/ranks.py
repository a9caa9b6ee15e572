"""The collectives a curriculum round needs, and agreement on what went wrong.

In a distributed run every rank takes part in a round: they evaluate the probe together, rank 0
analyses, generates and commits, the others read the committed round back. A collective waits
for every rank, so a rank that raises and leaves the round would leave the others waiting
forever. Each step of a round that can fail on one rank only is therefore followed by
``first_error``: every rank learns whether any rank failed, and all take the same branch (the
round fails everywhere, or everywhere goes on). One process (no accelerator, or a world of one)
needs none of this, and every method is then a plain local call.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class RanksDisagree(RuntimeError):
    """The ranks hold different pools after a round: training on would train each rank on other
    data, so the run stops (on every rank at once, since all of them see this)."""


class Ranks:
    """Rank 0 and the others, over an Accelerate ``Accelerator`` (None: one process)."""

    def __init__(self, accelerator: Any = None) -> None:
        self.accelerator = accelerator
        self.many = accelerator is not None and accelerator.num_processes > 1
        self.is_main = accelerator is None or accelerator.is_main_process
        self.index = accelerator.process_index if accelerator is not None else 0

    def barrier(self) -> None:
        if self.many:
            self.accelerator.wait_for_everyone()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the others pass anything, e.g. None)."""
        if not self.many:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def on_main(self, fn: Callable[[], T], on_error: Callable[[str], T]) -> T:
        """``fn()`` run on rank 0, on every rank; if it raised, ``on_error(traceback)`` instead."""
        value = None
        if self.is_main:
            try:
                value = fn()
            except Exception:
                value = on_error(traceback.format_exc())
        return self.broadcast(value)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.many:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def first_error(self, error: str | None) -> str | None:
        """Every rank says what went wrong here (None: nothing); every rank gets the first error,
        or None when all went well. In a distributed run the error's last line (what a round's
        record and history keep) names the rank it happened on."""
        errors = self.gather(error)
        for rank, err in enumerate(errors):
            if err is not None:
                if not self.many:
                    return err
                *before, last = err.rstrip().splitlines() or [""]
                return "\n".join([*before, f"rank {rank}: {last}"])
        return None

    def check_same_pool(self, k: int, ids: list[str], version: int, error: str | None = None) -> None:
        """Raise ``RanksDisagree`` on every rank unless every rank holds round ``k``'s pool, the
        same one: ``error`` is this rank's failure to load it (None: loaded)."""
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()
        seen = self.gather((error, version, digest))
        failed = [(rank, err) for rank, (err, _, _) in enumerate(seen) if err is not None]
        if failed:
            rank, err = failed[0]
            raise RanksDisagree(f"rank {rank} could not load curriculum round {k}: {err.strip()}")
        if len({(v, d) for _, v, d in seen}) != 1:
            raise RanksDisagree(f"curriculum pools differ across ranks after round {k}: {seen}")
