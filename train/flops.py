"""Model FLOPs of a training step, and the device's peak, for model FLOPs utilisation (``train/mfu``).

The count is the work the step needs, read from the model's modules and config and the batch's
actual token counts (recomputation by activation checkpointing is not counted, as MFU defines it):

* Matrix products: every ``nn.Linear`` weight (LoRA's included) and every patch-embedding
  convolution weight costs 2 FLOPs per weight per row it is applied to in the forward pass. The
  language model's rows are its tokens, the vision tower's its patches, the projector's the image
  tokens it hands the language model, the output head's the positions projected onto the
  vocabulary (with ``train.loss_chunk`` only the scored ones). Input embeddings are lookups: 0.
* Attention: per layer, 4 x (query heads x head dim) FLOPs per query-key pair (scores and their
  weighted sum). Causal text attention counts the keys each query actually reads (a prompt of L
  tokens: L(L+1)/2 pairs), not the full square; the vision tower attends both ways (n^2 per image,
  or n x window in Qwen2.5-VL's windowed layers).
* Backward: the gradient with respect to each layer's input costs what its forward did (attention
  included) wherever anything before or inside it trains; the gradient of a trainable weight costs
  2 more per weight and row. So a fully trained model costs 6 x parameters x tokens plus 3 x
  attention, a frozen vision tower with nothing trainable before it only its forward 2x.

``peak_flops`` gives a device's peak dense bf16 FLOP/s: ``train.peak_flops`` when set, else the
``LESSONLOOP_PEAK_FLOPS`` environment variable, else the vendor's figure for the GPU's name below.
An unknown device (the CPU included) has none, and ``train/mfu`` is then left out, not guessed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from train.collate import IGNORE_INDEX

log = logging.getLogger(__name__)
PEAK_ENV = "LESSONLOOP_PEAK_FLOPS"

# Dense (no structured sparsity) BF16 tensor-core FLOP/s, by a substring of
# torch.cuda.get_device_name(); the first match wins, so specific names come before general ones.
# Vendor datasheets quote BF16 "with sparsity"; dense is half of that figure.
PEAK_BF16_DENSE: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),  # NVIDIA H100 datasheet: H100 PCIe 1,513 TFLOPS BF16 with sparsity
    ("H100 NVL", 835e12),  # NVIDIA H100 datasheet: H100 NVL 1,671 TFLOPS BF16 with sparsity
    ("H100", 989e12),  # NVIDIA H100 datasheet: H100 SXM 1,979 TFLOPS BF16 with sparsity
    ("H200 NVL", 835e12),  # NVIDIA H200 datasheet: H200 NVL 1,671 TFLOPS BF16 with sparsity
    ("H200", 989e12),  # NVIDIA H200 datasheet: H200 SXM 1,979 TFLOPS BF16 with sparsity
    ("A100", 312e12),  # NVIDIA A100 datasheet: 312 TFLOPS BF16 (624 with sparsity), SXM and PCIe
    ("L40S", 362e12),  # NVIDIA L40S datasheet: 733 TFLOPS BF16 with sparsity
    ("L4", 121e12),  # NVIDIA L4 datasheet: 242 TFLOPS BF16 with sparsity
)


def peak_flops(device: torch.device | str, configured: float = 0.0) -> float | None:
    """The peak dense bf16 FLOP/s of one ``device``: ``configured`` when positive, else the
    ``LESSONLOOP_PEAK_FLOPS`` environment variable, else the table by GPU name; None if unknown."""
    if configured > 0:
        return float(configured)
    env = os.environ.get(PEAK_ENV, "").strip()
    if env:
        try:
            value = float(env)
        except ValueError:
            raise ValueError(f"{PEAK_ENV}={env!r} is not a number of FLOP/s") from None
        if not value > 0:
            raise ValueError(f"{PEAK_ENV} must be positive, got {env!r}")
        return value
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_DENSE if key in name), None)


@dataclass
class Work:
    """What a set of forward passes reads: sums over the batch's rows."""

    tokens: int = 0  # language-model tokens run through its layers
    pairs: int = 0  # causal query-key pairs among them (each token and the keys it reads)
    head: int = 0  # positions projected onto the vocabulary
    image_tokens: int = 0  # rows through the projector
    images: tuple[int, ...] = ()  # patches of each image through the vision tower

    def __add__(self, other: Work) -> Work:
        return Work(self.tokens + other.tokens, self.pairs + other.pairs, self.head + other.head,
                    self.image_tokens + other.image_tokens, self.images + other.images)  # fmt: skip


