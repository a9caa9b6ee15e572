"""Vision attention over many pictures in a few calls instead of one call per picture.

Qwen2-VL and Qwen2.5-VL run their vision tower on the patches of every picture of a batch laid
end to end, and attention must stay inside each picture (Qwen2.5-VL: inside each window of a
picture in most layers). Under flash attention transformers passes the boundaries
(``cu_seqlens``) to one variable-length call; under SDPA it splits the sequence and calls
attention once per picture or window: 64 pictures of a batch make hundreds of small calls per
forward pass, each launching its own kernels, which is where a small model's step time goes on a
GPU.

:func:`group_vision_attention` gives those attention modules a forward that stacks the segments
of equal length into one batch and makes one SDPA call per distinct length (pictures of one size:
one call per layer, whatever the batch size). The arithmetic is the same attention over the same
segments; outputs and gradients match the per-segment loop to float rounding (tests).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_EXPECTED = ("hidden_states", "cu_seqlens", "position_embeddings")


def attend_segments(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float
) -> torch.Tensor:
    """Bidirectional attention within each segment of a concatenated sequence.

    ``q``, ``k``, ``v``: ``[tokens, heads, head_dim]``; ``cu_seqlens``: the segments' boundaries,
    ``0`` first and ``tokens`` last. Returns ``[tokens, heads, head_dim]``. Segments of one
    length attend in one batched call."""
    tokens, heads, dim = q.shape
    bounds = cu_seqlens.tolist()
    if bounds[0] != 0 or bounds[-1] != tokens:
        raise ValueError(f"cu_seqlens must run from 0 to {tokens} tokens, got {bounds[0]}..{bounds[-1]}")
    starts_by_length: dict[int, list[int]] = {}
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end > start:
            starts_by_length.setdefault(end - start, []).append(start)

    def attend(idx: torch.Tensor | None, count: int, length: int) -> torch.Tensor:
        parts = [
            (t if idx is None else t[idx]).reshape(count, length, heads, dim).transpose(1, 2)
            for t in (q, k, v)
        ]
        return F.scaled_dot_product_attention(*parts, scale=scale).transpose(1, 2).reshape(-1, heads, dim)

    if len(starts_by_length) == 1:  # one length: the segments tile the sequence in order
        ((length, starts),) = starts_by_length.items()
        return attend(None, len(starts), length)
    out = torch.zeros(tokens, heads, dim, dtype=v.dtype, device=v.device)
    offsets = torch.arange(max(starts_by_length), device=q.device)
    for length, starts in starts_by_length.items():
        idx = (torch.tensor(starts, device=q.device)[:, None] + offsets[:length]).reshape(-1)
        out = out.index_copy(0, idx, attend(idx, len(starts), length))
    return out


def _grouped_forward(rotary: Callable, native: Callable) -> Callable:
    def forward(
        self: nn.Module,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        *args: Any,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if args or position_embeddings is None:  # a call this forward does not know: the class's own
            return native(
                self, hidden_states, cu_seqlens, *args, position_embeddings=position_embeddings, **kwargs
            )
        tokens = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(tokens, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = rotary(q, k, cos, sin)
        out = attend_segments(q, k, v, cu_seqlens, self.scaling)
        return self.proj(out.reshape(tokens, -1))

    return forward


def _rotary_of(module: nn.Module) -> Callable | None:
    """The vision rotary function of the module's own modeling file, when the module is one of
    the Qwen-VL family's vision attentions whose forward this file reproduces: a ``qkv`` and a
    ``proj`` projection, and a forward taking ``hidden_states``, ``cu_seqlens`` and
    ``position_embeddings`` (the cosines and sines of its rotary positions)."""
    rotary = getattr(sys.modules.get(type(module).__module__), "apply_rotary_pos_emb_vision", None)
    if rotary is None or not all(hasattr(module, name) for name in ("qkv", "proj", "num_heads", "scaling")):
        return None
    params = list(inspect.signature(type(module).forward).parameters)[1:]
    return rotary if params[:2] == list(_EXPECTED[:2]) and _EXPECTED[2] in params else None


def group_vision_attention(model: nn.Module) -> int:
    """Give every Qwen-VL vision attention module of ``model`` that runs under SDPA the grouped
    forward; return how many. Flash attention (already one variable-length call) and eager
    attention (asked for by name, for its exact softmax) keep their own forward."""
    grouped = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "_attn_implementation", None) != "sdpa":
            continue
        rotary = _rotary_of(module)
        if rotary is not None:
            module.forward = MethodType(_grouped_forward(rotary, type(module).forward), module)
            grouped += 1
    return grouped


def ungroup_vision_attention(model: nn.Module) -> int:
    """Give the vision attention modules that :func:`group_vision_attention` changed their class's
    forward back (transformers' per-segment loop); return how many. Grouping again reinstalls it."""
    grouped = [m for m in model.modules() if isinstance(vars(m).get("forward"), MethodType)]
    for module in grouped:
        del module.forward
    return len(grouped)
