"""Reward functions for GRPO, called the way TRL's ``GRPOTrainer`` calls them.

Every function is called with keyword arguments only, each a list aligned with the completions
(``group_size`` completions per prompt, prompt by prompt), in TRL's standard format (text as
strings):

- ``completions``: the sampled texts;
- ``prompts``: the question as the model read it (with ``data.question_suffix``); its image is ``image``;
- ``completion_ids``: each completion's token ids, up to and including its end-of-sequence;
- the example's fields: ``id``, ``image`` (a PIL image), ``question``, ``answer`` (a string),
  ``skill``, ``choices`` (the item's options, or None) and ``source`` (``real`` or ``synthetic``);
- each of those under its dataset column name too, where the step was given the names
  (``solution`` when ``data.hf.answer_column`` is ``solution``: ``train.data.column_names``);
- every other column the examples carry (``Example.meta``: a ``data.hf`` dataset's remaining
  columns, a curriculum example's provenance); None for an example that lacks it;
- ``trainer_state`` (``global_step``, ``max_steps``, ``epoch``), ``log_metric(name, value)`` (a
  scalar, logged as ``train/reward_metrics/<name>``, the step's mean) and
  ``log_extra(column, values)`` (one value per completion, shown beside the logged completions).

A function takes the arguments it reads by name and ``**kwargs`` for the rest, and returns one
float per completion, or None for a completion it does not score. As in TRL, None counts as NaN:
a completion's reward is the weighted sum over the functions that scored it, and a completion
that no function scored has no reward: it is left out of its group's mean and spread, its
advantage is 0, and a warning names it. So TRL reward functions written for the standard format
work here unchanged; one written for the conversational format (reading
``completion[0]["content"]``, as ``trl.rewards`` do) works wrapped in ``conversational``. The
built-in ones below read text completions: in TRL they serve standard-format data (TRL's
vision-language training is conversational and hands them messages).

Built in: ``exact`` (the final answer, stripped, equals the gold answer), ``correct`` (equal after
normalisation, numbers compared as numbers), ``numeric`` (within a relative tolerance),
``choice`` (multiple choice: an option letter or the option's text), ``format`` (the completion
ends with a tagged final answer). Configs name them, or a user's function as ``module:function``,
with a weight each.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from curriculum.scoring import ANSWER_TAG, final_answer, is_correct, normalise
from curriculum.types import Example, as_pil

log = logging.getLogger(__name__)

RewardFn = Callable[..., Sequence[float | None]]

FIELDS = ("id", "image", "question", "answer", "skill", "choices", "source")
"""The example fields every reward function is given, under these names."""
CALL_ARGUMENTS = ("completions", "prompts", "completion_ids", "trainer_state", "log_metric", "log_extra")
"""Arguments that are not example columns: no column of that name is passed."""


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


def conversational(fn: RewardFn) -> RewardFn:
    """``fn``, written for TRL's conversational format, called with each completion as one
    assistant message and each prompt as one user turn (the image, then the text)."""

    @functools.wraps(fn)
    def wrapped(completions: list[str], prompts: list[str], image: list[Any], **kwargs: Any) -> Any:
        return fn(
            completions=[[{"role": "assistant", "content": c}] for c in completions],
            prompts=[
                [{"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": p}]}]
                for p, im in zip(prompts, image, strict=True)
            ],
            image=image,
            **kwargs,
        )

    return wrapped


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


@dataclass(frozen=True)
class RewardState:
    """What TRL's ``trainer_state`` gives a reward function for shaping by training progress:
    optimizer steps done, steps planned (0 when not known) and passes over the train split."""

    global_step: int
    max_steps: int = 0
    epoch: float = 0.0


def example_columns(
    examples: list[Example], column_names: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    """The example columns a reward function is given (see the module docstring), one list each.

    ``column_names``: dataset column name -> the field it fills (``{"solution": "answer"}``);
    each such field is given under that name too, for every example, real or synthetic."""
    decoded: dict[int, Any] = {}  # each prompt's image decoded once for all its completions

    def image(ex: Example) -> Any:
        if id(ex) not in decoded:
            decoded[id(ex)] = as_pil(ex.image) if ex.image is not None else None
        return decoded[id(ex)]

    out: dict[str, list[Any]] = {
        "id": [ex.id for ex in examples],
        "image": [image(ex) for ex in examples],
        "question": [ex.question for ex in examples],
        "answer": [ex.answer for ex in examples],
        "skill": [ex.skill for ex in examples],
        "choices": [ex.params.get("choices") for ex in examples],
        "source": [ex.source for ex in examples],
    }
    for name, fld in (column_names or {}).items():
        if fld not in FIELDS:
            raise ValueError(f"column {name!r} names {fld!r}, not one of the example fields {FIELDS}")
        if name not in out and name not in CALL_ARGUMENTS:
            out[name] = out[fld]
    extra = dict.fromkeys(k for ex in examples for k in ex.meta)  # first-seen order
    for key in extra:
        if key not in out and key not in CALL_ARGUMENTS:
            out[key] = [ex.meta.get(key) for ex in examples]
    return out


class Rewards:
    """The weighted sum of named reward functions, with TRL's handling of None.

    After each call: ``last`` holds each function's values (NaN where it returned None),
    ``metrics`` what the functions passed to ``log_metric``, ``extra`` what they passed to
    ``log_extra``, and ``unscored`` the number of completions no function scored."""

    def __init__(self, weights: dict[str, float]) -> None:
        if not weights:
            raise ValueError("at least one reward function is needed")
        self.weights = dict(weights)
        self.funcs = {name: resolve(name) for name in weights}
        self.last: dict[str, list[float]] = {}
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}
        self.unscored = 0

    def __call__(self, completions: list[str], **kwargs: Any) -> list[float]:
        """The reward of each completion (NaN where no function scored it). ``kwargs``: the
        other arguments every function is given (the module docstring lists them)."""
        self.last, self.metrics, self.extra = {}, {}, {}
        kwargs = {**kwargs, "log_metric": self._log_metric, "log_extra": self._log_extra}
        total = [0.0] * len(completions)
        scored = [False] * len(completions)
        for name, fn in self.funcs.items():
            call = _checked(name, fn, completions=completions, **kwargs)
            values = self._values(name, fn(**call), len(completions))
            self.last[name] = values
            for i, v in enumerate(values):
                if not math.isnan(v):  # TRL's nansum: a function that did not score an item adds nothing
                    total[i] += self.weights[name] * v
                    scored[i] = True
        missing = [i for i, s in enumerate(scored) if not s]
        self.unscored = len(missing)
        if missing:
            first = missing[0]
            log.warning(
                "no reward function scored %d of %d completions; they get no advantage. The first: %r "
                "(question %r, answer %r)",
                len(missing),
                len(completions),
                completions[first],
                kwargs.get("question", [None] * len(completions))[first],
                kwargs.get("answer", [None] * len(completions))[first],
            )
        return [t if s else math.nan for t, s in zip(total, scored, strict=True)]

    @staticmethod
    def _values(name: str, returned: Any, n: int) -> list[float]:
        values = [math.nan if v is None else float(v) for v in returned]
        if len(values) != n:
            raise ValueError(f"reward {name} returned {len(values)} values for {n} completions")
        for i, v in enumerate(values):
            if math.isinf(v):
                raise ValueError(
                    f"reward {name} returned {v} for completion {i}: a reward must be finite or None"
                )
        return values

    def _log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(float(value))

    def _log_extra(self, column: str, values: list[Any]) -> None:
        self.extra.setdefault(column, []).extend(values)


def _checked(name: str, fn: RewardFn, **kwargs: Any) -> dict[str, Any]:
    """``kwargs``, once ``fn`` is known to accept them: a function that names an argument the
    step does not give, or lacks ``**kwargs``, is refused with both lists, before it runs."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"reward {name!r} cannot be called with the arguments a step gives ({', '.join(sorted(kwargs))}): "
            f"{err}. Name the columns a reward reads and take **kwargs for the rest, as TRL requires"
        ) from None
    except ValueError:  # no signature to read (a C function): let the call itself decide
        pass
    return kwargs
