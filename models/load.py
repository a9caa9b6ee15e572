"""Load and save any Hugging Face image-text-to-text checkpoint for training.

:func:`load_model` is the single way the project gets a model: a local directory or a hub name
goes through ``AutoModelForImageTextToText`` and :func:`models.processing.load_processor`, then
the training options are applied in one place (dtype and device, frozen vision encoder, LoRA
adapters on the language model, gradient checkpointing). :func:`save_model` writes back what
:func:`load_model` reads: a full checkpoint, a LoRA adapter that names its base, or the adapter
merged into a plain full checkpoint.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText

from .processing import load_processor
from .vision_attention import group_vision_attention

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder", "image_tower")
PROJECTOR_NAMES = ("merger", "multi_modal_projector", "connector", "mm_projector")
LANGUAGE_MODEL_NAMES = ("language_model", "text_model")
_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}
_BASE_SUBDIR = "base"


@dataclass
class LoraSettings:
    """LoRA adapter settings.

    ``target_modules`` is passed to peft as is (a list of module-name suffixes or a regex over
    full module names); ``None`` means every linear projection inside the language model
    (attention and MLP), and nothing in the vision tower or the projector.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str | None = None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters of ``model`` (each shared tensor counted once; whole also when
    DeepSpeed ZeRO-3 holds only a shard of each)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += getattr(param, "ds_numel", param.numel())
    return total


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on a CUDA device that supports it, else float32; or a named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto', 'bfloat16', 'float16' or 'float32'")
    return _DTYPES[dtype]


def _module_named(model: nn.Module, leaf_names: tuple[str, ...]) -> tuple[str, nn.Module] | None:
    """The outermost submodule whose attribute name is one of ``leaf_names`` (in that order of preference)."""
    found: list[tuple[int, int, str, nn.Module]] = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in leaf_names:
            found.append((name.count("."), leaf_names.index(leaf), name, module))
    if not found:
        return None
    _, _, name, module = min(found, key=lambda item: (item[0], item[1]))
    return name, module


def _require(model: nn.Module, names: tuple[str, ...], what: str) -> tuple[str, nn.Module]:
    hit = _module_named(model, names)
    if hit is None:
        raise ValueError(
            f"no {what} found in {type(model).__name__}: expected a submodule named one of {', '.join(names)}"
        )
    return hit


def find_vision_tower(model: nn.Module) -> tuple[str, nn.Module]:
    """The vision tower's qualified name and module (``visual``, ``vision_tower``, ``vision_model``, ...)."""
    return _require(model, VISION_TOWER_NAMES, "vision tower")


def find_language_model(model: nn.Module) -> tuple[str, nn.Module]:
    """The language model's qualified name and module (``language_model`` in current transformers)."""
    return _require(model, LANGUAGE_MODEL_NAMES, "language model")


