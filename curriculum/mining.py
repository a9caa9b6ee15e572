"""Failure mining: which probe items the model got wrong this round, and which of those are new;
and hard-example mining: which train items are most like those failures.

``probe_items`` picks a round's probe items, ``answer_probe`` asks the model and marks each item right
or wrong (greedy, or by the pass rate of sampled answers), ``mine`` keeps the failures.

A round's cost is bounded by ``cap``: new failures (not failed and analysed in an earlier round)
come first; if there are more than ``cap`` of them a seeded random sample is kept, and any room
left is filled with a sample of repeated failures, so a stubborn weakness stays visible.

``hard_examples`` ranks train items by their nearness to a weakness's failures in image (a
perceptual hash and a colour histogram) and text (question words, the same answer), for the
``replay`` generator: real items like the ones the model fails, not the first items of a
templated question.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
from PIL import Image

from curriculum.scoring import is_correct, normalise
from curriculum.types import (
    HASH_BYTES,
    Example,
    Failure,
    Policy,
    StoredImage,
    as_pil,
    hash_distances,
    perceptual_hash,
)


def probe_items(probe: list[Example], most: int, seed: int, round: int) -> list[Example]:
    """Round ``round``'s probe items: all, or a seeded sample of ``most`` (0: all)."""
    if most and len(probe) > most:
        return random.Random(f"{seed}|probe|{round}").sample(probe, most)
    return probe


def answer_priors(items: list[Example]) -> dict[str | None, float]:
    """Per skill, the share of its most common answer: the pass rate of a model that answers
    without looking at the image (a yes/no skill about 0.5, a count of 0 to 9 about 0.1-0.2)."""
    by_skill: dict[str | None, Counter] = {}
    for ex in items:
        by_skill.setdefault(ex.skill, Counter())[normalise(ex.answer)] += 1
    return {s: c.most_common(1)[0][1] / c.total() for s, c in by_skill.items()}


def answer_probe(
    items: list[Example],
    policy: Policy,
    samples: int = 0,
    failure_pass_rate: float | dict[str | None, float] = 0.0,
) -> tuple[list[str], list[bool]]:
    """The model's answer to each item and whether it is right. With ``samples``, an item is
    wrong when the pass rate of its sampled answers is at most ``failure_pass_rate`` (GRPO: all
    rollouts fail; a mapping: its value for the item's skill, 0 for a skill it does not name),
    and the answer recorded is a wrong sample when there is one."""
    if not samples:
        predictions = policy.answer(items)
        return predictions, [is_correct(p, ex.answer) for p, ex in zip(predictions, items, strict=True)]
    drawn = policy.sample(items, samples)
    marks = [[is_correct(p, ex.answer) for p in ps] for ps, ex in zip(drawn, items, strict=True)]
    predictions = [
        next((p for p, ok in zip(ps, m, strict=True) if not ok), ps[0])
        for ps, m in zip(drawn, marks, strict=True)
    ]
    if isinstance(failure_pass_rate, dict):
        bars = [failure_pass_rate.get(ex.skill, 0.0) for ex in items]
    else:
        bars = [failure_pass_rate] * len(items)
    return predictions, [sum(m) / len(m) > bar for m, bar in zip(marks, bars, strict=True)]


def mine(
    probe: list[Example],
    predictions: list[str],
    correct: list[bool],
    seen: set[str],
    round: int,
    cap: int,
    rng: random.Random,
) -> list[Failure]:
    """The round's failures, new first, at most ``cap`` (0: no cap)."""
    if not len(probe) == len(predictions) == len(correct):
        raise ValueError("probe, predictions and correct must have the same length")
    wrong = [
        Failure(ex, pred, round, new=ex.id not in seen)
        for ex, pred, ok in zip(probe, predictions, correct, strict=True)
        if not ok
    ]
    new = [f for f in wrong if f.new]
    old = [f for f in wrong if not f.new]
    if not cap or len(wrong) <= cap:
        return new + old
    if len(new) >= cap:
        return rng.sample(new, cap)
    return new + rng.sample(old, cap - len(new))


# ----------------------------------------------------------------------------- hard-example mining
# Which train items to show again for a weakness: the nearest neighbours of its failures, by what
# the picture looks like and by what is asked and answered.

HIST_LEVELS = 4
"""Levels per colour channel of the colour histogram (4 x 4 x 4 = 64 bins)."""
MAX_CANDIDATES = 4000
"""Most train items scored for one weakness (those in its slice first, then a seeded sample)."""
SAME_IMAGE_BITS = 96
"""Perceptual-hash distance at which two pictures count as unrelated (half of the 192 bits: what
two unrelated images differ by on average); nearer pictures score linearly higher."""


def colour_histogram(image: Image.Image | StoredImage) -> np.ndarray:
    """The image's colours as a 64-bin histogram (4 levels per channel) of a 16 x 16 area-averaged
    copy, summing to 1: cheap, and alike for crops of one photograph whatever their layout."""
    small = np.asarray(as_pil(image).convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.int64)
    levels = small.reshape(-1, 3) * HIST_LEVELS // 256
    bins = (levels[:, 0] * HIST_LEVELS + levels[:, 1]) * HIST_LEVELS + levels[:, 2]
    return np.bincount(bins, minlength=HIST_LEVELS**3).astype(np.float32) / len(bins)


