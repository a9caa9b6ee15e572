"""Answer scoring shared by evaluation, failure mining and rewards.

Two judgements per answer: ``exact`` (the stripped strings are equal) and ``correct`` (equal after
normalisation: case, surrounding punctuation, articles, number words, and numeric equality).
Accuracy reports use ``correct``; ``exact`` is kept to show how much normalisation forgives.

An answer may come after reasoning: a prediction that contains the final-answer tag
(``Answer:``) is judged by what follows its last tag, and a training target with a rationale is
written as the rationale, a new line, the tag and the answer (``with_rationale``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[^\w\s.\-]")


ANSWER_TAG = "Answer:"


def split_answer(text: str) -> tuple[str, str]:
    """(the reasoning before the last final-answer tag, what follows it); no tag: ("", text)."""
    i = text.rfind(ANSWER_TAG)
    if i < 0:
        return "", text.strip()
    return text[:i].strip(), text[i + len(ANSWER_TAG) :].strip()


def final_answer(text: str) -> str:
    """What follows the last final-answer tag, or the whole text when there is none."""
    return split_answer(text)[1]


def with_rationale(rationale: str, answer: str) -> str:
    """A training target that reasons first: the rationale, then the tagged final answer."""
    return f"{rationale.strip()}\n{ANSWER_TAG} {answer}"


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and articles, spell numbers as digits, fold white space."""
    text = _PUNCT.sub(" ", text.lower()).replace("-", " ")
    words = [w.strip(".") for w in text.split()]
    words = [_NUMBER_WORDS.get(w, w) for w in words if w and w not in _ARTICLES]
    return " ".join(words)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def is_correct(prediction: str, answer: str) -> bool:
    p, a = normalise(final_answer(prediction)), normalise(answer)
    if p == a:
        return True
    pn, an = _number(p), _number(a)
    return pn is not None and an is not None and abs(pn - an) < 1e-9


def is_exact(prediction: str, answer: str) -> bool:
    return prediction.strip() == answer.strip()


@dataclass
class Score:
    id: str
    skill: str | None
    prediction: str
    answer: str
    exact: bool
    correct: bool


def score(
    ids: Iterable[str], skills: Iterable[str | None], predictions: Iterable[str], answers: Iterable[str]
) -> list[Score]:
    return [
        Score(i, s, p, a, is_exact(p, a), is_correct(p, a))
        for i, s, p, a in zip(ids, skills, predictions, answers, strict=True)
    ]


def summarise(scores: list[Score]) -> dict[str, float]:
    """Overall and per-skill accuracy: ``accuracy``, ``exact`` and ``skill/<name>`` keys."""
    if not scores:
        return {}
    out = {
        "accuracy": sum(s.correct for s in scores) / len(scores),
        "exact": sum(s.exact for s in scores) / len(scores),
        "n": float(len(scores)),
    }
    by_skill: dict[str, list[bool]] = defaultdict(list)
    for s in scores:
        if s.skill is not None:
            by_skill[s.skill].append(s.correct)
    for skill, marks in sorted(by_skill.items()):
        out[f"skill/{skill}"] = sum(marks) / len(marks)
    return out
