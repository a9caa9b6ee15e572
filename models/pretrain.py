"""Pretraining a built tiny VLM's vision tower on what each of its image tokens shows.

A real VLM starts from an image encoder that has already learned to see, and whose output the
language model already reads; a tiny model built with random weights has neither, and learning
to see through the language model's loss alone is slow: on the built-in world, "What shape is the
red object?" stays at chance for 1500 steps of SFT on that question alone. ``pretrain_vision``
gives the tower the head start a pretrained encoder has. Every image token at the tower's output
(after the merger: exactly what the language model receives) is trained to equal a fixed code of
what the part of the image it covers holds: the sum, over the objects centred in it, of one random
vector per attribute value (a shape's, a colour's), or the "nothing" code of each attribute when
it holds none. The language model is not touched.

With ``positions`` each object's code also says where its centre lies: x times one fixed random
direction plus y times another (both from -1 at the left/top edge to 1 at the right/bottom). A
real encoder's features carry where things are; codes of what alone do not, and the language
model cannot recover it from the image tokens' positions either: in the tiny Qwen2.5-VL (M-RoPE,
head size 32, theta 1e6) neighbouring image columns turn by at most 0.0018 rad. Without them the
base student stayed at a constant answer on "Is the red circle left of the blue square?" however
it was fine-tuned (``docs/results.md``).

Why codes rather than a classifier per attribute: the language model then reads few, clean,
well separated token values, almost as if each token named its object, and a token holding two
objects holds the sum of both. Trained this way (1000 steps), a frozen tower let the language model
reach 0.93 / 0.89 / 0.81 on colour / shape / count questions in 1500 steps where the same tower
trained through linear classification heads gave 0.77 / 0.54 / 0.85 (``benchmarks/results/
base_tiny_cpu.json``, experiments).

Only Qwen2.5-VL is supported: its ``get_image_features`` returns each image's merged tokens in
raster order, the order the labels use.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

# Per image, per token, one tuple of attribute class ids per object centred in the token.
TokenObjects = list[list[tuple[int, ...]]]
# Per image, per token, the (x, y) centre of each of those objects (fractions of width and height).
TokenCentres = list[list[tuple[float, float]]]
# (images, their token objects, their token centres) for one step.
Batch = tuple[list[Image.Image], list[TokenObjects], list[TokenCentres]]
CODE_SEED = 1234  # the codes are a fixed function of the seed and the shapes, not saved anywhere
POSITION_SEED = 4321  # the two position directions: a generator of their own leaves the codes as they were


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


def attribute_codes(classes: dict[str, int], hidden: int, seed: int = CODE_SEED) -> dict[str, torch.Tensor]:
    """One fixed random code per class of each attribute, (classes, hidden), entries N(0, 1): in
    ``hidden`` dimensions such codes are nearly orthogonal, so sums of them stay decodable."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(n, hidden, generator=generator) for name, n in classes.items()}


def token_targets(objects: list[TokenObjects], codes: dict[str, torch.Tensor]) -> torch.Tensor:
    """(images, tokens, hidden): each token's target, the sum over the objects centred in it of
    their classes' codes, or the codes of class 0 ("nothing") where it holds no object."""
    tables = list(codes.values())
    nothing = sum(table[0] for table in tables)
    rows = []
    for image in objects:
        tokens = [
            sum(table[c] for held in token for table, c in zip(tables, held, strict=True))
            if token
            else nothing
            for token in image
        ]
        rows.append(torch.stack(tokens))
    return torch.stack(rows)


def position_codes(hidden: int, seed: int = POSITION_SEED) -> torch.Tensor:
    """(2, hidden): the fixed directions that an object's x and y centre scale, entries N(0, 1)."""
    return torch.randn(2, hidden, generator=torch.Generator().manual_seed(seed))


def position_targets(centres: list[TokenCentres], directions: torch.Tensor) -> torch.Tensor:
    """(images, tokens, hidden): per token, the sum over the objects centred in it of
    ``(2x - 1) * directions[0] + (2y - 1) * directions[1]`` (zero where it holds none)."""
    hidden = directions.shape[-1]
    rows = []
    for image in centres:
        tokens = [
            sum(((2 * x - 1) * directions[0] + (2 * y - 1) * directions[1] for x, y in token),
                torch.zeros(hidden, device=directions.device))
            for token in image
        ]  # fmt: skip
        rows.append(torch.stack(tokens))
    return torch.stack(rows)