def freeze_vision_encoder(model: nn.Module) -> int:
    """Stop gradients through the vision encoder; return how many parameters were frozen.

    The projector into the language model stays trainable, also where it lives inside the
    tower (Qwen2.5-VL's ``visual.merger``); LLaVA's ``multi_modal_projector`` and Idefics3's
    ``connector`` sit outside the tower anyway.
    """
    _, tower = find_vision_tower(model)
    projector_params: set[int] = set()
    for name, module in tower.named_modules():
        if name and name.rsplit(".", 1)[-1] in PROJECTOR_NAMES:
            projector_params.update(id(p) for p in module.parameters())
    frozen = 0
    for param in tower.parameters():
        if id(param) not in projector_params and param.requires_grad:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def _carries_graph(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.grad_fn is not None
    if isinstance(value, (list, tuple)):
        return any(_carries_graph(v) for v in value)
    if isinstance(value, dict):
        return any(_carries_graph(v) for v in value.values())
    return False


def _grad_off(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: no autograd graph inside ``module`` when none of its parameters trains
    and no input carries a graph (nothing before it trains). A leaf input that requires grad
    (``enable_input_require_grads`` marks every embedding's output so) asks for no graph."""
    if not torch.is_grad_enabled() or any(p.requires_grad for p in module.parameters()):
        return
    if _carries_graph(args) or _carries_graph(kwargs):
        return
    module._lessonloop_grad_off = True
    torch.set_grad_enabled(False)


def _grad_back(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
    """Forward hook (also when the forward raises): grad mode back on after ``_grad_off``."""
    if module.__dict__.pop("_lessonloop_grad_off", False):
        torch.set_grad_enabled(True)


def run_frozen_vision_without_graph(model: nn.Module) -> int:
    """Run the frozen parts of the vision tower without autograd, so no activation of theirs is
    kept for a backward pass that would compute nothing from them; return how many modules run so.

    Hooks go on the outermost tower submodules whose parameters are all frozen (the whole tower
    when nothing in it trains; its patch embedding and blocks when its projector trains, as
    Qwen2.5-VL's ``visual.merger``). Each call checks again: a module whose parameters train by
    then, or whose input carries a graph, runs with autograd as usual. Outputs are unchanged."""
    _, tower = find_vision_tower(model)
    hooked = 0

    def visit(module: nn.Module) -> None:
        nonlocal hooked
        params = list(module.parameters())
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)) or any(p.requires_grad for p in params):
            for child in module.children():
                visit(child)
        elif params:
            module.register_forward_pre_hook(_grad_off, with_kwargs=True)
            module.register_forward_hook(_grad_back, with_kwargs=True, always_call=True)
            hooked += 1

    visit(tower)
    return hooked


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` every transformer block of ``model`` (transformers' decoder layers and
    vision blocks are ``GradientCheckpointingLayer``s); return how many. Regional compilation: the
    blocks of a kind share one compiled graph, so a model compiles in the time of one block of
    each kind, and with dynamic shapes a new sequence length reuses it.

    Only calls with gradients on (training steps) take the compiled graph; calls without them
    (generation, probes, evaluation) run eagerly. Decoding with a key-value cache changes what the
    graph guards on at every step (a cache layer filled or not, its length), and sent through the
    compiled blocks it recompiled until dynamo's limit and then evaluated several times slower
    (medium preset, one H200)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for block in blocks:
        block.compile(dynamic=True)
        block._compiled_call_impl = _with_grad_only(block._compiled_call_impl, block._call_impl)
    return len(blocks)


def _with_grad_only(compiled: Callable[..., Any], eager: Callable[..., Any]) -> Callable[..., Any]:
    """``compiled`` where autograd records (``torch.is_grad_enabled``), ``eager`` elsewhere."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return (compiled if torch.is_grad_enabled() else eager)(*args, **kwargs)

    call.compiled, call.eager = compiled, eager  # type: ignore[attr-defined]
    return call


def language_model_lora_targets(model: nn.Module) -> str:
    """A peft ``target_modules`` regex: every linear layer inside the language model.

    Built from the model itself, so it covers each architecture's own projection names
    (``q_proj`` ... ``down_proj`` for Qwen2 and Llama) and never touches the vision tower.
    """
    prefix, language_model = find_language_model(model)
    leaves = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in language_model.named_modules()
            if isinstance(module, nn.Linear)
        }
    )
    if not leaves:
        raise ValueError(f"the language model {prefix!r} has no linear layers to adapt")
    return rf"{re.escape(prefix)}\..*\.({'|'.join(map(re.escape, leaves))})"


def enable_gradient_checkpointing(model: nn.Module, input_grads: bool = False) -> None:
    """Non-reentrant activation checkpointing; ``input_grads`` makes the input embeddings
    require grad, so adapters behind frozen layers still get gradients."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if input_grads:
        model.enable_input_require_grads()


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def resolve_source(name_or_path: str) -> tuple[str, bool, dict[str, Any]]:
    """(where to load from, is it an adapter, hub kwargs) with a one-line error when it can't be found."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return str(path.resolve()), True, {}
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a checkpoint directory: it has no config.json or adapter_config.json"
            )
        return str(path.resolve()), False, {}
    if path.exists() or _looks_like_path(name_or_path):
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    offline = _offline()
    hub_kwargs = {"local_files_only": True} if offline else {}
    try:
        from transformers.utils import cached_file

        adapter = cached_file(
            name_or_path,
            "adapter_config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
        if adapter is None:
            AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except Exception as error:
        if offline:
            raise FileNotFoundError(
                f"{name_or_path!r} was not found locally (no such directory, not in the hub cache) "
                "and HF_HUB_OFFLINE is set"
            ) from error
        raise FileNotFoundError(f"could not get {name_or_path!r} from the hub: {error}") from error
    return name_or_path, adapter is not None, hub_kwargs


def _adapter_base(adapter_dir: str, hub_kwargs: dict[str, Any]) -> str:
    from peft import PeftConfig

    base = PeftConfig.from_pretrained(adapter_dir, **hub_kwargs).base_model_name_or_path
    if not base:
        raise ValueError(f"the adapter at {adapter_dir} does not name its base model")
    local = Path(adapter_dir) / base
    return str(local) if local.is_dir() else base


def load_model(
    name_or_path: str,
    dtype: str = "auto",
    gradient_checkpointing: bool = False,
    freeze_vision: bool = False,
    lora: LoraSettings | None = None,
    attn_implementation: str | None = None,
    device: str | None = None,
    compile: bool = False,
    vision_cache_mib: int = 0,
) -> tuple[Any, Any]:
    """Load an image-text-to-text model and its processor, ready to train or evaluate.

    Args:
        name_or_path: a local checkpoint directory (a full model or a LoRA adapter saved by
            :func:`save_model`) or a hub name (from the local cache when HF_HUB_OFFLINE is set).
        dtype: ``"auto"`` (bfloat16 on a CUDA device that supports it, else float32),
            ``"bfloat16"``, ``"float16"`` or ``"float32"``.
        gradient_checkpointing: recompute activations in the backward pass
            (non-reentrant, so it works with frozen inputs and LoRA).
        freeze_vision: freeze the vision encoder (its projector stays trainable); its frozen
            parts then run without autograd (``run_frozen_vision_without_graph``).
        lora: add LoRA adapters (only they train); for an adapter checkpoint, continue
            training its adapter instead of adding a new one.
        attn_implementation: passed to transformers (``"sdpa"``, ``"eager"``,
            ``"flash_attention_2"``); ``None`` keeps the default. Under SDPA a Qwen-VL vision
            tower attends to all pictures of a size in one call (``group_vision_attention``).
        device: where the weights go; ``None`` means the current CUDA device when CUDA is
            available, else the CPU.
        compile: compile each transformer block (:func:`compile_blocks`), after LoRA is added.
        vision_cache_mib: keep the frozen tower's block outputs per picture, up to this many MiB
            (:func:`models.vision_cache.cache_vision_features`); 0: off.

    Returns:
        ``(model, processor)``; the model is in train mode when anything in it is trainable.
    """
    source, is_adapter, hub_kwargs = resolve_source(str(name_or_path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":  # the current device, as set by accelerate/torchrun in each process
        device = f"cuda:{torch.cuda.current_device()}"
    torch_dtype = resolve_dtype(dtype, device)
    base_source = _adapter_base(source, hub_kwargs) if is_adapter else source
    if is_adapter and base_source != source:
        base_source, _, _ = resolve_source(base_source)

    load_kwargs: dict[str, Any] = {"dtype": torch_dtype, **hub_kwargs}
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    from transformers.integrations import is_deepspeed_zero3_enabled

    # Under ZeRO-3 the weights load straight into each rank's shard; DeepSpeed places them.
    if torch.device(device).type != "cpu" and not is_deepspeed_zero3_enabled():
        load_kwargs["device_map"] = device
    model = AutoModelForImageTextToText.from_pretrained(base_source, **load_kwargs)
    group_vision_attention(model)
    try:
        processor = load_processor(source, **hub_kwargs)
    except Exception:
        if not is_adapter:
            raise
        processor = load_processor(base_source, **hub_kwargs)

    if freeze_vision:
        freeze_vision_encoder(model)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model, input_grads=lora is not None or is_adapter)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source, is_trainable=lora is not None, **hub_kwargs)
    elif lora is not None:
        from peft import LoraConfig, get_peft_model

        targets = (
            lora.target_modules if lora.target_modules is not None else language_model_lora_targets(model)
        )
        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=targets,
            bias="none",
        )
        model = get_peft_model(model, config)
    if freeze_vision or is_adapter or lora is not None:  # (LoRA freezes the tower too)
        run_frozen_vision_without_graph(model)
    if vision_cache_mib:
        from models.vision_cache import cache_vision_features

        cache_vision_features(find_vision_tower(model)[1], vision_cache_mib)
    if compile:
        compile_blocks(model)
    trainable = count_parameters(model, trainable_only=True) > 0
    model.train(trainable)
    return model, processor


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _plain_state_dict(peft_model: Any, merge: bool) -> dict[str, torch.Tensor]:
    """The base model's state dict with LoRA layers removed; with ``merge``, their deltas added in."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    if merge:
        for name, module in base.named_modules():
            if not isinstance(module, LoraLayer) or getattr(module, "merged", False):
                continue
            weight = module.get_base_layer().weight
            delta = torch.zeros_like(weight)
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    delta = delta + module.get_delta_weight(adapter).to(weight.dtype)
            merged[f"{name}.weight"] = (weight + delta).detach()
    state: dict[str, torch.Tensor] = {}
    for key, tensor in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = merged.get(key, tensor)
    return state


def save_model(
    model: Any,
    processor: Any,
    out_dir: str | Path,
    merge_lora: bool = False,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint that :func:`load_model` reads back, with the processor beside it.

    A plain model is saved as a full checkpoint. A LoRA model is saved as its adapter, which
    names its base checkpoint (the base is written to ``out_dir/base`` when it has no
    directory or hub name to point at), or, with ``merge_lora``, as a full checkpoint with the
    adapter folded into the weights. The model passed in is left unchanged. ``state_dict``: the
    model's weights when the model itself holds only a shard of them (ZeRO-3, FSDP). The model
    card (``models.card.write_model_card``) is the caller's to write: it knows how the model was trained.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not _is_peft(model):
        model.save_pretrained(out, state_dict=state_dict)
    elif merge_lora:
        base = model.get_base_model()
        base.save_pretrained(out, state_dict=_plain_state_dict(model, merge=True))
    else:
        model.save_pretrained(out, state_dict=state_dict)
        base_name = model.peft_config[model.active_adapter].base_model_name_or_path or ""
        if not base_name or not (Path(base_name).is_dir() or not _looks_like_path(base_name)):
            base = model.get_base_model()
            base.save_pretrained(out / _BASE_SUBDIR, state_dict=_plain_state_dict(model, merge=False))
            adapter_config = out / "adapter_config.json"
            data = json.loads(adapter_config.read_text(encoding="utf-8"))
            data["base_model_name_or_path"] = _BASE_SUBDIR
            adapter_config.write_text(json.dumps(data, indent=2), encoding="utf-8")
    processor.save_pretrained(out)
    return out
