"""Losses that never hold the whole ``[tokens, vocabulary]`` logits.

A causal LM's forward ends in ``lm_head``: a ``[tokens, hidden]`` by ``[hidden, vocabulary]``
product, kept whole (often upcast to float32, then again for the softmax) until the backward pass.
At a 152k-row vocabulary that is the largest tensor of a step. Here the model's forward runs with
``logits_to_keep=1`` (one position's logits) and the language model's final hidden states are
taken from it (``train.prompt_sharing.final_hidden``); the loss then takes only the positions
that are scored (SFT: the answer tokens; GRPO: the completion tokens), and projects them onto the
vocabulary ``chunk`` positions at a time. Each chunk is recomputed in
the backward pass (activation checkpointing), so at most one chunk's logits are alive at once.
The numbers are those of the full-logits path within float rounding (``tests/test_losses.py``).

The forward goes through the model as the caller holds it (DDP, DeepSpeed, PEFT and autocast
wrappers all see their forward); the head is the model's own ``get_output_embeddings()``, with the
text config's logit scaling and soft-capping applied as transformers applies them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from train.collate import IGNORE_INDEX
from train.prompt_sharing import base_model, final_hidden

# Text-config attributes that change logits after lm_head, and how transformers applies them.
_SCALE = "logit_scale"  # multiplied (Cohere)
_DIVIDE = "logits_scaling"  # divided (Granite)
_SOFTCAP = "final_logit_softcapping"  # tanh soft cap (Gemma 2 and 3)


class OutputHead:
    """The model's vocabulary projection as the model's forward applies it: ``lm_head`` followed
    by the text config's logit scaling and soft-capping."""

    def __init__(self, model: Any) -> None:
        hf = base_model(model)
        self.module = hf.get_output_embeddings()
        if self.module is None:
            raise ValueError(
                f"{type(hf).__name__} has no output embeddings (get_output_embeddings() is None)"
            )
        config = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
        self.scale = getattr(config, _SCALE, None)
        self.divide = getattr(config, _DIVIDE, None)
        self.softcap = getattr(config, _SOFTCAP, None)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = getattr(self.module, "weight", None)
        if weight is not None and weight.dtype != hidden.dtype:
            # Under autocast the final hidden states can be float32 beside bfloat16 weights; the
            # forward's autocast would have run the head in the weights' precision, as this does.
            hidden = hidden.to(weight.dtype)
        logits = self.module(hidden)
        if self.scale is not None:
            logits = logits * self.scale
        if self.divide is not None:
            logits = logits / self.divide
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def trains(self) -> bool:
        return any(p.requires_grad for p in self.module.parameters())


def _chunk_logprobs(
    head: OutputHead,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    suppressed: tuple[int, ...],
) -> torch.Tensor:
    logits = head(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    if suppressed:
        logits[:, list(suppressed)] = float("-inf")
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def target_logprobs(
    head: OutputHead,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk: int,
    temperature: float = 1.0,
    suppressed: list[int] | None = None,
) -> torch.Tensor:
    """Log-probabilities (float32) of ``targets`` ``[K]`` under the logits of ``hidden`` ``[K, H]``,
    at ``temperature`` with ``suppressed`` tokens excluded, ``chunk`` positions at a time. Under
    autograd each chunk's logits are recomputed in the backward pass instead of being kept."""
    fn = partial(_chunk_logprobs, head, temperature=temperature, suppressed=tuple(suppressed or ()))
    keep_graph = torch.is_grad_enabled() and (hidden.requires_grad or head.trains())
    parts = []
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        parts.append(checkpoint(fn, h, t, use_reentrant=False) if keep_graph else fn(h, t))
    if not parts:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(parts)


def answer_loss(model: Any, batch: dict[str, torch.Tensor], chunk: int) -> torch.Tensor:
    """The SFT loss ``model(**batch).loss`` computes (mean next-token cross-entropy over the
    labelled tokens), from the hidden states of the labelled positions only, ``chunk`` at a time;
    ``chunk`` 0: ``model(**batch).loss`` itself."""
    if not chunk:
        return model(**batch).loss
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = final_hidden(model, **inputs, use_cache=False)[:, :-1]
    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    logp = target_logprobs(OutputHead(model), hidden[scored], targets[scored], chunk)
    # As transformers' loss: the mean over labelled tokens (NaN when there are none).
    return -logp.sum() / scored.sum()


def completion_logprobs(
    model: Any,
    inputs: dict[str, torch.Tensor],
    ids: torch.Tensor,
    mask: torch.Tensor,
    group: int,
    temperature: float,
    suppressed: list[int] | None,
    chunk: int,
    shared: bool,
) -> torch.Tensor:
    """What ``train.grpo.token_logprobs`` computes (``[N, T]`` log-probabilities of the completion
    tokens ``ids`` after their prompts), from hidden states, ``chunk`` positions at a time, at the
    masked (scored) positions only; the rest are 0. ``shared``: each prompt encoded once for its
    ``group`` completions (``shared_prompt_logits``); else one copy per completion (``full_logits``)."""
    from train.prompt_sharing import continue_from, encode_once, full_logits, repeat_prompts

    head = OutputHead(model)
    scored = mask.bool()
    if not shared:
        hidden = full_logits(model, repeat_prompts(inputs, group), ids, mask, hidden=True)
        values = target_logprobs(head, hidden[scored], ids[scored], chunk, temperature, suppressed)
        return values.new_zeros(ids.shape).index_put((scored,), values)
    prompts = encode_once(model, inputs, group)
    # The first token's logits come from the prompt pass (one position per prompt, repeated).
    first = prompts.logits.float()
    if temperature != 1.0:
        first = first / temperature
    if suppressed:
        first[:, suppressed] = float("-inf")
    first = torch.log_softmax(first, dim=-1).gather(-1, ids[:, :1]).squeeze(-1)
    first = torch.where(scored[:, 0], first, 0.0)
    if ids.shape[1] == 1:
        return first[:, None]
    attention = torch.cat([inputs["attention_mask"].repeat_interleave(group, dim=0), mask[:, :-1]], dim=1)
    hidden = continue_from(model, prompts, ids[:, :-1], attention, hidden=True)
    rest = scored[:, 1:]
    values = target_logprobs(head, hidden[rest], ids[:, 1:][rest], chunk, temperature, suppressed)
    return torch.cat([first[:, None], values.new_zeros(rest.shape).index_put((rest,), values)], dim=1)