def decode_tokens(features: torch.Tensor, codes: dict[str, torch.Tensor]) -> torch.Tensor:
    """(..., attributes): the class of each attribute whose code sum lies nearest to each feature,
    over every combination of one class per attribute (nothing included)."""
    tables = list(codes.values())
    combos = list(itertools.product(*(range(len(t)) for t in tables)))
    sums = torch.stack([sum(t[c] for t, c in zip(tables, combo, strict=True)) for combo in combos])
    nearest = torch.cdist(features.reshape(-1, features.shape[-1]), sums.to(features)).argmin(-1)
    return torch.tensor(combos, device=features.device)[nearest].reshape(*features.shape[:-1], len(tables))


def pretrain_vision(
    model: Any,
    processor: Any,
    batch: Callable[[int], Batch],
    classes: dict[str, int],
    steps: int,
    lr: float = 1e-3,
    log: Callable[[str], None] | None = None,
    log_every: int = 100,
    positions: bool = False,
) -> dict[str, Any]:
    """Train ``model``'s vision tower for ``steps`` steps on ``batch(step)`` (steps from 1), at
    ``lr`` with a 5 % linear warmup and a cosine decay: mean squared error between each image
    token and its target code sum (``token_targets``, plus ``position_targets`` with ``positions``).

    ``classes`` gives each labelled attribute's number of classes. Returns a record: steps,
    seconds, and the last ``log_every`` steps' mean loss, mean token norm and per-attribute
    accuracy of the nearest code (``decode_tokens``) over the tokens that hold exactly one object.
    """
    if getattr(model.config, "model_type", None) != "qwen2_5_vl":
        raise ValueError(
            f"vision pretraining supports Qwen2.5-VL models only, not {getattr(model.config, 'model_type', None)!r}"
        )
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    tower = model.model.visual
    device = next(model.parameters()).device
    codes = {
        k: v.to(device) for k, v in attribute_codes(classes, model.config.text_config.hidden_size).items()
    }
    directions = position_codes(model.config.text_config.hidden_size).to(device) if positions else None
    optimizer = torch.optim.AdamW(tower.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to zero
        optimizer, lambda i: min((i + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0))))
    )
    was_training = model.training
    model.train()
    t0 = time.perf_counter()
    window: dict[str, list[float]] = {"loss": [], "norm": [], **{name: [] for name in classes}}
    objective = "token codes with object positions (mse)" if positions else "token codes (mse)"
    record: dict[str, Any] = {"steps": steps, "lr": lr, "objective": objective}
    for step in range(1, steps + 1):
        images, objects, centres = batch(step)
        features = image_token_features(model, processor, images)
        shape = (len(objects), len(objects[0]) if objects else 0)
        if shape != tuple(features.shape[:2]):
            raise ValueError(
                f"the labels cover {shape} (images, tokens), the images give {tuple(features.shape[:2])} tokens"
            )
        where = position_targets(centres, directions) if directions is not None else None
        target = token_targets(objects, codes) if where is None else token_targets(objects, codes) + where
        loss = torch.nn.functional.mse_loss(features, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window["loss"].append(float(loss.detach()))
        with torch.no_grad():
            window["norm"].append(float(features.norm(dim=-1).mean()))
            single = [
                (i, t, token[0])
                for i, image in enumerate(objects)
                for t, token in enumerate(image)
                if len(token) == 1
            ]
            if single:
                what = features if where is None else features - where  # the codes of what, alone
                found = decode_tokens(what[[i for i, _, _ in single], [t for _, t, _ in single]], codes)
                truth = torch.tensor([held for _, _, held in single], device=device)
                for k, name in enumerate(classes):
                    window[name].append(float((found[:, k] == truth[:, k]).float().mean()))
        if step % log_every == 0 or step == steps:
            means = {k: sum(v) / len(v) for k, v in window.items() if v}
            record.update(last=means, seconds=round(time.perf_counter() - t0, 1))
            if log:
                accs = ", ".join(f"{name} {means.get(name, float('nan')):.3f}" for name in classes)
                log(
                    f"vision pretraining step {step}/{steps}: loss {means['loss']:.3f}, token accuracy {accs}"
                )
            window = {k: [] for k in window}
    model.train(was_training)
    return record
