"""The architectures :mod:`models.tiny` builds, each from its real Hugging Face config class.

Each architecture is an :class:`Architecture`: its special tokens, the config keyword arguments of
a size preset, and its processor (image processor, tokenizer, chat template). All of them share one
ChatML-style chat template and one byte-level BPE tokenizer recipe, so the rest of the project sees
the same conversation layout whatever the model.

In the tiny, small and medium presets every architecture turns an ``image_size`` square image into
``(image_size / 16) ** 2`` image tokens (16 for 64x64): 8-pixel patches merged 2x2 (Qwen2-VL,
Qwen2.5-VL), 8-pixel patches pixel-shuffled by 2 (Idefics3, SmolVLM) or 16-pixel patches (LLaVA,
PaliGemma).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import transformers
from transformers import PretrainedConfig
from transformers.image_utils import PILImageResampling

from .processing import image_processor_class, make_processor, matching_video_processor

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


def _text_kwargs(shape: Shape, vocab: int, ids: dict[str, int], max_positions: int = 4096) -> dict[str, Any]:
    """Text-model config keys shared by the Qwen2, Llama and Gemma text configs."""
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


class Architecture:
    """How to make one architecture: its special tokens, config, processor and image placeholder."""

    name: str
    config_class: str
    processor_class: str
    image_placeholder: str
    extra_special_tokens: tuple[str, ...] = ()
    bos_token: str | None = None  # for processors that insert a beginning-of-sequence token
    named_tokens: dict[str, str] = {}  # special tokens the tokenizer also names, e.g. image_token

    def special_tokens(self) -> list[str]:
        """The tokenizer's special tokens, in id order."""
        bos = (self.bos_token,) if self.bos_token else ()
        return [PAD, TURN_START, TURN_END, *bos, *self.extra_special_tokens]

    def added_tokens(self) -> list[str]:
        """Plain tokens the processor adds to its tokenizer on its own; they are added before the
        config is made, so the model's vocabulary covers them."""
        return []

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        """Keyword arguments of ``transformers.<config_class>`` for a preset."""
        raise NotImplementedError

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        """The processor: image processor, ``tokenizer`` and the shared chat template."""
        raise NotImplementedError

    def _assemble(self, image_processor: Any, tokenizer: Any, **kwargs: Any) -> Any:
        cls = getattr(transformers, self.processor_class)
        template = chat_template(self.image_placeholder)
        return make_processor(
            cls, image_processor=image_processor, tokenizer=tokenizer, chat_template=template, **kwargs
        )


