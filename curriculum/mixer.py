"""The training stream: real data and the curriculum pool, mixed by a ratio, in one order.

Every draw has a global position (all ranks together, as in ``curriculum.stream.DataStream``). The
real item at a position is the real stream's; with probability ``ratio(step)`` (decided by a
generator seeded with the position, so every rank agrees and a resumed run repeats it) the draw
comes from the pool instead, picked in proportion to the examples' weights. The whole state is
the position; the pool's content is restored separately, so a changed pool takes effect at the
next step and a resumed run draws exactly what the interrupted one would have.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable

from curriculum.stream import DataStream
from curriculum.types import Example


def ratio_schedule(start: float, end: float | None, ramp_steps: int) -> Callable[[int], float]:
    """Constant ``start``, or a linear move to ``end`` over ``ramp_steps`` steps."""

    def ratio(step: int) -> float:
        if end is None or ramp_steps <= 0:
            return start
        t = min(1.0, step / ramp_steps)
        return start + t * (end - start)

    return ratio


class Mixer:
    def __init__(
        self,
        real: list[Example],
        seed: int,
        ratio: Callable[[int], float],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.real = real
        self.stream = DataStream(len(real), seed, rank, world_size)
        self.seed = seed
        self.ratio = ratio
        self.pool: list[Example] = []
        self._cumulative: list[float] = []
        self.last_from_pool = 0

    def set_pool(self, examples: list[Example], weights: list[float]) -> None:
        """Replace the pool the mixer draws from (applies from the next batch)."""
        if len(examples) != len(weights):
            raise ValueError("examples and weights must have the same length")
        self.pool = list(examples)
        self._cumulative = list(itertools.accumulate(max(0.0, w) for w in weights))

    @property
    def epoch(self) -> float:
        return self.stream.epoch

    def next_batch(self, batch_size: int, step: int) -> list[Example]:
        """This rank's share of the next global batch."""
        first = self.stream.position + self.stream.rank * batch_size
        indices = self.stream.next_indices(batch_size)
        share = self.ratio(step) if self.pool and self._cumulative[-1] > 0 else 0.0
        out = []
        self.last_from_pool = 0
        for offset, index in enumerate(indices):
            rng = random.Random(self.seed * 1_000_003 + first + offset)
            if rng.random() < share:
                pick = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
                out.append(self.pool[min(pick, len(self.pool) - 1)])
                self.last_from_pool += 1
            else:
                out.append(self.real[index])
        return out

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)
