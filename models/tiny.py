"""Randomly initialised vision-language models of real Hugging Face architectures.

The rest of the project only talks to a checkpoint through ``AutoModelForImageTextToText`` and
a processor. To test it quickly, and to benchmark without downloading weights, this module
builds such checkpoints from the architectures' config classes, with a small byte-level BPE
tokenizer trained on the spot and one chat template for every architecture:

* ``qwen2_5_vl`` (default): Qwen2.5-VL, windowed ViT with 2D rotary positions, M-RoPE text model.
* ``llava``: a CLIP vision tower and a Llama text model joined by an MLP projector.
* ``idefics3``: a SigLIP-style vision tower with pixel shuffle and a Llama text model.

Presets: ``tiny`` (about 4M parameters, trains in seconds on a CPU), ``small`` (about 17M),
``medium`` (about 36-39M, for GPU runs of ``lessonloop compare``) and, for Qwen2.5-VL only, ``qwen2_5_vl_3b``, the real Qwen2.5-VL-3B shape, for GPU benchmarks.
In the tiny, small and medium presets every architecture turns an ``image_size`` square image into
``(image_size / 16) ** 2`` visual tokens (16 for 64x64).

The chat template renders ``[{"role", "content"}]`` messages in ChatML style. The prompt for
generation is an exact prefix of the full conversation, and every turn ends with the
end-of-turn token, which is also the tokenizer's eos token and the generation config's eos, so
greedy decoding stops at the end of the answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForImageTextToText, GenerationConfig, PretrainedConfig
from transformers.image_utils import PILImageResampling

from .processing import image_processor_class, make_processor, matching_video_processor
from .tokenizer import train_bpe_tokenizer

ARCHS = ("qwen2_5_vl", "llava", "idefics3")
PRESETS = ("tiny", "small", "medium", "qwen2_5_vl_3b")

TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
PAD = "<|endoftext|>"
# Text every prompt contains; the tokenizer gets merges for it.
SCAFFOLD = (f"{TURN_START}user\n", f"{TURN_END}\n{TURN_START}assistant\n", "system\n")


@dataclass(frozen=True)
class Shape:
    """The sizes of a preset's text and vision towers."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int


SHAPES: dict[str, Shape] = {
    "tiny": Shape(192, 4, 6, 2, 1024, 128, 4, 4, 512),
    "small": Shape(384, 6, 6, 2, 1536, 192, 6, 6, 768),
    "medium": Shape(512, 8, 8, 2, 2048, 256, 6, 8, 1024),
    # Qwen2.5-VL-3B-Instruct as published (3.75B parameters with its 151936-row vocabulary).
    "qwen2_5_vl_3b": Shape(2048, 36, 16, 2, 11008, 1280, 32, 16, 3420),
}


def chat_template(image_placeholder: str) -> str:
    """The ChatML-style Jinja template used by every architecture.

    ``image_placeholder`` is what an ``{"type": "image"}`` part renders to; the processor then
    expands it to the right number of image tokens. Turns are joined by a newline placed before
    each turn start, so the rendered conversation ends exactly on the end-of-turn token.
    """
    return (
        "{%- for message in messages -%}"
        "{%- if not loop.first %}{{ '\\n' }}{% endif -%}"
        f"{{{{ '{TURN_START}' + message['role'] + '\\n' }}}}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        f"{{%- if part['type'] == 'image' -%}}{{{{ '{image_placeholder}' }}}}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        f"{{{{ '{TURN_END}' }}}}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ '\\n{TURN_START}assistant\\n' }}}}{{%- endif -%}}"
    )


def _merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in; nested dicts (sub-configs) merge key by key."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _text_kwargs(shape: Shape, vocab: int, ids: dict[str, int], max_positions: int = 4096) -> dict[str, Any]:
    """Text-model config keys shared by the Qwen2 and Llama text configs."""
    return {
        "vocab_size": vocab,
        "hidden_size": shape.text_hidden,
        "intermediate_size": shape.text_intermediate,
        "num_hidden_layers": shape.text_layers,
        "num_attention_heads": shape.text_heads,
        "num_key_value_heads": shape.text_kv_heads,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-6,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
    }


class _Arch:
    """How to make one architecture: its special tokens, config, processor and image placeholder."""

    name: str
    config_class: str
    processor_class: str
    image_placeholder: str
    extra_special_tokens: tuple[str, ...] = ()

    def special_tokens(self) -> list[str]:
        return [PAD, TURN_START, TURN_END, *self.extra_special_tokens]

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        raise NotImplementedError

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        raise NotImplementedError

    def _assemble(self, image_processor: Any, tokenizer: Any, **kwargs: Any) -> Any:
        cls = getattr(transformers, self.processor_class)
        template = chat_template(self.image_placeholder)
        return make_processor(
            cls, image_processor=image_processor, tokenizer=tokenizer, chat_template=template, **kwargs
        )


