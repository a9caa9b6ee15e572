"""Batched greedy decoding with a key-value cache allocated once, for evaluation and probes.

``generate`` grows its cache by concatenation at every step (a new allocation and a copy of every
layer's keys and values per token) and rebuilds its attention mask each time. Here the cache is a
``StaticCache`` sized for the prompt plus the longest answer, written in place; the attention mask
is allocated at that full length once and one column is switched on per step; every decoding step
reads tensors of the same shapes. That last property lets ``compile`` hand the decoding step to
``torch.compile`` (CUDA graphs through ``mode="reduce-overhead"``) on a GPU, where a small model's
step is otherwise bound by kernel launches.

The answers are ``generate``'s greedy answers (``tests/test_decode.py``, every architecture):
the same prompt pass, the same rotary positions (multimodal ones continue from each prompt's
offset, as in ``train/prompt_sharing.py``), the same suppressed tokens, stopping at the
end-of-sequence token with what follows it padded.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from transformers import StaticCache

from train.prompt_sharing import Encoded, _cache_argument, base_model, encode_once, end_rows

log = logging.getLogger(__name__)


class _Step:
    """One decoding step ``(ids [B, 1], attention [B, L], positions [B, 1] | None) -> logits [B, V]``,
    compiled when asked. A compiled step keeps its caches and reuses them (reset) for batches of the
    same shape, so the compiled graph meets the same tensors again instead of compiling anew."""

    def __init__(self, model: Any, cache_key: str, compiled: bool) -> None:
        self.model = weakref.ref(model)  # the step is kept per model; it must not keep the model alive
        self.cache_key, self.compiled, self.cache = cache_key, compiled, None
        self.caches: dict[tuple[int, int], StaticCache] = {}
        self.forward = (
            torch.compile(self._forward, mode="reduce-overhead", dynamic=False) if compiled else self._forward
        )

    def new_cache(self, model: Any, rows: int, length: int) -> StaticCache:
        cache = self.caches.get((rows, length)) if self.compiled else None
        if cache is None:
            cache = StaticCache(config=base_model(model).config, max_cache_len=length)
            if self.compiled:
                self.caches[(rows, length)] = cache
        else:
            cache.reset()
        return cache

    def _forward(
        self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor | None
    ) -> torch.Tensor:
        extra = {"position_ids": positions} if positions is not None else {}
        out = self.model()(input_ids=ids, attention_mask=attention, use_cache=True, logits_to_keep=1,
                           **{self.cache_key: self.cache}, **extra)  # fmt: skip
        return out.logits[:, -1]


_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled step
BUCKET = 64  # compiled: cache lengths rounded up to a multiple of this, so few shapes compile


@torch.no_grad()
def greedy_decode(
    model: Any,
    inputs: dict[str, torch.Tensor],
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    suppressed: list[int] | None = None,
    synced: bool = False,
    compile: bool = False,
    bucket: int | None = None,
) -> torch.Tensor:
    """Greedy continuations ``[B, T]`` of the left-padded prompts ``inputs``, ``T <= max_new_tokens``;
    tokens after a row's end-of-sequence are ``pad_id``. Decoding stops when every row has ended
    (``synced``: always runs ``max_new_tokens`` steps, for ranks holding parameter shards).
    ``compile``: compile the decoding step (CUDA only; elsewhere it runs as is). ``bucket``: round
    the cache length up to a multiple of this (default: ``BUCKET`` when compiled, else 1)."""
    mask = inputs["attention_mask"]
    rows, prompt = mask.shape
    compiled = compile and mask.device.type == "cuda"
    if compile and not compiled:
        log.info(
            "eval.compile: decoding steps are compiled on CUDA only; decoding uncompiled on %s", mask.device
        )
    step = _compiled.get(model) if compiled else None
    if step is None:
        step = _Step(model, _cache_argument(model), compiled)
        if compiled:
            _compiled[model] = step
    bucket = bucket or (BUCKET if compiled else 1)
    length = -(-(prompt + max_new_tokens) // bucket) * bucket
    prompts: Encoded = encode_once(model, inputs, 1, cache=step.new_cache(model, rows, length))
    step.cache = prompts.cache
    attention = torch.zeros(rows, length, dtype=mask.dtype, device=mask.device)
    attention[:, :prompt] = mask
    count = mask.sum(dim=1, keepdim=True)  # tokens each row has read: the next text position
    logits = prompts.logits
    ended = torch.zeros(rows, dtype=torch.bool, device=mask.device)
    tokens = []
    for t in range(max_new_tokens):
        scores = logits.to(torch.float32, copy=True)  # a compiled step's output is overwritten next step
        if suppressed:
            scores[:, suppressed] = float("-inf")
        token = end_rows(scores.argmax(dim=-1), ended, eos_id, pad_id)
        tokens.append(token)
        if t == max_new_tokens - 1 or (bool(ended.all()) and not synced):
            break
        attention[:, prompt + t] = 1
        positions = count + prompts.offset.to(count.device) if prompts.offset is not None else None
        logits = step.forward(token[:, None], attention, positions)
        count = count + 1
    return torch.stack(tokens, dim=1)
