"""One encoding of a prompt, image included, for several continuations of it.

GRPO samples ``group_size`` completions per prompt and then scores them all. Encoding each prompt
once and repeating its key-value cache for its completions gives the same numbers as a copy of the
prompt per completion, at a fraction of the work when prompts (images) are long and completions
short: ``sample_completions`` draws completions that way, ``shared_prompt_logits`` scores them that
way (gradients flow back through the cache), and ``full_logits`` over ``repeat_prompts`` is the
copy-per-completion path, kept for gradient checkpointing, which drops the cache.

Rotary positions: a model with multimodal rotary positions (Qwen2-VL style) computes its prompts'
own in the prompt pass and keeps each prompt's offset (``rope_deltas``); text tokens after it
continue from there exactly as ``generate`` places them. Other models count positions from the
cache, which gives the same attention under rotary embeddings.

Per-token inputs: the copy-per-completion path reads prompt and completion in one pass, so inputs
the processor gives per prompt token (token types and the like) must be continued over the
completion, and what a generated token is differs by model under the same name (PaliGemma's
``token_type_ids`` mark it 1, the causal suffix; Gemma3's keep 0, not an image). They are continued
by the model's own generation update, exactly as ``generate`` continues them (``continued_inputs``).
The shared path passes none of them after the prompt: its completion tokens read the cache causally.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from transformers.utils import ModelOutput


@torch.no_grad()
def sample_completions(
    model: Any,
    inputs: dict[str, torch.Tensor],
    group: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    suppressed: list[int] | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    synced: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``group`` completions ``[P * group, T]`` per prompt of ``inputs`` (each prompt's rows
    together), sampled at ``temperature`` from the full distribution (no top-k; nucleus ``top_p``;
    ``suppressed`` tokens never drawn), and the log-probability of each drawn token under the
    tempered distribution before the nucleus cut, which is what the update computes for it.

    Tokens after a row's end-of-sequence are ``pad_id``. Decoding stops when every row has ended,
    or after ``max_new_tokens``; ``synced`` always runs all ``max_new_tokens`` steps, so that ranks
    holding parameter shards step together."""
    prompts = encode_once(model, inputs, group)
    logits, attention = prompts.logits, inputs["attention_mask"].repeat_interleave(group, dim=0)
    ended = torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    tokens, logprobs = [], []
    for t in range(max_new_tokens):
        token, logprob = _draw(logits, temperature, top_p, suppressed)
        logprobs.append(logprob)
        token = end_rows(token, ended, eos_id, pad_id)
        tokens.append(token)
        if t == max_new_tokens - 1 or (bool(ended.all()) and not synced):
            break
        attention = torch.cat([attention, attention.new_ones(len(attention), 1)], dim=1)
        logits = continue_from(model, prompts, token[:, None], attention)[:, -1]
    return torch.stack(tokens, dim=1), torch.stack(logprobs, dim=1)


def end_rows(token: torch.Tensor, ended: torch.Tensor, eos_id: int | None, pad_id: int) -> torch.Tensor:
    """A decoding step's ``token`` per row, ``pad_id`` in the rows that had ended; ``ended`` (in
    place) also marks the rows that end with this token (``eos_id``; None: no row ever ends)."""
    if eos_id is None:
        return token
    token = torch.where(ended, torch.full_like(token, pad_id), token)
    ended |= token == eos_id
    return token


