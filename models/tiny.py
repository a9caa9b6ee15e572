"""Randomly initialised vision-language models of real Hugging Face architectures.

The rest of the project only talks to a checkpoint through ``AutoModelForImageTextToText`` and
a processor. To test it quickly, and to benchmark without downloading weights, this module
builds such checkpoints from the architectures' config classes (``models/architectures.py``),
with a small byte-level BPE tokenizer trained on the spot and one chat template for every
architecture:

* ``qwen2_5_vl`` (default): Qwen2.5-VL, windowed ViT with 2D rotary positions, M-RoPE text model.
* ``qwen2_vl``: Qwen2-VL, the same layout with a plain ViT.
* ``llava``: a CLIP vision tower and a Llama text model joined by an MLP projector.
* ``idefics3``: a SigLIP-style vision tower with pixel shuffle and a Llama text model.
* ``smolvlm``: SmolVLM, Idefics3's layout under its own classes.
* ``paligemma``: a SigLIP tower and a Gemma text model with a bidirectional image-and-prompt prefix.

``ARCHS`` lists them; it is the one list of buildable names (the training config checks against it).
Presets: ``tiny`` (about 4M parameters, trains in seconds on a CPU), ``small`` (about 17M),
``medium`` (about 36-39M, for GPU runs of ``lessonloop compare``) and, for Qwen2.5-VL only,
``qwen2_5_vl_3b``, the real Qwen2.5-VL-3B shape, for GPU benchmarks. In the tiny, small and medium
presets every architecture turns an ``image_size`` square image into ``(image_size / 16) ** 2``
visual tokens (16 for 64x64).

The chat template renders ``[{"role", "content"}]`` messages in ChatML style. The prompt for
generation is an exact prefix of the full conversation, and every turn ends with the
end-of-turn token, which is also the tokenizer's eos token and the generation config's eos, so
greedy decoding stops at the end of the answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForImageTextToText, GenerationConfig, PretrainedConfig

from .architectures import (
    ARCHITECTURES,
    PAD,
    SCAFFOLD,
    SHAPES,
    TURN_END,
    TURN_START,
    Architecture,
    chat_template,
)
from .tokenizer import train_bpe_tokenizer

__all__ = [
    "ARCHS",
    "PAD",
    "PRESETS",
    "SHAPES",
    "TURN_END",
    "TURN_START",
    "build_config_and_processor",
    "build_tiny_vlm",
    "build_vlm",
    "chat_template",
    "generation_config_for",
]

ARCHS = tuple(ARCHITECTURES)
PRESETS = ("tiny", "small", "medium", "qwen2_5_vl_3b")


def _merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in; nested dicts (sub-configs) merge key by key."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check(arch: str, preset: str, image_size: int) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "qwen2_5_vl_3b" and arch != "qwen2_5_vl":
        raise ValueError("the qwen2_5_vl_3b preset exists only for arch 'qwen2_5_vl'")
    if image_size <= 0 or image_size % 16:
        raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
    return ARCHITECTURES[arch]


def build_config_and_processor(
    arch: str = "qwen2_5_vl",
    preset: str = "tiny",
    image_size: int = 64,
    corpus: Iterable[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[PretrainedConfig, Any]:
    """The model config and the processor (tokenizer trained here) of an architecture and preset.

    ``overrides`` are merged into the config's keyword arguments; a dict value for
    ``text_config`` or ``vision_config`` updates that sub-config key by key, e.g.
    ``{"text_config": {"num_hidden_layers": 2}}``.
    """
    spec = _check(arch, preset, image_size)
    tokenizer = train_bpe_tokenizer(
        corpus,
        spec.special_tokens(),
        vocab_size=512,
        eos_token=TURN_END,
        pad_token=PAD,
        chat_template=chat_template(spec.image_placeholder),
        bos_token=spec.bos_token,
        named_tokens=spec.named_tokens,
        scaffold_text=SCAFFOLD,
    )
    if spec.added_tokens():
        tokenizer.add_tokens(spec.added_tokens())
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in spec.special_tokens()}
    ids["eos"] = tokenizer.eos_token_id
    ids["pad"] = tokenizer.pad_token_id
    kwargs = _merge(spec.config_kwargs(preset, len(tokenizer), ids, image_size), overrides)
    config = getattr(transformers, spec.config_class)(**kwargs)
    processor = spec.processor(preset, tokenizer, image_size, config)
    return config, processor


def generation_config_for(processor: Any) -> GenerationConfig:
    """Greedy decoding that stops at the end-of-turn token and pads with the pad token."""
    tokenizer = processor.tokenizer
    return GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        do_sample=False,
        max_new_tokens=32,
    )


def build_vlm(
    arch: str = "qwen2_5_vl",
    preset: str = "tiny",
    image_size: int = 64,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
) -> tuple[Any, Any]:
    """A randomly initialised model and its processor, in memory.

    The weights are created directly on ``device`` (``"cuda"``, ``"meta"``, ...; default CPU)
    in ``dtype``, so a 3B model never passes through CPU memory. ``seed`` fixes the weights.
    """
    config, processor = build_config_and_processor(arch, preset, image_size, corpus, overrides)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    with torch.device(device if device is not None else "cpu"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config = generation_config_for(processor)
    model.eval()
    return model, processor


def build_tiny_vlm(
    out_dir: str | Path,
    arch: str = "qwen2_5_vl",
    preset: str = "tiny",
    image_size: int = 64,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Build a random checkpoint with :func:`build_vlm` and save it as a normal HF directory.

    The directory holds the config, safetensors weights, generation config, tokenizer,
    processor and chat template, and loads with ``models.load_model`` (or the Auto classes).
    """
    model, processor = build_vlm(arch, preset, image_size, corpus, seed, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
