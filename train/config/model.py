"""Config sections ``run`` and ``model`` (with ``model.lora``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from train.config.fields import Section, require


@dataclass
class RunConfig(Section):
    SECTION = "run"

    name: str = "run"
    """Run name: outputs go to ``<output_dir>/<name>/``."""
    output_dir: str = "runs"
    """Parent folder of all runs."""
    seed: int = 0
    """Seed for model init, data order and sampling."""

    def check(self) -> None:
        require(bool(self.name.strip()), "name", "must not be empty")
        require(bool(self.output_dir.strip()), "output_dir", "must not be empty")


@dataclass
class LoraOptions(Section):
    SECTION = "model.lora"

    enabled: bool = False
    """Train LoRA adapters instead of the full model."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Adapter scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: list[str] | None = None
    """Module names to adapt; null means the language model's attention and MLP projections."""

    def check(self) -> None:
        require(self.r > 0, "r", "must be positive")
        require(self.alpha > 0, "alpha", "must be positive")
        require(0.0 <= self.dropout < 1.0, "dropout", "must lie in [0, 1)")
        require(self.target_modules is None or bool(self.target_modules), "target_modules",
                "must name at least one module (null: the language model's projections)")  # fmt: skip


@dataclass
class ModelConfig(Section):
    SECTION = "model"

    name_or_path: str = "runs/models/tiny-qwen2_5_vl"
    """Any Hugging Face image-text-to-text checkpoint: a local folder or a hub name."""
    build_tiny: str | None = None
    """Build a tiny random VLM of this architecture at ``name_or_path`` when that folder is missing
    (``lessonloop config`` lists them: ``qwen2_5_vl``, ``qwen2_vl``, ``llava``, ``idefics3``,
    ``smolvlm``, ``paligemma``). Null: load only."""
    tiny_preset: str = "tiny"
    """Size preset for ``build_tiny`` (``tiny`` about 4M parameters, ``small`` about 18M, ``medium`` about 39M)."""
    pretrain_vision_steps: int = 0
    """After ``build_tiny`` (Qwen2.5-VL only), train the new model's vision tower for this many steps to name the
    shape and colour under each image token of built-in-world scenes drawn from a seed of their own, as a stand-in for
    a real VLM's pretrained image encoder; the language model is untouched. 0: leave it random."""
    pretrain_vision_positions: bool = False
    """With ``pretrain_vision_steps``, each object's token code also says where its centre lies in the image, as a real
    encoder's features do; without, nothing in the image tokens tells the language model where an object is."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype. ``auto``: bfloat16 on a GPU that supports it, else float32."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    freeze_vision: bool = False
    """Keep the vision encoder's weights fixed."""
    attn_implementation: str | None = None
    """``sdpa``, ``eager``, ``flash_attention_2``; null lets transformers choose."""
    sdpa_backends: list[str] | None = None
    """The kernels PyTorch's scaled-dot-product attention may run, for the whole process: any of
    ``flash``, ``efficient``, ``cudnn``, ``math`` (PyTorch picks among them). On an H100/H200 its
    first pick is cuDNN's, at about 1 ms of host time a call; ``[flash, efficient, math]`` leaves
    that out. Null: PyTorch's default."""
    compile: bool = False
    """``torch.compile`` each transformer block of the language model and the vision tower
    (regional: one graph serves every block of a kind, dynamic shapes so new lengths do not
    compile again); the same outputs. Pays where a step is many small kernels (a GPU); the first
    steps compile (tens of seconds)."""
    vision_cache_mib: int = 0
    """With the vision tower frozen (``freeze_vision``, or LoRA, which freezes it too): keep each
    picture's features from the tower's blocks, up to this many MiB (least recently used out
    first), and run the blocks only on pictures not seen before; the projector after them still
    trains. For runs that see a picture more than once (epochs, the curriculum's pool, every
    evaluation and probe); the same outputs to float rounding. Qwen2-VL and Qwen2.5-VL. 0: off."""
    lora: LoraOptions = field(default_factory=LoraOptions)

    def check(self) -> None:
        require(bool(self.name_or_path.strip()), "name_or_path", "must not be empty")
        if self.build_tiny is not None:
            from models.tiny import ARCHS

            require(self.build_tiny in ARCHS, "build_tiny", f"must be null or one of {list(ARCHS)}")
        from models.tiny import PRESETS

        require(self.tiny_preset in PRESETS, "tiny_preset", f"must be one of {list(PRESETS)}")
        require(self.pretrain_vision_steps >= 0, "pretrain_vision_steps", "must be >= 0")
        require(not self.pretrain_vision_steps or self.build_tiny == "qwen2_5_vl", "pretrain_vision_steps",
                "needs model.build_tiny: qwen2_5_vl")  # fmt: skip
        if self.sdpa_backends is not None:
            from models.sdpa import SDPA_BACKENDS

            bad = sorted(set(self.sdpa_backends) - set(SDPA_BACKENDS))
            require(not bad and bool(self.sdpa_backends), "sdpa_backends",
                    f"must be null or a list of {list(SDPA_BACKENDS)}" + (f", not {bad}" if bad else ""))  # fmt: skip
        require(not self.pretrain_vision_positions or self.pretrain_vision_steps > 0, "pretrain_vision_positions",
                "needs model.pretrain_vision_steps > 0")  # fmt: skip
        require(self.vision_cache_mib >= 0, "vision_cache_mib", "must be >= 0 (0: off)")
        require(not self.vision_cache_mib or self.freeze_vision or self.lora.enabled, "vision_cache_mib",
                "needs a frozen vision tower: model.freeze_vision: true (or LoRA)")  # fmt: skip