def _draw(
    logits: torch.Tensor, temperature: float, top_p: float, suppressed: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from ``softmax(logits / temperature)``, cut to the nucleus ``top_p``, and
    its log-probability before the cut."""
    scores = logits.float() / temperature
    if suppressed:
        scores[:, suppressed] = float("-inf")
    full = torch.log_softmax(scores, dim=-1)
    if top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > top_p  # the mass before a token already exceeds top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    token = torch.multinomial(scores.softmax(dim=-1), 1).squeeze(1)
    return token, full.gather(-1, token[:, None]).squeeze(1)


def full_logits(
    model: Any, inputs: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor, hidden: bool = False
) -> torch.Tensor:
    """Next-token logits ``[N, T, V]`` for each completion token, from one forward pass over each
    prompt row (one per completion) followed by its completion. ``hidden``: the final hidden states
    ``[N, T, H]`` those logits are projected from instead (no vocabulary-sized tensor is made)."""
    full = torch.cat([inputs["input_ids"], ids], dim=1)
    attention = torch.cat([inputs["attention_mask"], mask.to(inputs["attention_mask"].dtype)], dim=1)
    t = ids.shape[1]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    # Per-token fields (token types, ...) continue over the completion as generation continues them.
    per_token = {k: v for k, v in extra.items() if v.shape[:2] == inputs["input_ids"].shape}
    extra.update(continued_inputs(model, per_token, t))
    if hidden:
        return final_hidden(model, input_ids=full, attention_mask=attention, **extra)[:, -t - 1 : -1]
    logits = model(input_ids=full, attention_mask=attention, logits_to_keep=t + 1, **extra).logits
    return logits[:, -t - 1 : -1]


def continued_inputs(model: Any, per_token: dict[str, torch.Tensor], t: int) -> dict[str, torch.Tensor]:
    """The prompts' per-token inputs (token types and the like, ``[N, L, ...]``) extended over ``t``
    generated tokens, as ``generate`` extends them: by the model's own generation update, one token
    at a time. What a generated token is differs by model under the same name: PaliGemma marks it
    1 in ``token_type_ids`` (its causal suffix; 0 would put it in the bidirectional prefix), Gemma3
    repeats the last text value there (0: not an image), Qwen2-VL's ``mm_token_type_ids`` get 0.
    An input the update does not extend cannot be continued and is refused."""
    update = base_model(model)._update_model_kwargs_for_generation
    grown = dict(per_token)
    for _ in range(t):
        grown = update(ModelOutput(), dict(grown), is_encoder_decoder=False, num_new_tokens=1)
    stuck = sorted(k for k, v in per_token.items() if grown[k].shape[1] != v.shape[1] + t)
    if stuck:
        raise ValueError(f"the model's generation update does not extend the prompt input(s) {stuck}")
    return {k: grown[k] for k in per_token}


def shared_prompt_logits(
    model: Any, inputs: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor, group: int
) -> torch.Tensor:
    """What ``full_logits`` gives for each prompt repeated ``group`` times, with every prompt (and
    its image) encoded once: the prompts' pass fills a key-value cache, which is repeated for each
    prompt's completions, and a second pass reads the completions against it. Gradients flow
    through the cache into the prompt pass."""
    prompts = encode_once(model, inputs, group)
    first = prompts.logits[:, None]
    if ids.shape[1] == 1:
        return first
    attention = torch.cat([inputs["attention_mask"].repeat_interleave(group, dim=0), mask[:, :-1]], dim=1)
    return torch.cat([first, continue_from(model, prompts, ids[:, :-1], attention)], dim=1)


class Encoded(NamedTuple):
    """Prompts encoded once, ready for ``group`` continuations each."""

    logits: torch.Tensor  # [P * group, V]: the next-token logits after each prompt, repeated
    cache: Any  # the key-value cache, repeated
    cache_key: str  # the name the model's forward takes it under
    offset: torch.Tensor | None  # [P * group, 1]: multimodal rotary offset of each prompt


def encode_once(model: Any, inputs: dict[str, torch.Tensor], group: int, cache: Any = None) -> Encoded:
    """One forward pass over the prompts (images included); its cache, last logits and rotary
    offsets repeated ``group`` times, prompt by prompt. ``cache``: an empty cache to fill (a
    ``StaticCache`` allocated once); none: the model's own."""
    cache_key = _cache_argument(model)
    given = {cache_key: cache} if cache is not None else {}
    out = model(**inputs, use_cache=True, logits_to_keep=1, **given)
    cache = getattr(out, cache_key)
    if group > 1:
        cache.batch_repeat_interleave(group)
    rope = _multimodal_rope(model)  # its offsets are those of the pass just made
    offset = rope.rope_deltas.repeat_interleave(group, dim=0) if rope is not None else None
    return Encoded(out.logits[:, -1].repeat_interleave(group, dim=0), cache, cache_key, offset)


def continue_from(
    model: Any, prompts: Encoded, ids: torch.Tensor, attention: torch.Tensor, hidden: bool = False
) -> torch.Tensor:
    """Logits ``[N, k, V]`` of the tokens ``ids`` ``[N, k]`` read after the cached prompts (and what
    was read after them before); ``attention`` covers everything from the prompts' first token. The
    cache grows by these tokens. ``hidden``: the final hidden states ``[N, k, H]`` instead."""
    extra = {}
    if prompts.offset is not None:  # text positions: the count of attended tokens, plus the offset
        text = attention.cumsum(dim=-1)[:, -ids.shape[1] :] - 1
        extra["position_ids"] = text + prompts.offset.to(text.device)
    kwargs = {prompts.cache_key: prompts.cache, **extra}
    if hidden:
        return final_hidden(model, input_ids=ids, attention_mask=attention, use_cache=True, **kwargs)
    return model(input_ids=ids, attention_mask=attention, use_cache=True, **kwargs).logits


def final_hidden(model: Any, **inputs: Any) -> torch.Tensor:
    """The language model's final (normed) hidden states ``[N, L, H]`` over ``inputs``, which the
    output head would turn into logits. The forward runs through ``model`` as given (DDP, DeepSpeed,
    PEFT and mixed-precision wrappers see it) with one position's logits; the hidden states are
    taken from the language model's output by a hook, so no other layer's are returned or copied."""
    from models.load import find_language_model

    _, language_model = find_language_model(model)
    captured: list[torch.Tensor] = []

    def keep(module: Any, args: Any, output: Any) -> None:
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = language_model.register_forward_hook(keep)
    try:
        model(**inputs, logits_to_keep=1)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"the language model ran {len(captured)} times in one forward pass, expected once")
    return captured[0]


