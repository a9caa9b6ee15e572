"""Padding-free SFT batches: the samples of a micro-batch laid end to end in as few rows as fit.

A padded batch spends compute on padding; a packed one spends none (or only on the short tail of
its last rows). Each sample keeps its own positions, counted from 0 as if it were alone, and the
attention mask is left out: transformers then reads the packed layout from the position ids (a
new sample wherever they do not go up by one) and lets no token attend to another sample's, as a
block-diagonal mask under SDPA and eager, a document mask under flex attention, or variable-length
sequences (``cu_seqlens``) under flash attention. Qwen2-VL and Qwen2.5-VL place text and image
tokens by 3D (M-RoPE) positions: each sample's are computed by the model's own ``get_rope_index``
on the padded batch, where every row is alone, and passed beside the plain 1D positions that
mark where samples start (the ``(4, rows, tokens)`` layout these models accept).

The loss is the same: the model's cross-entropy is the mean over every supervised token of the
batch, packed or not, and no supervised token is predicted across a seam because every sample
begins with its prompt, which is never supervised. Pictures stay as the processor batched them:
every supported model takes their features in the order of their placeholders, which packing
keeps. Prefix-LM models (PaliGemma: a bidirectional prefix per sample) cannot be packed this way
and are refused, as is any architecture not tested to pack exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from train.collate import IGNORE_INDEX

# Architectures whose packed loss and gradients were checked against the padded ones (tests/test_packing.py).
PACKABLE = ("qwen2_vl", "qwen2_5_vl", "llava", "idefics3", "smolvlm")
# Inputs that are not one value per token, whatever their shape happens to be.
NOT_PER_TOKEN = ("attention_mask", "pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes")


def _rope_index(model: Any) -> Callable[..., Any] | None:
    """The model's M-RoPE position function, if it has one (found through wrappers: PEFT, DDP),
    bound to a stand-in that holds only the model's class and config: it pickles small, so data
    worker processes can compute positions without a copy of the weights."""
    for module in model.modules():
        if hasattr(type(module), "get_rope_index"):
            return _ConfigOnly(type(module), module.config).get_rope_index
    return None


class _ConfigOnly:
    """A model's methods without its weights: ``config`` is the model's, and any other attribute is
    the model class's, bound to this object (``get_rope_index`` reads only the config and calls
    helpers of its class; one that reached for a layer would fail loudly, not differ)."""

    def __init__(self, cls: type, config: Any) -> None:
        self.cls, self.config = cls, config

    def __getattr__(self, name: str) -> Any:
        if name in ("cls", "config"):  # not yet set (unpickling)
            raise AttributeError(name)
        raw = inspect.getattr_static(self.cls, name)
        if isinstance(raw, staticmethod | classmethod) or not inspect.isfunction(raw):
            return getattr(self.cls, name)  # bound to the class, or a plain value
        return raw.__get__(self)


def model_type(model: Any) -> str:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "model_type", None):
            return config.model_type
    return type(model).__name__


class RopePositions:
    """Callable on a padded training batch: adds the M-RoPE position ids (``(3, rows, tokens)``)
    that the model's forward would otherwise compute from it, by the model's own
    ``get_rope_index``. Computed with the batch, on the host and off the training step: in the
    forward on a GPU it walks the batch row by row with a device sync for each (hundreds per
    step at batches of 64), stalling the kernel queue. The same positions, so the same loss.
    Picklable (the model's config, not its weights): data worker processes apply it."""

    def __init__(self, rope_index: Callable[..., Any]) -> None:
        self.rope_index = rope_index
        self._args = set(inspect.signature(rope_index).parameters)

    @classmethod
    def of(cls, model: Any) -> RopePositions | None:
        """For a model with M-RoPE positions (Qwen2-VL, Qwen2.5-VL), else None."""
        rope_index = _rope_index(model)
        return cls(rope_index) if rope_index is not None else None

    def positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rope, _ = self.rope_index(**{k: v for k, v in batch.items() if k in self._args})
        return rope

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "position_ids": self.positions(batch)}


class Packer:
    """Callable on a right-padded training batch (the collator's); returns it packed."""

    def __init__(self, model: Any, pad_token_id: int, max_tokens: int = 0) -> None:
        kind = model_type(model)
        if kind not in PACKABLE:
            raise ValueError(
                f"train.packing: {kind} cannot be packed (packing supports {', '.join(PACKABLE)}); "
                "set train.packing=false"
            )
        self.pad_token_id = pad_token_id
        self.max_tokens = max_tokens
        self.rope = RopePositions.of(model)

    def rows(self, lengths: list[int]) -> list[list[int]]:
        """Samples (in order) per packed row: each row takes the next sample while it fits in
        ``max_tokens`` (0: no limit); a sample longer than that has a row of its own."""
        rows: list[list[int]] = []
        used = 0
        for i, n in enumerate(lengths):
            if rows and (self.max_tokens == 0 or used + n <= self.max_tokens):
                rows[-1].append(i)
                used += n
            else:
                rows.append([i])
                used = n
        return rows

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        if not bool(mask[:, 0].all()) or bool((mask[:, 1:] > mask[:, :-1]).any()):
            raise ValueError("packing takes right-padded rows")
        if bool((labels[:, 0] != IGNORE_INDEX).any()):
            raise ValueError("packing needs every sample to start with an unsupervised token")
        lengths = mask.sum(dim=1).tolist()
        rows = self.rows(lengths)
        width = max(sum(lengths[i] for i in row) for row in rows)
        per_token = [k for k, v in batch.items() if k not in NOT_PER_TOKEN and v.shape == ids.shape]
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        out = {k: v for k, v in batch.items() if k not in per_token and k != "attention_mask"}
        for key in per_token:
            value = batch[key]
            packed = value.new_full((len(rows), width, *value.shape[2:]), fill.get(key, 0))
            for r, row in enumerate(rows):
                at = 0
                for i in row:
                    packed[r, at : at + lengths[i]] = value[i, : lengths[i]]
                    at += lengths[i]
            out[key] = packed
        # Positions from 0 in every sample, and in the padding after the last (a segment of its own).
        positions = torch.zeros(len(rows), width, dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for n in [*(lengths[i] for i in row), width - sum(lengths[i] for i in row)]:
                positions[r, at : at + n] = torch.arange(n)
                at += n
        if self.rope is None:
            out["position_ids"] = positions
            return out
        rope = self.rope.positions(batch)
        packed = positions.new_zeros(4, len(rows), width)
        packed[0] = positions
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                packed[1:, r, at : at + lengths[i]] = rope[:, i, : lengths[i]].to(packed.device)
                at += lengths[i]
        out["position_ids"] = packed
        return out
