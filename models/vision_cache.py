"""Per-picture cache of a frozen vision tower's features (``model.vision_cache_mib``).

With the tower's weights fixed, a picture that comes again (a later epoch, a pool item replayed,
every evaluation and probe) gets the same features from the tower's blocks; only the projector
after them trains. ``cache_vision_features`` keeps each picture's block outputs, keyed by the
bytes of its processed pixels and its grid, up to a memory cap (least recently used out first),
and runs the blocks only on the pictures of a batch it has not seen; the projector then runs on
all of them, with autograd as usual. Outputs match the uncached tower's to float rounding (the
blocks see a different batch of pictures), the projector's gradients likewise.

Qwen2-VL and Qwen2.5-VL: their tower ends in a ``merger`` that maps each group of
``spatial_merge_size ** 2`` neighbouring patches to one language-model token, after the blocks
(Qwen2.5-VL reorders the groups into windows for the blocks and back after the merger, within
each picture). The blocks' outputs are taken by running the tower with the merger swapped for a
reshape into those groups, so the tower's own code puts them back in picture order; the cached
form is one row per group, ``[groups, spatial_merge_size ** 2 * hidden]``.

The cache sits on the tower's class (a subclass made once per tower class) and in one store that
copies of the model share (``copy.deepcopy`` for an async round's snapshot): the state dict and
the saved checkpoint are the same as without it. While any parameter of the blocks trains, the
tower runs uncached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

MERGER = "merger"


class FeatureStore:
    """Least-recently-used store of per-picture features, at most ``max_bytes``; thread-safe
    (a background round's model copy shares it with the training model)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("FeatureStore: max_bytes must be positive")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = self.evicted = 0
        self._items: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> FeatureStore:
        return self  # copies of the model share one store: the features are the frozen tower's

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> torch.Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: bytes, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
                self.evicted += 1

    def stats(self) -> dict[str, float]:
        """Hits, misses, the hit rate so far, pictures held and MiB used."""
        with self._lock:
            seen = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": self.hits / seen if seen else 0.0,
                "pictures": len(self._items),
                "mib": self.bytes / 2**20,
                "evicted": self.evicted,
            }


class _Groups(nn.Module):
    """Stands in for the merger while the blocks' outputs are taken: each group of ``unit``
    neighbouring patch rows becomes one row, as the merger's input is grouped."""

    def __init__(self, unit: int) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1] * self.unit)


def _key(pixels: torch.Tensor, grid: list[int]) -> bytes:
    """A picture's key: its processed pixels' bytes (on the host), dtype, shape and grid."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((str(pixels.dtype), tuple(pixels.shape), tuple(grid))).encode())
    digest.update(pixels.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.digest()


def _pooled(output: Any) -> torch.Tensor:
    """The merged features of a tower's output: a tensor, or a model output's ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _CachedTower:
    """Mixed into the tower's class by ``cache_vision_features``; overrides ``forward`` only."""

    _lessonloop_store: FeatureStore
    _lessonloop_output: type | None

    def _blocks_train(self) -> bool:
        merger = set(map(id, getattr(self, MERGER).parameters()))
        return any(p.requires_grad and id(p) not in merger for p in self.parameters())

    def _groups_of(self, pixels: torch.Tensor, grid: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The blocks' outputs of these pictures, one row per merge group, in picture order."""
        merger = self._modules[MERGER]
        self._modules[MERGER] = _Groups(self.spatial_merge_size**2)
        try:
            with torch.no_grad():
                output = super().forward(pixels, grid_thw=grid, **kwargs)
        finally:
            self._modules[MERGER] = merger
        self._lessonloop_output = None if isinstance(output, torch.Tensor) else type(output)
        return _pooled(output)

    def forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        if self._blocks_train():
            return super().forward(hidden_states, grid_thw=grid_thw, **kwargs)
        store, unit = self._lessonloop_store, self.spatial_merge_size**2
        grids = grid_thw.tolist()
        sizes = [t * h * w for t, h, w in grids]
        pieces = hidden_states.split(sizes)
        host = hidden_states.detach().cpu().split(sizes)  # one copy from the device for every key
        keys = [_key(piece, grid) for piece, grid in zip(host, grids, strict=True)]
        groups: list[torch.Tensor | None] = [store.get(key) for key in keys]
        missing = [i for i, g in enumerate(groups) if g is None]
        if missing:
            fresh = self._groups_of(torch.cat([pieces[i] for i in missing]), grid_thw[missing], **kwargs)
            for i, part in zip(missing, fresh.split([sizes[i] // unit for i in missing]), strict=True):
                groups[i] = part
                store.put(keys[i], part)
        rows = torch.cat(groups)  # type: ignore[arg-type]
        patches = rows.reshape(-1, rows.shape[-1] // unit)
        merged = self._modules[MERGER](patches)
        if self._lessonloop_output is None:
            return merged
        # last_hidden_state: the blocks' outputs in picture order (the uncached tower gives them
        # in its window order); transformers reads pooler_output.
        return self._lessonloop_output(last_hidden_state=patches, pooler_output=merged)


_CLASSES: dict[type, type] = {}


def cache_vision_features(tower: nn.Module, max_mib: int) -> FeatureStore:
    """Cache the block outputs of ``tower`` (a Qwen2-VL or Qwen2.5-VL vision tower) per picture,
    up to ``max_mib`` MiB; returns the store (its ``stats()`` say how often it served)."""
    if not isinstance(getattr(tower, MERGER, None), nn.Module) or not hasattr(tower, "spatial_merge_size"):
        raise ValueError(
            f"model.vision_cache_mib: {type(tower).__name__} has no merger after its blocks; "
            "the vision cache supports Qwen2-VL and Qwen2.5-VL (set model.vision_cache_mib=0)"
        )
    if isinstance(tower, _CachedTower):
        return tower._lessonloop_store
    base = type(tower)
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Cached{base.__name__}", (_CachedTower, base), {"__module__": base.__module__})
    store = FeatureStore(int(max_mib * 2**20))
    tower.__class__ = _CLASSES[base]
    tower._lessonloop_store = store
    tower._lessonloop_output = None
    return store


def feature_store(model: nn.Module) -> FeatureStore | None:
    """The store of a model whose tower caches its features, else None."""
    for module in model.modules():
        if isinstance(module, _CachedTower):
            return module._lessonloop_store
    return None
