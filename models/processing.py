"""Processors that work with or without torchvision.

Some multimodal processors (Qwen2-VL, Qwen2.5-VL, SmolVLM, ...) own a video processor as well
as an image processor and a tokenizer. Video processors need torchvision, so on a machine
without it those processors can be neither built nor loaded, even though this project only ever
feeds them images. This module makes, for any such processor class, an image-only subclass of
the same name that has just the image processor and the tokenizer, and uses it whenever the
normal way fails for that reason:

* :func:`load_processor` first tries ``AutoProcessor.from_pretrained``; where torchvision is
  installed and the checkpoint has its video processor, that is all that happens.
* :func:`make_processor` builds a processor from parts (for freshly made checkpoints) the same
  way: the real class when it can be built, the image-only subclass otherwise.

The image-only subclass keeps its parent's class name, so a checkpoint saved from it names the
real processor class. It is reachable as ``models.processing.<name>``, so its instances pickle
(data-loader workers started with spawn).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoConfig, AutoProcessor, ProcessorMixin
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name
from transformers.utils import cached_file

_IMAGE_ONLY_CLASSES: dict[type, type] = {}
_IMAGE_ONLY_MARK = "_lessonloop_image_only"
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


def has_torchvision() -> bool:
    """Whether torchvision can be imported (video processors need it)."""
    return importlib.util.find_spec("torchvision") is not None


def image_processor_class(name: str) -> type:
    """``transformers.<name>``, or its PIL twin when torchvision is missing.

    Both save the same ``image_processor_type``; asking for the PIL class directly only avoids
    transformers' warning about falling back to it.
    """
    if not has_torchvision() and hasattr(transformers, f"{name}Pil"):
        return getattr(transformers, f"{name}Pil")
    return getattr(transformers, name)


def matching_video_processor(name: str, image_processor: Any) -> Any:
    """``transformers.<name>`` with the image processor's patching, or ``None`` without torchvision.

    A processor saved with its video processor loads with plain ``AutoProcessor`` wherever
    torchvision is installed; without one it needs :func:`load_processor`'s fallback.
    """
    if not has_torchvision():
        return None
    keys = ("patch_size", "merge_size", "temporal_patch_size")
    kwargs = {k: getattr(image_processor, k) for k in keys if getattr(image_processor, k, None) is not None}
    try:
        return getattr(transformers, name)(**kwargs)
    except Exception:  # an image-only processor serves this project as well
        return None


def sub_processor_names(processor_cls: type[ProcessorMixin]) -> list[str]:
    """The names of a processor class's parts, e.g. ``["image_processor", "tokenizer", "video_processor"]``."""
    getter = getattr(processor_cls, "get_attributes", None)
    if callable(getter):
        return list(getter())
    return list(getattr(processor_cls, "attributes", []))


def owns_video_processor(processor_cls: type[ProcessorMixin]) -> bool:
    """Whether a processor class has a video processor among its parts."""
    return any("video" in name for name in sub_processor_names(processor_cls))


def is_image_only(processor: Any) -> bool:
    """Whether ``processor`` is one of this module's image-only subclasses."""
    return bool(getattr(type(processor), _IMAGE_ONLY_MARK, False))


