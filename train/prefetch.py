"""Training batches built ahead, in a background thread, exactly as they would be built on demand.

``BatchSource`` stands between the loop and the mixer: the SFT step asks it for the collated
micro-batch of a step, and with ``background`` on it starts building the next one (drawing from
the mixer, running the collator, pinning the tensors when they go to a GPU) while the model trains
on this one (and packing it, with ``transform``, and counting its model FLOPs, with
``count_flops``: host work kept off the step). The next request is predicted as the same step again until ``grad_accum``
micro-batches were taken, then the step after; a request for anything else, a changed pool (a
curriculum round), a restored stream or a checkpoint's state first waits for the batch in flight,
puts the stream back where it stood before that batch was drawn and builds on demand. The mixer's
draw is a function of its position, its pool and the step only, so each batch is the one the
synchronous path builds, and a checkpoint records the position of the batches trained on, not of
the one built ahead.

The background thread has a collator of its own (a copy of the processor): a fast tokenizer used
from two threads at once can fail ("Already borrowed"), and the loop's collator also serves
evaluation and the curriculum's probes, in the main thread.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from curriculum.mixer import Mixer
from curriculum.types import Example
from train.collate import IGNORE_INDEX, VLMCollator


@dataclass
class Built:
    """One collated micro-batch and what the step reports about it."""

    batch: dict[str, torch.Tensor]
    samples: int
    from_pool: int
    position: int  # the stream's position after drawing it
    tokens: int  # real (unpadded) tokens
    answer_tokens: int  # supervised tokens
    model_flops: float | None = None  # the model FLOPs of training on it, when counted


class BatchSource:
    def __init__(
        self,
        mixer: Mixer,
        collator: VLMCollator,
        grad_accum: int = 1,
        background: bool = False,
        pin_memory: bool = False,
        last_step: int | None = None,
        transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
        count_flops: Callable[[dict[str, torch.Tensor]], float] | None = None,
    ) -> None:
        self.mixer = mixer
        self.collator = copy.deepcopy(collator) if background else collator
        self.grad_accum = grad_accum
        self.background = background
        self.pin_memory = pin_memory
        self.last_step = last_step  # no batch is built ahead for a step at or past it
        self.transform = transform  # applied to each collated batch (packing)
        self.count_flops = count_flops  # the model FLOPs of training on a batch as the model reads it
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pending_key: tuple[int, int] | None = None
        self._consumed = mixer.stream.position  # the position after the batches handed out
        self._step, self._taken = -1, 0  # micro-batches handed out for ``_step``
        self.last_from_pool = 0
        self.on_demand = 0  # batches built when asked for (none was ready): the first, and after a change

    # ---- the mixer's interface, for the loop
    @property
    def epoch(self) -> float:
        return self._consumed / self.mixer.stream.num_items

    def set_pool(self, examples: list[Example], weights: list[float]) -> None:
        self._discard()
        self.mixer.set_pool(examples, weights)

    def state_dict(self) -> dict[str, int]:
        self._discard()
        return self.mixer.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._discard()
        self.mixer.load_state_dict(state)
        self._consumed = self.mixer.stream.position

    def next_batch(self, batch_size: int, step: int) -> list[Example]:
        """Uncollated examples, as the mixer gives them (for objectives that collate themselves)."""
        self._discard()
        examples = self.mixer.next_batch(batch_size, step)
        self.last_from_pool = self.mixer.last_from_pool
        self._consumed = self.mixer.stream.position
        return examples

    # ---- collated batches
    def next_collated(self, batch_size: int, step: int) -> Built:
        """The collated micro-batch the synchronous path gives at this point of the stream."""
        key = (batch_size, step)
        if self._pending is not None and self._pending_key == key:
            built = self._pending.result()
            self._pending = self._pending_key = None
        else:
            self._discard()
            built = self._build(batch_size, step)
            self.on_demand += 1
        self._consumed = built.position
        self.last_from_pool = built.from_pool
        self._taken = self._taken + 1 if step == self._step else 1
        self._step = step
        if self.background:
            following = step if self._taken < self.grad_accum else step + 1
            if self.last_step is None or following < self.last_step:
                self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="batches")
                self._pending_key = (batch_size, following)
                self._pending = self._executor.submit(self._build, batch_size, following)
        return built

    def _build(self, batch_size: int, step: int) -> Built:
        examples = self.mixer.next_batch(batch_size, step)
        batch = self.collator(examples)
        tokens = int(batch["attention_mask"].sum())
        answer_tokens = int((batch["labels"] != IGNORE_INDEX).sum())
        if self.transform is not None:
            batch = self.transform(batch)
        flops = self.count_flops(batch) if self.count_flops is not None else None
        if self.pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        position = self.mixer.stream.position
        return Built(batch, len(examples), self.mixer.last_from_pool, position, tokens, answer_tokens, flops)

    def _discard(self) -> None:
        """Drop the batch built ahead, if any, and put the stream back before its draw."""
        if self._pending is None:
            return
        try:
            self._pending.result()
        except Exception:  # noqa: BLE001 - the same draw on demand raises it again where it matters
            pass
        self._pending = self._pending_key = None
        self.mixer.stream.position = self._consumed

    def close(self) -> None:
        self._discard()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
