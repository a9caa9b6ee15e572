"""The order in which training items are drawn: reproducible, shardable, resumable.

Epoch ``e`` visits the items in a permutation seeded by ``(seed, e)``. The stream's whole state is
one integer, the number of items drawn so far by all ranks together, so a checkpoint restores the
exact next batch, and every rank derives its share of a global batch from the same order: no two
ranks see the same item in a step.
"""

from __future__ import annotations

import torch


class DataStream:
    def __init__(self, num_items: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if num_items <= 0:
            raise ValueError("the training split is empty: nothing to train on")
        self.num_items = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = 0
        self._epoch = -1
        self._perm: list[int] = []

    @property
    def epoch(self) -> float:
        return self.position / self.num_items

    def _order(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_items, generator=gen).tolist()
            self._epoch = epoch
        return self._perm

    def next_indices(self, batch_size: int) -> list[int]:
        """This rank's ``batch_size`` items of the next global batch of ``batch_size * world_size``."""
        start = self.position + self.rank * batch_size
        out = []
        for p in range(start, start + batch_size):
            epoch, offset = divmod(p, self.num_items)
            out.append(self._order(epoch)[offset])
        self.position += batch_size * self.world_size
        return out

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "num_items": self.num_items}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_items"] != self.num_items or state["seed"] != self.seed:
            raise ValueError(
                f"checkpoint data stream was over {state['num_items']} items with seed {state['seed']}, "
                f"this run has {self.num_items} items with seed {self.seed}: the data changed"
            )
        self.position = state["position"]
