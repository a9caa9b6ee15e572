"""Models for lessonloop: loading any HF vision-language checkpoint, and building tiny random ones.

``load_model`` / ``save_model`` are how training and evaluation get and keep a model;
``build_tiny_vlm`` / ``build_vlm`` make randomly initialised checkpoints of real architectures
(Qwen2.5-VL, Qwen2-VL, LLaVA, Idefics3, SmolVLM, PaliGemma: ``models.tiny.ARCHS``) for tests
and benchmarks; ``load_processor`` loads processors with or without torchvision;
``train_bpe_tokenizer`` trains the small tokenizer they use.
"""

from .load import LoraSettings, count_parameters, load_model, save_model
from .processing import load_processor
from .tiny import build_tiny_vlm, build_vlm
from .tokenizer import train_bpe_tokenizer

__all__ = [
    "LoraSettings",
    "build_tiny_vlm",
    "build_vlm",
    "count_parameters",
    "load_model",
    "load_processor",
    "save_model",
    "train_bpe_tokenizer",
]