def words(text: str) -> frozenset[str]:
    """The normalised words of a text (the scorer's normal form)."""
    return frozenset(normalise(text).split())


class Neighbours:
    """Image and text descriptors of a fixed list of examples (a run's train split), each
    computed the first time it is needed and kept: a perceptual hash (``perceptual_hash``: layout
    and shapes), a colour histogram, the question's words and the normalised answer."""

    def __init__(self, items: list[Example]) -> None:
        self.items = items
        self._hash = np.zeros((len(items), HASH_BYTES), dtype=np.uint8)
        self._hist = np.zeros((len(items), HIST_LEVELS**3), dtype=np.float32)
        self._done = np.zeros(len(items), dtype=bool)
        self.words = [words(ex.question) for ex in items]
        self.answers = [normalise(ex.answer) or ex.answer.strip().lower() for ex in items]

    def _describe(self, rows: np.ndarray) -> None:
        for i in rows[~self._done[rows]]:
            image = self.items[i].image
            self._hash[i] = np.frombuffer(perceptual_hash(image), dtype=np.uint8)
            self._hist[i] = colour_histogram(image)
            self._done[i] = True

    def similarity(self, rows: np.ndarray, target: Example) -> np.ndarray:
        """How like ``target`` each item of ``rows`` is, in [0, 1]: the mean of an image score
        (half colour-histogram intersection, half perceptual-hash nearness) and a text score (half
        question-word Jaccard, half the same answer), and for world items of a parameter score
        (1 minus the mean relative distance of their numeric parameters)."""
        self._describe(rows)
        hist = colour_histogram(target.image)
        near = 1.0 - hash_distances(self._hash[rows], perceptual_hash(target.image)) / SAME_IMAGE_BITS
        image = 0.5 * np.minimum(self._hist[rows], hist).sum(1) + 0.5 * np.clip(near, 0.0, 1.0)
        asked = words(target.question)
        answer = normalise(target.answer) or target.answer.strip().lower()
        text = np.array(
            [
                0.5 * len(self.words[i] & asked) / max(1, len(self.words[i] | asked))
                + 0.5 * (self.answers[i] == answer)
                for i in rows
            ]
        )
        parts = [image, text]
        keys = [k for k, v in target.params.items() if _is_number(v)]
        if keys:
            values = np.array([[_number(self.items[i].params.get(k)) for k in keys] for i in rows])
            span = np.nanmax(values, 0) - np.nanmin(values, 0) if len(rows) else np.ones(len(keys))
            span = np.where(np.isfinite(span) & (span > 0), span, 1.0)
            gap = np.abs(values - np.array([float(target.params[k]) for k in keys])) / span
            parts.append(1.0 - np.clip(np.nan_to_num(gap, nan=1.0), 0.0, 1.0).mean(1))
        return np.mean(parts, axis=0)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: object) -> float:
    return float(value) if _is_number(value) else math.nan  # type: ignore[arg-type]


def hard_examples(
    index: Neighbours,
    rows: list[int],
    first: set[int],
    failures: list[Failure],
    count: int,
    seed: int,
    exclude: set[int],
) -> list[int]:
    """Up to ``count`` of ``rows`` (indices into ``index``) to show again for one weakness: each
    failure in turn takes its nearest neighbour not yet taken (``Neighbours.similarity``), items
    of ``first`` (the weakness's own slice) before the rest, so the picks spread over every failure
    rather than crowding round one. A failure that failed in an earlier round too (stubborn: a
    higher failure rate over rounds) takes two per turn. ``exclude`` is never taken (items the
    pool holds, or taken this round for another weakness). Ties (templated questions, alike
    pictures) are broken by ``seed``'s noise, so rounds and weaknesses do not all start at the
    same items. Without failures, the slice's items and then the rest in a seeded order.
    Deterministic for a seed."""
    rng = np.random.default_rng(seed % 2**63)
    pool = np.array([r for r in rows if r not in exclude], dtype=np.int64)
    if count <= 0 or not len(pool):
        return []
    if not failures:  # nothing to be near: the slice's items, then the rest, in a seeded order
        pool = rng.permutation(pool)
        return [int(r) for r in pool[np.argsort(~np.isin(pool, list(first)), kind="stable")][:count]]
    if len(pool) > MAX_CANDIDATES:
        inside = pool[np.isin(pool, list(first))]
        rest = pool[~np.isin(pool, list(first))]
        pool = np.concatenate([inside, rng.permutation(rest)])[:MAX_CANDIDATES]
    outside = ~np.isin(pool, list(first))
    orders = []
    for f in failures:
        score = index.similarity(pool, f.example) + rng.uniform(0, 1e-6, len(pool))
        orders.append(pool[np.lexsort((-score, outside))])  # the slice first, then by similarity
    turns = sorted(range(len(failures)), key=lambda j: (failures[j].new, j))
    cursor = [0] * len(failures)
    taken: list[int] = []
    chosen: set[int] = set()
    while len(taken) < count and any(c < len(pool) for c in cursor):
        for j in turns:
            for _ in range(1 if failures[j].new else 2):
                while cursor[j] < len(pool) and int(orders[j][cursor[j]]) in chosen:
                    cursor[j] += 1
                if cursor[j] < len(pool) and len(taken) < count:
                    taken.append(int(orders[j][cursor[j]]))
                    chosen.add(taken[-1])
    return taken
