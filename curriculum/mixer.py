"""The training stream: real data and the curriculum pool, mixed by a ratio, in one order.

Every draw has a global position (all ranks together, as in ``curriculum.stream.DataStream``). The
real item at a position is the real stream's; with probability ``ratio(step)`` (decided by a
generator seeded with the position, so every rank agrees and a resumed run repeats it) the draw
comes from the pool instead, picked in proportion to the examples' weights. The whole state is
the position; the pool's content is restored separately, so a changed pool takes effect at the
next step and a resumed run draws exactly what the interrupted one would have.

Which real items the pool takes the place of is ``displace`` (``curriculum.mix.displace``): any
item alike (``uniform``), or (``known``) the items of the skills the student already answers
right, each real item's chance in proportion to its skill's accuracy on the last probe, scaled so
that the pool's share of all draws stays ``ratio``. A pool made for the skills the student fails
then adds to their real items instead of taking a share of them too.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import Counter
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
        self._skills = Counter(ex.skill for ex in real)
        self._accuracy: dict[str | None, float] = {}  # skill -> answered right on the last probe
        self._chances: tuple[float, dict[str | None, float]] = (-1.0, {})  # (share, chance per skill)
        self.last_from_pool = 0

    def set_pool(
        self, examples: list[Example], weights: list[float], known: dict[str, float] | None = None
    ) -> None:
        """Replace the pool the mixer draws from (applies from the next batch). ``known``: each
        skill's share answered right on the last probe; the pool then takes the place of real
        items in proportion to it (a skill not named counts as the mean); None: of any alike."""
        if len(examples) != len(weights):
            raise ValueError("examples and weights must have the same length")
        self.pool = list(examples)
        self._cumulative = list(itertools.accumulate(max(0.0, w) for w in weights))
        self._accuracy, self._chances = {}, (-1.0, {})
        if known:
            mean = sum(known.values()) / len(known)
            self._accuracy = {s: known.get(s, mean) if s is not None else mean for s in self._skills}

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
            chance = self._chance(share, self.real[index].skill)
            if rng.random() < chance:
                pick = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
                out.append(self.pool[min(pick, len(self.pool) - 1)])
                self.last_from_pool += 1
            else:
                out.append(self.real[index])
        return out

    def _chance(self, share: float, skill: str | None) -> float:
        """The chance that the draw of a real item of ``skill`` comes from the pool instead."""
        if not self._accuracy or share <= 0:
            return share
        if self._chances[0] != share:
            self._chances = (share, _chances(share, self._accuracy, self._skills))
        return self._chances[1][skill]

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)


def _chances(share: float, accuracy: dict[str | None, float], skills: Counter) -> dict[str | None, float]:
    """Each real skill's chance of giving way to the pool: in proportion to its accuracy, none
    above 1, their mean over the stream ``share`` (what a skill held at 1 cannot take goes to the
    others, in proportion; skills at accuracy 0 give way only once all others always do)."""
    total = sum(skills.values())
    if not total or share <= 0:
        return {s: 0.0 for s in skills}
    weights = {s: max(accuracy[s], 1e-9) for s in skills}  # all at 0: alike
    full: set[str | None] = set()  # skills whose every item gives way
    while len(full) < len(skills):
        rest = share * total - sum(skills[s] for s in full)
        scale = rest / sum(weights[s] * n for s, n in skills.items() if s not in full)
        over = {s for s in skills if s not in full and weights[s] * scale > 1}
        if not over:
            return {s: 1.0 if s in full else weights[s] * scale for s in skills}
        full |= over
    return {s: 1.0 for s in skills}
