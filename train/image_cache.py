"""Processed images kept for the next time the same picture comes round.

A multi-epoch run shows the model each training picture more than once, and every evaluation
shows it the same test pictures again; the processor resizes, normalises and patches each of them
every time. ``CachedImages`` wraps a processor's image processor: it processes each picture of a
call alone (or takes it from the cache) and joins the results along the first dimension, as the
processor's batch call does for processors whose outputs are per-image pieces laid end to end
(Qwen2-VL's patches and grid sizes, LLaVA's and PaliGemma's pixel tensors). Processors that lay
pictures out otherwise (Idefics3 and SmolVLM pad a tensor per row of a batch) are refused with
one line naming them; whether a processor qualifies is tried on the first call, on two synthetic
pictures of different sizes in two rows, against the processor's own batch call.

An entry is keyed by a digest of the picture's pixels, size and mode, and the arguments of the
call, so a changed picture never reuses a stale entry; the oldest entries go once the tensors held
pass ``max_bytes``.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature
from transformers.image_utils import make_flat_list_of_images


def image_key(image: Image.Image) -> bytes:
    """A digest of what the processor reads from ``image``: its mode, size and pixels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.digest()


class CachedImages:
    """Callable as the wrapped image processor is; other attributes are the wrapped one's."""

    def __init__(self, image_processor: Any, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the image cache needs a positive size")
        self.inner = image_processor
        self.max_bytes = max_bytes
        self.held = 0  # bytes of the tensors in the cache
        self.hits = self.misses = 0
        self._entries: OrderedDict[bytes, dict[str, torch.Tensor]] = OrderedDict()
        self._checked = False

    def __getattr__(self, name: str) -> Any:
        if "inner" not in self.__dict__:  # a copy being built
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        flat = make_flat_list_of_images(images)
        if kwargs.get("return_tensors") != "pt" or not all(isinstance(im, Image.Image) for im in flat):
            return self.inner(images, **kwargs)
        if not self._checked:
            self._check(kwargs)
        call = repr(sorted(kwargs.items())).encode()
        pieces = [self._one(image, call, kwargs) for image in flat]
        return BatchFeature({key: torch.cat([p[key] for p in pieces]) for key in pieces[0]})

    def _one(self, image: Image.Image, call: bytes, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        key = image_key(image) + call
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        self.misses += 1
        entry = self._alone(image, kwargs)
        size = sum(t.numel() * t.element_size() for t in entry.values())
        if size <= self.max_bytes:
            self._entries[key] = entry
            self.held += size
            while self.held > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.held -= sum(t.numel() * t.element_size() for t in dropped.values())
        return entry

    def _alone(self, image: Image.Image, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.inner([image], **kwargs)
        return {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}

    def _check(self, kwargs: dict[str, Any]) -> None:
        """Refuse a processor whose batch output is not its pictures' outputs laid end to end."""
        a = Image.new("RGB", (48, 40), (200, 30, 90))
        b = Image.effect_noise((72, 56), 40).convert("RGB")
        whole = self.inner([[a], [a, b]], **kwargs)
        pieces = [self._alone(im, kwargs) for im in (a, a, b)]
        same = set(whole.keys()) == set(pieces[0]) and all(
            isinstance(whole[k], torch.Tensor)
            and whole[k].shape == torch.cat([p[k] for p in pieces]).shape
            and torch.equal(whole[k], torch.cat([p[k] for p in pieces]))
            for k in whole
        )
        if not same:
            raise ValueError(
                f"data.image_cache_mib: {type(self.inner).__name__} lays the pictures of a batch out "
                "together (not one after another), so they cannot be cached one by one; set it to 0"
            )
        self._checked = True


def with_image_cache(processor: Any, max_bytes: int) -> Any:
    """A shallow copy of ``processor`` whose image processor caches (the original, which the run
    saves with the model, is left as it was)."""
    cached = copy.copy(processor)
    cached.image_processor = CachedImages(processor.image_processor, max_bytes)
    return cached
