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

With ``workers`` (``train.data_workers``) the collating moves to that many processes, each with
its own copy of the collator, and ``2 x workers`` micro-batches are kept in flight: the examples
are still drawn here, in order, when a batch is sent off (so the stream is the same), the worker
processes the pictures, tokenizes and applies ``transform`` (packing, M-RoPE positions: it is
sent to the workers once, pickled, with the collator), its tensors come back through shared
memory, and the background thread counts and pins them. On a host whose cores outnumber what the step
uses, building batches then takes nothing from the process that launches the model's work.
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from curriculum.mixer import Mixer
from curriculum.types import Example
from train.collate import IGNORE_INDEX, VLMCollator

# What the loop does to a collated batch before the step: packing, or adding M-RoPE positions.
Transform = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


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
        transform: Transform | None = None,
        count_flops: Callable[[dict[str, torch.Tensor]], float] | None = None,
        workers: int = 0,
    ) -> None:
        self.mixer = mixer
        self.background = background or workers > 0
        self.collator = copy.deepcopy(collator) if self.background else collator
        self.grad_accum = grad_accum
        self.workers = workers
        self.depth = 2 * workers if workers else 1  # micro-batches in flight
        self.pin_memory = pin_memory
        self.last_step = last_step  # no batch is built ahead for a step at or past it
        self.transform = transform  # applied to each collated batch (packing, M-RoPE positions)
        self.count_flops = count_flops  # the model FLOPs of training on a batch as the model reads it
        self._executor: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        # in flight, in order: (batch size, step), (step, micro-batches of it taken by then), its Built
        self._ahead: deque[tuple[tuple[int, int], tuple[int, int], Future]] = deque()
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
        if self._ahead and self._ahead[0][0] == (batch_size, step):
            built = self._ahead.popleft()[2].result()
        else:
            self._discard()
            built = self._build(batch_size, step)
            self.on_demand += 1
        self._consumed = built.position
        self.last_from_pool = built.from_pool
        self._taken = self._taken + 1 if step == self._step else 1
        self._step = step
        if self.background:
            self._fill(batch_size)
        return built

    def _fill(self, batch_size: int) -> None:
        """Keep ``depth`` micro-batches in flight: the next ones this loop will ask for."""
        step, taken = self._ahead[-1][1] if self._ahead else (self._step, self._taken)
        while len(self._ahead) < self.depth:
            step, taken = (step, taken + 1) if taken < self.grad_accum else (step + 1, 1)
            if self.last_step is not None and step >= self.last_step:
                return
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="batches")
            if self.workers:  # drawn here, in order; collated in a worker process
                examples = self.mixer.next_batch(batch_size, step)
                drawn = (len(examples), self.mixer.last_from_pool, self.mixer.stream.position)
                collated = self._worker_pool().submit(_collate_in_worker, examples)
                future = self._executor.submit(lambda c=collated, d=drawn: self._finish(*c.result(), *d))
            else:
                future = self._executor.submit(self._build, batch_size, step)
            self._ahead.append(((batch_size, step), (step, taken), future))

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with CUDA or threads
                initializer=_start_worker,
                initargs=(pickle.dumps((self.collator, self.transform)),),
            )
        return self._processes

    def _build(self, batch_size: int, step: int) -> Built:
        examples = self.mixer.next_batch(batch_size, step)
        built = _collate(self.collator, self.transform, examples)
        return self._finish(*built, len(examples), self.mixer.last_from_pool, self.mixer.stream.position)

    def _finish(
        self, batch: dict[str, torch.Tensor], tokens: int, answer_tokens: int, samples: int, from_pool: int,
        position: int,
    ) -> Built:  # fmt: skip
        flops = self.count_flops(batch) if self.count_flops is not None else None
        if self.pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return Built(batch, samples, from_pool, position, tokens, answer_tokens, flops)

    def _discard(self) -> None:
        """Drop the batches built ahead, if any, and put the stream back before their draws."""
        if not self._ahead:
            return
        for _, _, future in self._ahead:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the same draw on demand raises it again where it matters
                pass
        self._ahead.clear()
        self.mixer.stream.position = self._consumed

    def close(self) -> None:
        self._discard()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._processes is not None:
            self._processes.shutdown(wait=True)
            self._processes = None


def _collate(
    collator: VLMCollator, transform: Transform | None, examples: list[Example]
) -> tuple[dict[str, torch.Tensor], int, int]:
    """The batch of ``examples`` as the step takes it, with its real and supervised tokens (counted
    before ``transform``: packing drops the attention mask)."""
    batch = collator(examples)
    tokens = int(batch["attention_mask"].sum())
    answer_tokens = int((batch["labels"] != IGNORE_INDEX).sum())
    return (transform(batch) if transform is not None else batch), tokens, answer_tokens


_worker: tuple[VLMCollator, Transform | None] | None = None


def _start_worker(collator_and_transform: bytes) -> None:
    global _worker
    torch.set_num_threads(1)  # one core per worker: the workers run side by side
    _worker = pickle.loads(collator_and_transform)


def _collate_in_worker(examples: list[Example]) -> tuple[dict[str, torch.Tensor], int, int]:
    assert _worker is not None
    return _collate(*_worker, examples)