def _has_video(conversation: Any) -> bool:
    """Whether a conversation (or a batch of them) has a video part in any message."""
    conversations = conversation if conversation and isinstance(conversation[0], list) else [conversation]
    return any(
        isinstance(part, dict) and part.get("type") == "video"
        for turns in conversations
        for message in turns
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def image_only_processor_class(processor_cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """A subclass of ``processor_cls`` with only an image processor and a tokenizer.

    The subclass takes ``(image_processor, tokenizer, chat_template=None, **kwargs)``, sets
    ``video_processor`` to ``None`` and saves and loads like its parent (its ``__init__`` signature
    is the parent's without the video processor, so the parent's own settings are saved too). Its
    ``apply_chat_template``
    refuses conversations with a video and renders the others through ``ProcessorMixin``'s own
    method, skipping the parent's override where there is one (those read video defaults from
    the video processor). Classes that own no video processor are returned unchanged.
    """
    if not owns_video_processor(processor_cls) or getattr(processor_cls, _IMAGE_ONLY_MARK, False):
        return processor_cls
    cached = _IMAGE_ONLY_CLASSES.get(processor_cls)
    if cached is not None:
        return cached
    parts = [name for name in sub_processor_names(processor_cls) if "video" not in name]

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: N807
        kwargs.pop("video_processor", None)
        processor_cls.__init__(
            self,
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )
        self.video_processor = None

    # The parent's own settings (SmolVLM's image_seq_len, ...) must survive save and load:
    # ProcessorMixin saves the attributes its __init__ signature names, and on loading passes on
    # only the saved settings that validate_init_kwargs accepts. Both see the parent's parameters,
    # less the video processor.
    parent = inspect.signature(processor_cls.__init__)
    own = [p for p in parent.parameters.values() if p.name != "video_processor"]
    __init__.__signature__ = parent.replace(parameters=own)
    settings = [p.name for p in own if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][1:]

    @staticmethod
    def validate_init_kwargs(processor_config, valid_kwargs):
        return processor_cls.validate_init_kwargs(processor_config, [*valid_kwargs, *settings])

    @classmethod
    def get_attributes(cls) -> list[str]:
        return list(parts)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # Processor classes that own a video processor override this method only to add video
        # defaults (SmolVLM reads its video processor's num_frames and fps, which fails when there
        # is none); with no video to sample, ProcessorMixin's own method renders the same text.
        if _has_video(conversation):
            raise ValueError(f"{type(self).__name__} was built without a video processor: it takes no videos")
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    namespace = {
        "__init__": __init__,
        "get_attributes": get_attributes,
        "validate_init_kwargs": validate_init_kwargs,
        "apply_chat_template": apply_chat_template,
        "attributes": list(parts),
        "video_processor_class": None,
        "__module__": __name__,
        "__qualname__": processor_cls.__name__,
        "__doc__": f"{processor_cls.__name__} without its video processor (images and text only).",
        _IMAGE_ONLY_MARK: True,
    }
    subclass = type(processor_cls.__name__, (processor_cls,), namespace)
    _IMAGE_ONLY_CLASSES[processor_cls] = subclass
    return subclass


def make_processor(
    processor_cls: type[ProcessorMixin],
    *,
    image_processor: Any,
    tokenizer: Any,
    chat_template: str | None = None,
    video_processor: Any = None,
    **kwargs: Any,
) -> ProcessorMixin:
    """Build ``processor_cls`` from its parts, image-only when a video processor can't be had.

    ``video_processor`` is used when given; a class that needs one gets the image-only subclass
    when none is given (video processors need torchvision, and this project feeds no video).
    """
    if owns_video_processor(processor_cls) and video_processor is None:
        cls = image_only_processor_class(processor_cls)
        return cls(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs
        )
    extra = {"video_processor": video_processor} if video_processor is not None else {}
    return processor_cls(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **extra, **kwargs
    )


def _processor_class_for(path_or_name: str | os.PathLike, **kwargs: Any) -> type[ProcessorMixin] | None:
    """The processor class a checkpoint names, or else the one its model type maps to."""
    hub_kwargs = {k: v for k, v in kwargs.items() if k in _HUB_KWARGS}
    try:
        config_file = cached_file(
            path_or_name,
            "processor_config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
    except OSError:
        config_file = None
    if config_file is not None:
        name = json.loads(Path(config_file).read_text(encoding="utf-8")).get("processor_class")
        cls = processor_class_from_name(name) if name else None
        if cls is not None:
            return cls
    try:
        config = AutoConfig.from_pretrained(path_or_name, **hub_kwargs)
    except (OSError, ValueError):
        return None
    return PROCESSOR_MAPPING.get(type(config), None)


def load_processor(path_or_name: str | os.PathLike, **kwargs: Any) -> Any:
    """Load the processor of a checkpoint, image-only when its video processor can't be built.

    Tries ``AutoProcessor.from_pretrained(path_or_name, **kwargs)``. If that fails and the
    checkpoint's processor class owns a video processor, the image-only subclass of that class
    is loaded from the same files instead. Any other failure is raised as it is.
    """
    try:
        return AutoProcessor.from_pretrained(path_or_name, **kwargs)
    except Exception as error:
        cls = _processor_class_for(path_or_name, **kwargs)
        if cls is None or not owns_video_processor(cls):
            raise
        image_only = image_only_processor_class(cls)
        try:
            return image_only.from_pretrained(path_or_name, **kwargs)
        except Exception as second:
            raise second from error


def __getattr__(name: str) -> type[ProcessorMixin]:
    """``models.processing.<ProcessorName>``: the image-only subclass, made on first use (for pickle)."""
    processor_cls = getattr(transformers, name, None) if name.endswith("Processor") else None
    if isinstance(processor_cls, type) and issubclass(processor_cls, ProcessorMixin):
        image_only = image_only_processor_class(processor_cls)
        if image_only is not processor_cls:
            return image_only
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
