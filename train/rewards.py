"""Reward functions for GRPO, with the signature TRL uses: ``(completions, **columns) -> list[float]``.

``completions`` are the sampled texts; ``columns`` holds one list per example field, aligned with
them: ``answer``, ``question``, ``skill`` and ``choices`` (the item's options, or None). A function
ignores the columns it does not use, so any TRL reward function works here and these work in TRL.

Built in: ``exact`` (the final answer, stripped, equals the gold answer), ``correct`` (equal after
normalisation, numbers compared as numbers), ``numeric`` (within a relative tolerance),
``choice`` (multiple choice: an option letter or the option's text), ``format`` (the completion
ends with a tagged final answer). Configs name them, or a user's function as ``module:function``,
with a weight each; the reward is the weighted sum.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from curriculum.scoring import ANSWER_TAG, final_answer, is_correct, normalise

RewardFn = Callable[..., list[float]]


def exact(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    return [float(final_answer(c) == a.strip()) for c, a in zip(completions, answer, strict=True)]


def correct(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    return [float(is_correct(c, a)) for c, a in zip(completions, answer, strict=True)]


def _number(text: str) -> float | None:
    match = re.search(r"-?\d+(?:\.\d+)?", normalise(text))
    return float(match.group()) if match else None


def numeric(completions: list[str], answer: list[str], tolerance: float = 0.05, **_: Any) -> list[float]:
    """1 when the first number of the final answer lies within ``tolerance`` (relative) of the gold."""
    out = []
    for c, a in zip(completions, answer, strict=True):
        got, want = _number(final_answer(c)), _number(a)
        ok = got is not None and want is not None and abs(got - want) <= tolerance * max(1.0, abs(want))
        out.append(float(ok))
    return out


def choice(
    completions: list[str], answer: list[str], choices: list[list[str] | None] | None = None, **_: Any
) -> list[float]:
    """Multiple choice: the final answer is the gold option's text, or its letter (A, B, ...)."""
    choices = choices or [None] * len(completions)
    out = []
    for c, a, options in zip(completions, answer, choices, strict=True):
        said = final_answer(c).strip().strip("().:").upper()
        if options and len(said) == 1 and "A" <= said < chr(ord("A") + len(options)):
            out.append(float(is_correct(options[ord(said) - ord("A")], a)))
        else:
            out.append(float(is_correct(c, a)))
    return out


def format_(completions: list[str], **_: Any) -> list[float]:
    """1 when the completion states a final answer after the tag (``Answer: ...``)."""
    return [float(ANSWER_TAG in c and bool(final_answer(c))) for c in completions]


BUILT_IN: dict[str, RewardFn] = {
    "exact": exact,
    "correct": correct,
    "numeric": numeric,
    "choice": choice,
    "format": format_,
}


def resolve(name: str) -> RewardFn:
    """A built-in reward by name, or a user's function as ``module:function``."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if ":" not in name:
        raise ValueError(f"unknown reward {name!r} (built in: {', '.join(BUILT_IN)}; or module:function)")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reward {name!r} cannot be imported: {err}") from None
    if not callable(fn):
        raise ValueError(f"reward {name!r} is not callable")
    return fn


class Rewards:
    """The weighted sum of named reward functions; ``last`` keeps each one's values for logging."""

    def __init__(self, weights: dict[str, float]) -> None:
        if not weights:
            raise ValueError("at least one reward function is needed")
        self.weights = dict(weights)
        self.funcs = {name: resolve(name) for name in weights}
        self.last: dict[str, list[float]] = {}

    def __call__(self, completions: list[str], **columns: Any) -> list[float]:
        total = [0.0] * len(completions)
        self.last = {}
        for name, fn in self.funcs.items():
            values = [float(v) for v in fn(completions, **columns)]
            if len(values) != len(completions):
                raise ValueError(
                    f"reward {name} returned {len(values)} values for {len(completions)} completions"
                )
            self.last[name] = values
            total = [t + self.weights[name] * v for t, v in zip(total, values, strict=True)]
        return total