def _weights(module: nn.Module | None, skip: set[int] = frozenset()) -> tuple[int, int]:
    """(all, trainable) matrix-product weights of ``module``: linear layers and patch convolutions."""
    total = trainable = 0
    for m in module.modules() if module is not None else ():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and id(m) not in skip:
            n = m.weight.numel() if m.weight.numel() else getattr(m.weight, "ds_numel", 0)
            total += n
            trainable += n if m.weight.requires_grad else 0
    return total, trainable


def _width(config: Any) -> int:
    heads = getattr(config, "num_attention_heads", None) or config.num_heads
    hidden = getattr(config, "embed_dim", None) or config.hidden_size
    return heads * (getattr(config, "head_dim", None) or hidden // heads)


def sample_lengths(inputs: dict[str, torch.Tensor]) -> list[int]:
    """Each sample's attended tokens: a padded batch's rows (its attention mask), or the segments
    of a packed one (no mask; a sample starts wherever its 1D positions do not go up by one)."""
    if "attention_mask" in inputs:
        return [int(n) for n in inputs["attention_mask"].sum(dim=1).tolist()]
    positions = inputs["position_ids"]
    if positions.dim() == 3:  # (4, rows, tokens): the 1D positions first, then M-RoPE's three
        positions = positions[0]
    lengths = []
    for row in positions:
        starts = [0, *((row[1:] != row[:-1] + 1).nonzero().flatten() + 1).tolist(), len(row)]
        lengths += [b - a for a, b in zip(starts[:-1], starts[1:], strict=True) if b > a]
    return lengths


class FlopCounter:
    """The FLOPs of forward (and backward) passes of one model, from its modules and config."""

    def __init__(self, model: Any) -> None:
        from models.load import PROJECTOR_NAMES, find_language_model, find_vision_tower
        from train.prompt_sharing import base_model

        hf = base_model(model)
        config = hf.config
        text = config.get_text_config()
        self.layers, self.width = text.num_hidden_layers, _width(text)
        head = hf.get_output_embeddings()
        self.head, self.head_trainable = _weights(head)
        _, language = find_language_model(model)
        self.lm, self.lm_trainable = _weights(language, {id(head)})
        _, tower = find_vision_tower(model)
        named = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in PROJECTOR_NAMES]
        # The outermost projector modules (Qwen2.5-VL's sits inside the vision tower).
        projectors = [m for n, m in named if not any(n.startswith(other + ".") for other, _ in named)]
        inside = {id(m) for p in projectors for m in p.modules()}
        self.vision, self.vision_trainable = _weights(tower, inside)
        counts = [_weights(p) for p in projectors]
        self.proj, self.proj_trainable = sum(c[0] for c in counts), sum(c[1] for c in counts)
        vc = config.vision_config
        self.vision_layers = getattr(vc, "depth", None) or vc.num_hidden_layers
        self.vision_width = _width(vc)
        self.patch_size = vc.patch_size
        full = getattr(vc, "fullatt_block_indexes", None)
        window = getattr(vc, "window_size", None)
        self.windowed_layers = self.vision_layers - len(full) if full is not None and window else 0
        self.window = (window // self.patch_size) ** 2 if self.windowed_layers else 0
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)

    def batch(self, inputs: dict[str, torch.Tensor], head: int) -> Work:
        """A forward pass over ``inputs`` (each row causal over its attended tokens, images
        included) with ``head`` positions projected onto the vocabulary."""
        lengths = sample_lengths(inputs)
        images: tuple[int, ...] = ()
        if "image_grid_thw" in inputs:  # Qwen2-VL style: patches (t x h x w) of each image
            images = tuple(int(n) for n in inputs["image_grid_thw"].prod(dim=1).tolist())
        elif inputs.get("pixel_values") is not None:
            shape = inputs["pixel_values"].shape
            count = int(torch.tensor(shape[:-3]).prod()) if len(shape) > 3 else 1
            images = ((shape[-2] // self.patch_size) * (shape[-1] // self.patch_size),) * count
        image_tokens = int((inputs["input_ids"] == self.image_token_id).sum()) if self.image_token_id else 0
        return Work(
            int(sum(lengths)), int(sum(n * (n + 1) // 2 for n in lengths)), head, image_tokens, images
        )

    def sft(self, batch: dict[str, torch.Tensor], chunk: int) -> float:
        """FLOPs of an SFT micro-batch, forward and backward: the head projects the answer tokens
        (and each row's last position) with ``train.loss_chunk``, every position without."""
        head = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) + len(batch["labels"])
        return self.flops(self.batch(batch, head if chunk else batch["input_ids"].numel()), train=True)

    @staticmethod
    def continuation(context: torch.Tensor, steps: int, head: int) -> Work:
        """``steps`` tokens read after a cached context of ``context[i]`` tokens in each row."""
        rows = len(context)
        pairs = int(context.sum()) * steps + rows * steps * (steps + 1) // 2
        return Work(rows * steps, pairs, head)

    def flops(self, work: Work, train: bool) -> float:
        """FLOPs of the forward passes ``work`` describes, with their backward when ``train``."""
        attention = 4 * self.width * self.layers * work.pairs
        windowed = sum(n * min(n, self.window) for n in work.images) if self.window else 0
        squares = sum(n * n for n in work.images)
        vision_attention = (
            4
            * self.vision_width
            * ((self.vision_layers - self.windowed_layers) * squares + self.windowed_layers * windowed)
        )
        patches = sum(work.images)
        total = 2 * (self.lm * work.tokens + self.head * work.head + self.proj * work.image_tokens
                     + self.vision * patches) + attention + vision_attention  # fmt: skip
        if not train:
            return float(total)
        vision_trains = self.vision_trainable > 0
        projector_back = vision_trains or self.proj_trainable > 0
        lm_back = projector_back or self.lm_trainable > 0 or self.head_trainable > 0
        back = 0  # gradients of the inputs where anything before or inside trains
        if lm_back:
            back += 2 * (self.lm * work.tokens + self.head * work.head) + 2 * attention
        if projector_back:
            back += 2 * self.proj * work.image_tokens
        if vision_trains:
            back += 2 * self.vision * patches + 2 * vision_attention
        weights = 2 * (self.lm_trainable * work.tokens + self.head_trainable * work.head
                       + self.proj_trainable * work.image_tokens + self.vision_trainable * patches)  # fmt: skip
        return float(total + back + weights)


def flop_counter(model: Any) -> FlopCounter | None:
    """The model's ``FlopCounter``, or None (logged) where its layout cannot be read: then no
    FLOPs or utilisation are reported rather than a wrong count."""
    try:
        return FlopCounter(model)
    except (AttributeError, TypeError, ValueError) as err:
        log.warning("model FLOPs not counted (train/mfu left out): %s", err)
        return None


def rollout_work(counter: FlopCounter, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> Work:
    """Sampling ``ids`` ``[N, T]`` after ``inputs``' prompts (``N / prompts`` completions each):
    one pass over each prompt, then ``T - 1`` decoding steps of every row against the cache."""
    group = ids.shape[0] // inputs["input_ids"].shape[0]
    prompts = inputs["input_ids"].shape[0]
    context = inputs["attention_mask"].sum(dim=1).repeat_interleave(group)
    steps = ids.shape[1] - 1
    return counter.batch(inputs, head=prompts) + counter.continuation(context, steps, ids.shape[0] * steps)


def update_work(
    counter: FlopCounter,
    inputs: dict[str, torch.Tensor],
    ids: torch.Tensor,
    mask: torch.Tensor,
    shared: bool,
    chunk: int,
) -> Work:
    """One log-probability pass of ``train.grpo.token_logprobs`` over completions ``ids`` after
    ``inputs``' prompts: each prompt once and the completions against its cache (``shared``), or a
    copy of the prompt per completion; the head over the scored tokens (``chunk``) or all."""
    group = ids.shape[0] // inputs["input_ids"].shape[0]
    rows, steps = ids.shape
    if shared:
        context = inputs["attention_mask"].sum(dim=1).repeat_interleave(group)
        # From hidden states: the scored tokens, and the one position the forward still projects.
        head = int(mask[:, 1:].sum()) + rows if chunk else rows * (steps - 1)
        prompts = counter.batch(inputs, head=inputs["input_ids"].shape[0])
        return prompts + counter.continuation(context, steps - 1, head)
    from train.prompt_sharing import repeat_prompts

    repeated = repeat_prompts(inputs, group)
    head = int(mask.sum()) + rows if chunk else rows * (steps + 1)
    context = repeated["attention_mask"].sum(dim=1)
    return counter.batch(repeated, head=0) + counter.continuation(context, steps, head)