def per_prompt(inputs: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The prompt inputs cut into one batch of one prompt each (one image each)."""
    prompts = inputs["input_ids"].shape[0]
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(prompts)]
    for key, value in inputs.items():
        if value.shape[0] == prompts:
            pieces = value.split(1)
        elif key == "pixel_values" and "image_grid_thw" in inputs:
            # Qwen2-VL style: image patches flattened over prompts; cut by each one's patch count.
            pieces = value.split(inputs["image_grid_thw"].prod(dim=1).tolist())
        else:
            raise ValueError(f"cannot tell which rows of the prompt input {key!r} belong to which prompt")
        for part, piece in zip(parts, pieces, strict=True):
            part[key] = piece
    return parts


def repeat_prompts(inputs: dict[str, torch.Tensor], group: int) -> dict[str, torch.Tensor]:
    """The prompt inputs with every prompt repeated ``group`` times in a row."""
    parts = per_prompt(inputs)
    return {
        key: torch.cat([p[key].repeat(group, *[1] * (p[key].dim() - 1)) for p in parts]) for key in inputs
    }


def base_model(model: Any) -> Any:
    """The Hugging Face model inside DDP / DeepSpeed / PEFT wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def checkpointing(model: Any) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers renamed the flag."""
    base = base_model(model)
    flag = getattr(base, "is_activation_checkpointing", None)
    return bool(getattr(base, "is_gradient_checkpointing", False) if flag is None else flag)


def _cache_argument(model: Any) -> str:
    """The name under which this transformers version's forward takes and returns the cache."""
    params = inspect.signature(base_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _multimodal_rope(model: Any) -> Any:
    """The submodule that keeps per-prompt multimodal rotary offsets (``rope_deltas``), if any."""
    for module in base_model(model).modules():
        if hasattr(module, "rope_deltas") and hasattr(module, "get_rope_index"):
            return module
    return None