class _Qwen25VL(_Arch):
    name = "qwen2_5_vl"
    config_class = "Qwen2_5_VLConfig"
    processor_class = "Qwen2_5_VLProcessor"
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    extra_special_tokens = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        tokens = {
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
        }
        shape = SHAPES[preset]
        real = preset == "qwen2_5_vl_3b"
        # M-RoPE splits each head's rotary half into time, height and width sections.
        half = shape.text_hidden // shape.text_heads // 2
        section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
        text = _text_kwargs(shape, 151936 if real else vocab, ids, 128000 if real else 4096)
        text["rope_parameters"] = {"rope_type": "default", "mrope_section": section, "rope_theta": 1e6}
        if real:
            text.update(max_window_layers=70, sliding_window=32768, use_sliding_window=False)
        full_attention = [7, 15, 23, 31] if real else [1, 3, 5][: shape.vision_layers // 2]
        vision = {
            "depth": shape.vision_layers,
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_heads": shape.vision_heads,
            "hidden_act": "silu",
            "patch_size": 14 if real else 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112 if real else 32,
            "fullatt_block_indexes": full_attention,
            "tokens_per_second": 2,
            "out_hidden_size": shape.text_hidden,
        }
        return {"text_config": text, "vision_config": vision, "tie_word_embeddings": True, **tokens}

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        vision = config.vision_config
        if preset == "qwen2_5_vl_3b":
            size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
        else:
            size = {"shortest_edge": (image_size // 2) ** 2, "longest_edge": image_size**2}
        image_processor = image_processor_class("Qwen2VLImageProcessor")(
            size=size,
            patch_size=vision.patch_size,
            merge_size=vision.spatial_merge_size,
            temporal_patch_size=vision.temporal_patch_size,
        )
        return self._assemble(
            image_processor,
            tokenizer,
            video_processor=matching_video_processor("Qwen2VLVideoProcessor", image_processor),
        )


def _vit_kwargs(shape: Shape, image_size: int, patch_size: int) -> dict[str, Any]:
    """The fields CLIP- and SigLIP-style vision configs share."""
    return {
        "hidden_size": shape.vision_hidden,
        "intermediate_size": shape.vision_intermediate,
        "num_hidden_layers": shape.vision_layers,
        "num_attention_heads": shape.vision_heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "attention_dropout": 0.0,
    }


class _Llava(_Arch):
    name = "llava"
    config_class = "LlavaConfig"
    processor_class = "LlavaProcessor"
    image_placeholder = "<image>"
    extra_special_tokens = ("<image>",)
    patch_size = 16

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        shape = SHAPES[preset]
        vision = {
            "model_type": "clip_vision_model",
            "projection_dim": shape.text_hidden,
            **_vit_kwargs(shape, image_size, self.patch_size),
        }
        return {
            "vision_config": vision,
            "text_config": {"model_type": "llama", **_text_kwargs(shape, vocab, ids)},
            "image_token_index": ids["<image>"],
            "image_seq_length": (image_size // self.patch_size) ** 2,
            "vision_feature_select_strategy": "default",
            "vision_feature_layer": -1,
            "projector_hidden_act": "gelu",
            "tie_word_embeddings": True,
        }

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        image_processor = image_processor_class("CLIPImageProcessor")(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
        return self._assemble(
            image_processor,
            tokenizer,
            patch_size=self.patch_size,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
        )


class _Idefics3(_Arch):
    name = "idefics3"
    config_class = "Idefics3Config"
    processor_class = "Idefics3Processor"
    image_placeholder = "<image>"
    extra_special_tokens = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")
    patch_size = 8
    scale_factor = 2

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        shape = SHAPES[preset]
        vision = _vit_kwargs(shape, image_size, self.patch_size)
        return {
            "vision_config": vision,
            "text_config": {"model_type": "llama", **_text_kwargs(shape, vocab, ids)},
            "image_token_id": ids["<image>"],
            "pad_token_id": ids["pad"],
            "scale_factor": self.scale_factor,
            "tie_word_embeddings": True,
        }

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        image_processor = image_processor_class("Idefics3ImageProcessor")(
            do_image_splitting=False,
            resample=PILImageResampling.BICUBIC,
            size={"longest_edge": image_size},
            max_image_size={"longest_edge": image_size},
        )
        patches = (image_size // self.patch_size) ** 2
        return self._assemble(image_processor, tokenizer, image_seq_len=patches // self.scale_factor**2)


_ARCHS: dict[str, _Arch] = {a.name: a for a in (_Qwen25VL(), _Llava(), _Idefics3())}


def _check(arch: str, preset: str, image_size: int) -> _Arch:
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "qwen2_5_vl_3b" and arch != "qwen2_5_vl":
        raise ValueError("the qwen2_5_vl_3b preset exists only for arch 'qwen2_5_vl'")
    if image_size <= 0 or image_size % 16:
        raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
    return _ARCHS[arch]


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
        scaffold_text=SCAFFOLD,
    )
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