class Qwen2VL(Architecture):
    """Qwen2-VL: a ViT with 2D rotary positions whose 2x2 patches are merged into one token, and a
    Qwen2 text model with multimodal rotary positions (M-RoPE)."""

    name = "qwen2_vl"
    config_class = "Qwen2VLConfig"
    processor_class = "Qwen2VLProcessor"
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    extra_special_tokens = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    patch_size = 8

    def _tokens(self, ids: dict[str, int]) -> dict[str, int]:
        return {
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
        }

    def _text(
        self, shape: Shape, vocab: int, ids: dict[str, int], max_positions: int = 4096
    ) -> dict[str, Any]:
        # M-RoPE splits each head's rotary half into time, height and width sections.
        half = shape.text_hidden // shape.text_heads // 2
        section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
        text = _text_kwargs(shape, vocab, ids, max_positions)
        text["rope_parameters"] = {"rope_type": "default", "mrope_section": section, "rope_theta": 1e6}
        return text

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        shape = SHAPES[preset]
        vision = {
            "depth": shape.vision_layers,
            "embed_dim": shape.vision_hidden,
            "mlp_ratio": shape.vision_intermediate // shape.vision_hidden,
            "num_heads": shape.vision_heads,
            "hidden_size": shape.text_hidden,  # the merger's output: the text model's width
            "patch_size": self.patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
        text = self._text(shape, vocab, ids)
        return {
            "text_config": text,
            "vision_config": vision,
            "tie_word_embeddings": True,
            **self._tokens(ids),
        }

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


class Qwen25VL(Qwen2VL):
    """Qwen2.5-VL: Qwen2-VL's layout with a windowed SwiGLU ViT (full attention in a few blocks)."""

    name = "qwen2_5_vl"
    config_class = "Qwen2_5_VLConfig"
    processor_class = "Qwen2_5_VLProcessor"

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        shape = SHAPES[preset]
        real = preset == "qwen2_5_vl_3b"
        text = self._text(shape, 151936 if real else vocab, ids, 128000 if real else 4096)
        if real:
            text.update(max_window_layers=70, sliding_window=32768, use_sliding_window=False)
        full_attention = [7, 15, 23, 31] if real else [1, 3, 5][: shape.vision_layers // 2]
        vision = {
            "depth": shape.vision_layers,
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_heads": shape.vision_heads,
            "hidden_act": "silu",
            "patch_size": 14 if real else self.patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112 if real else 32,
            "fullatt_block_indexes": full_attention,
            "tokens_per_second": 2,
            "out_hidden_size": shape.text_hidden,
        }
        return {
            "text_config": text,
            "vision_config": vision,
            "tie_word_embeddings": True,
            **self._tokens(ids),
        }


class Llava(Architecture):
    """LLaVA: a CLIP vision tower and a Llama text model joined by an MLP projector."""

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


class Idefics3(Architecture):
    """Idefics3: a SigLIP-style vision tower whose patches are pixel-shuffled into fewer tokens, and
    a Llama text model. One image, no splitting into tiles."""

    name = "idefics3"
    config_class = "Idefics3Config"
    processor_class = "Idefics3Processor"
    image_processor_name = "Idefics3ImageProcessor"
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
        image_processor = image_processor_class(self.image_processor_name)(
            do_image_splitting=False,
            resample=PILImageResampling.BICUBIC,
            size={"longest_edge": image_size},
            max_image_size={"longest_edge": image_size},
        )
        patches = (image_size // self.patch_size) ** 2
        return self._assemble(image_processor, tokenizer, image_seq_len=patches // self.scale_factor**2)


class SmolVLM(Idefics3):
    """SmolVLM: Idefics3's layout (its own config, model and processor classes); the processor also
    owns a video processor, so without torchvision it is built image-only."""

    name = "smolvlm"
    config_class = "SmolVLMConfig"
    processor_class = "SmolVLMProcessor"
    image_processor_name = "SmolVLMImageProcessor"

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        kwargs = super().config_kwargs(preset, vocab, ids, image_size)
        del kwargs["pad_token_id"]  # SmolVLM reads it from its text config
        return kwargs


class PaliGemma(Architecture):
    """PaliGemma: a SigLIP vision tower, a linear projector and a Gemma text model that reads the
    image and the prompt as a bidirectional prefix and the answer causally (``token_type_ids``
    1 marks the answer, which the processor encodes from its ``suffix`` argument)."""

    name = "paligemma"
    config_class = "PaliGemmaConfig"
    processor_class = "PaliGemmaProcessor"
    image_placeholder = "<image>"
    extra_special_tokens = ("<image>",)
    bos_token = "<bos>"  # the processor puts it after the image tokens
    named_tokens = {"image_token": "<image>"}  # looked up by the processor
    patch_size = 16

    def added_tokens(self) -> list[str]:
        from transformers.models.paligemma.processing_paligemma import EXTRA_TOKENS

        return list(EXTRA_TOKENS)  # location and segmentation tokens

    def config_kwargs(self, preset: str, vocab: int, ids: dict[str, int], image_size: int) -> dict[str, Any]:
        shape = SHAPES[preset]
        text = {
            "model_type": "gemma",
            **_text_kwargs(shape, vocab, ids),
            "head_dim": shape.text_hidden // shape.text_heads,
            "bos_token_id": ids[self.bos_token],
        }
        vision = {"model_type": "siglip_vision_model", **_vit_kwargs(shape, image_size, self.patch_size)}
        return {
            "vision_config": vision,
            "text_config": text,
            "image_token_index": ids["<image>"],
            "vocab_size": vocab,
            "projection_dim": shape.text_hidden,
            "hidden_size": shape.text_hidden,
            "tie_word_embeddings": True,
        }

    def processor(self, preset: str, tokenizer: Any, image_size: int, config: PretrainedConfig) -> Any:
        image_processor = image_processor_class("SiglipImageProcessor")(
            size={"height": image_size, "width": image_size}, resample=PILImageResampling.BICUBIC
        )
        # The processor reads the number of image tokens from its image processor.
        image_processor.image_seq_length = (image_size // self.patch_size) ** 2
        return self._assemble(image_processor, tokenizer)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (Qwen25VL(), Qwen2VL(), Llava(), Idefics3(), SmolVLM(), PaliGemma())
}
