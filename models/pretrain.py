"""Pretraining a built tiny VLM's vision tower on what each of its image tokens shows.

A real VLM starts from an image encoder that has already learned to see; a tiny model built
with random weights has not, and learning to see through the language model's loss alone is
slow: on the built-in world, "What shape is the red object?" stays at chance for 1500 steps of
SFT on that question alone. ``pretrain_vision`` gives the tower the head start a pretrained
encoder has. A linear head per attribute reads every image token at the tower's output (after
the merger: exactly what the language model receives) and is trained, with the tower, to name
that attribute of the part of the image the token covers. The heads are thrown away; the
language model is not touched.

Only Qwen2.5-VL is supported: its ``get_image_features`` returns each image's merged tokens in
raster order, the order the labels use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

# (images, {attribute: per-image lists of token class ids}) for one step.
Batch = tuple[list[Image.Image], dict[str, list[list[int]]]]


def token_grid(model: Any, image_size: int) -> int:
    """Image tokens per side of a square ``image_size`` image: the side over the pixels one merged
    token covers (patch size times spatial merge size; 16 for the tiny presets)."""
    vision = model.config.vision_config
    return image_size // (vision.patch_size * vision.spatial_merge_size)


def image_token_features(model: Any, processor: Any, images: list[Image.Image]) -> torch.Tensor:
    """(images, tokens, hidden): a Qwen2.5-VL model's image tokens for ``images``, as its language
    model receives them (after the merger), in raster order."""
    device = next(model.parameters()).device
    inputs = processor.image_processor(images=images, return_tensors="pt").to(device)
    out = model.model.get_image_features(
        pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]
    )
    return torch.stack(list(out.pooler_output))


def pretrain_vision(
    model: Any,
    processor: Any,
    batch: Callable[[int], Batch],
    classes: dict[str, int],
    steps: int,
    lr: float = 1e-3,
    log: Callable[[str], None] | None = None,
    log_every: int = 100,
) -> dict[str, Any]:
    """Train ``model``'s vision tower for ``steps`` steps on ``batch(step)`` (steps from 1), at
    ``lr`` with a 5 % linear warmup and a cosine decay.

    ``classes`` gives each labelled attribute's number of classes. Returns a record: steps,
    seconds, and the last ``log_every`` steps' mean loss and per-attribute token accuracy over
    the tokens that show something (class > 0).
    """
    if getattr(model.config, "model_type", None) != "qwen2_5_vl":
        raise ValueError(
            f"vision pretraining supports Qwen2.5-VL models only, not {getattr(model.config, 'model_type', None)!r}"
        )
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    tower = model.model.visual
    hidden = model.config.text_config.hidden_size
    device = next(model.parameters()).device
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(hidden, n) for name, n in classes.items()}).to(device)
    params = [*tower.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to zero
        optimizer, lambda i: min((i + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0))))
    )
    was_training = model.training
    model.train()
    t0 = time.perf_counter()
    window: dict[str, list[float]] = {"loss": [], **{name: [] for name in classes}}
    record: dict[str, Any] = {"steps": steps, "lr": lr}
    for step in range(1, steps + 1):
        images, labels = batch(step)
        features = image_token_features(model, processor, images)
        loss = torch.zeros((), device=device)
        for name, head in heads.items():
            target = torch.tensor(labels[name], device=device)
            if target.shape != features.shape[:2]:
                raise ValueError(
                    f"labels[{name!r}] has shape {tuple(target.shape)}, the images give {tuple(features.shape[:2])} tokens"
                )
            logits = head(features)
            loss = loss + torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
            shown = target > 0
            window[name].append(
                float((logits.argmax(-1) == target)[shown].float().mean()) if shown.any() else 1.0
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        window["loss"].append(float(loss.detach()))
        if step % log_every == 0 or step == steps:
            means = {k: sum(v) / len(v) for k, v in window.items()}
            record.update(last=means, seconds=round(time.perf_counter() - t0, 1))
            if log:
                accs = ", ".join(f"{name} {means[name]:.3f}" for name in classes)
                log(
                    f"vision pretraining step {step}/{steps}: loss {means['loss']:.3f}, token accuracy {accs}"
                )
            window = {k: [] for k in window}
    model.train(was_training)
    return record
