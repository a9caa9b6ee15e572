"""Failure analysis: turn one round's probe results into ranked, targetable weaknesses.

A ``Weakness`` says where the model fails (a slice of one skill's parameters; on labelled
external data a slice of its skill column by its answer or a metadata column; on data without
labels a cluster of similar questions), how sure we are (a Wilson lower bound on the failure
rate), what it confuses, and for the built-in world a generator spec that makes more of exactly
that slice. ``OfflineAnalyzer`` is the deterministic, network-free default; an LLM-backed
analyzer can implement the same ``Analyzer`` protocol.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .clusters import Embedder, kmeans, minilm_embedder, nearest
from .scoring import normalise
from .types import Example, Failure, Weakness
from .world.generate import get_skill, skill_names

log = logging.getLogger(__name__)

Constraint = dict[str, Any]  # parameter -> fixed value or inclusive [lo, hi]

SKILL_WORDS = {
    "colour": "naming the colour of an object",
    "shape": "naming the shape of an object",
    "count": "counting scenes",
    "count_attr": "counting objects of a named colour or shape",
    "spatial": "judging left/right/above/below",
    "compare": "comparing how many objects two colours have",
    "arithmetic": "adding or subtracting counts",
    "bar_value": "reading a bar's value",
    "bar_compare": "finding the tallest or shortest bar",
}
DIRECTIONS = {
    "count": ("undercount", "overcount"),
    "bar": ("read too low", "read too high"),
    "external": ("answer too low", "answer too high"),
}
COUNT_NOUNS = dict(num_objects="objects", distractors="distractors", num_bars="bars", target_count="targets")


@runtime_checkable
class Analyzer(Protocol):
    """Reads a round's probe results and returns weaknesses, most urgent first.

    ``failures`` is a capped subset of the wrong probe items with the model's predictions
    (``Failure.new`` marks ones not failed before); ``probe`` is every probe item with whether
    the model answered it correctly this round, so failure rates can be computed. ``exemplars``
    are the last round's accepted examples that the student still failed (question, answer,
    skill, student_answer, weakness); an analyzer that writes proposals may aim them by these.
    """

    name: str

    def analyze(
        self,
        failures: list[Failure],
        probe: list[tuple[Example, bool]],
        exemplars: Sequence[dict[str, Any]] = (),
    ) -> list[Weakness]: ...


def wilson_lower(k: int, n: int, z: float = 1.64) -> float:
    """Lower end of the Wilson score interval for ``k`` failures in ``n`` items (0 when n is 0).

    Unlike the normal approximation it stays in [0, 1] and is sane for tiny n, so ranking by
    it puts 12 failures of 15 (0.59 at z=1.64) above 3 of 3 (0.53): more evidence wins.
    """
    if n <= 0:
        return 0.0
    p, z2 = k / n, z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(max((centre - margin) / (1 + z2 / n), 0.0), p)


def in_slice(params: dict[str, Any], constraint: Constraint) -> bool:
    """Whether concrete parameters satisfy a constraint (lists are inclusive [lo, hi] ranges)."""

    def ok(value: Any, want: Any) -> bool:
        if not isinstance(want, list):
            return value == want
        return isinstance(value, (int, float)) and not isinstance(value, bool) and want[0] <= value <= want[1]

    return all(key in params and ok(params[key], want) for key, want in constraint.items())


@dataclass(frozen=True)
class Slice:
    """A named part of one skill; ``constraint`` is also the generator spec's ``params``."""

    id: str
    skill: str
    constraint: Constraint
    words: str


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def make_slice(skill: str, name: str, want: Any, note: str = "") -> Slice:
    """The slice ``{name: want}`` of ``skill`` with its stable id and plain-language words."""
    head, label = SKILL_WORDS.get(skill, get_skill(skill).description), name.replace("_", " ")
    if isinstance(want, list):
        span = _fmt(want[0]) if want[0] == want[1] else f"{_fmt(want[0])}-{_fmt(want[1])}"
        words = f"{span} {COUNT_NOUNS[name]}" if name in COUNT_NOUNS else f"{label} {span}"
        return Slice(f"{skill}/{name}={span}", skill, {name: list(want)}, f"{head} with {words}{note}")
    words = f"{label} {'on' if want else 'off'}" if isinstance(want, bool) else f"{label} '{want}'"
    return Slice(f"{skill}/{name}={_fmt(want)}", skill, {name: want}, f"{head} with {words}{note}")


def _thirds(kind: str, lo: float, hi: float) -> list[list[Any]]:
    """Low/mid/high thirds of a full range: contiguous int groups, or float edges to 3 decimals."""
    if kind == "int":
        values = list(range(int(lo), int(hi) + 1))
        cuts = [round(i * len(values) / 3) for i in range(4)]
        return [[values[a], values[b - 1]] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    step = (hi - lo) / 3
    edges = [float(lo), round(lo + step, 3), round(lo + 2 * step, 3), float(hi)]
    return [[a, b] for a, b in zip(edges, edges[1:], strict=False)]


def slices_for(skill: str) -> list[Slice]:
    """Every fixed slice of a skill: the whole skill, each numeric parameter's thirds, each value.

    Bins come from the skill's declared full ranges, never from the data, so a slice id means
    the same examples in every round and a weakness can be followed from round to round.
    """
    out = [Slice(skill, skill, {}, SKILL_WORDS.get(skill, get_skill(skill).description))]
    for name, p in get_skill(skill).params.items():
        if p.kind not in ("int", "float"):
            out += [make_slice(skill, name, v) for v in p.options()]
            continue
        bins = _thirds(p.kind, p.lo, p.hi)
        for i, span in enumerate(bins):
            hard = (p.harder == "low" and i == 0) or (p.harder == "high" and i == len(bins) - 1)
            out.append(make_slice(skill, name, span, " (the harder end)" if hard else ""))
    return out


ANSWER = "answer"
"""The key of an external item's answer in a slice: ``{"answer": "top left"}``."""


def slice_values(ex: Example) -> dict[str, Any]:
    """What an external item's slices read: its parameters (the metadata columns
    ``data.hf.slice_columns`` names) and its normalised answer under ``ANSWER``."""
    return {**ex.params, ANSWER: _norm(ex.answer)}


def is_world_item(ex: Example) -> bool:
    """A built-in world item: a world skill, with that skill's parameters (external data may
    name its skills as the world does, but its parameters are its own metadata columns)."""
    if not ex.params or ex.skill not in set(skill_names()):
        return False
    return set(ex.params) <= set(get_skill(ex.skill).params)


def labelled_slices(skill: str | None, items: list[Example]) -> list[Slice]:
    """The fixed slices of one skill of external data (``skill`` None: of data with no skill
    column): the whole skill, one per value of each metadata column, one per answer. A slice's id
    is made of the skill, the column and the value (``"colour/answer=red"``), never of its rank or
    of how many items it holds, so the same slice has the same id in every round."""
    head = skill if skill is not None else "all"
    out = [Slice(head, str(skill), {}, f"{head} items" if skill is not None else "all items")]
    columns = sorted({k for ex in items for k in ex.params} - {ANSWER})
    for column in [*columns, ANSWER]:
        values = {slice_values(ex).get(column) for ex in items} - {None}
        for value in sorted(values, key=lambda v: (str(type(v)), str(v))):
            name = f"{column}={_fmt(value)}"
            words = (
                f"answer {_fmt(value)!r}"
                if column == ANSWER
                else f"{column.replace('_', ' ')} {_fmt(value)!r}"
            )
            sid = name if skill is None else f"{skill}/{name}"
            out.append(Slice(sid, str(skill), {column: value}, f"{head} items with {words}"))
    return out


def _norm(text: str) -> str:
    """The scorer's normal form, but keeping answers it empties (bar "a" is an article there)."""
    return normalise(text) or text.strip().lower()


answer_form = _norm
"""An answer as slices read it (``slice_values``): the form a slice's ``answer`` value takes."""


def confusion_counts(failures: list[Failure]) -> Counter[tuple[str, str]]:
    """How often each normalised (answer, prediction) pair occurs among ``failures``."""
    return Counter((_norm(f.example.answer), _norm(f.prediction)) for f in failures)


def top_confusions(counts: Counter[tuple[str, str]], k: int = 3) -> list[tuple[str, str, int]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(a, p, t) for (a, p), t in ranked[:k]]


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def confusion_words(
    counts: Counter[tuple[str, str]], low: str = "undercount", high: str = "overcount"
) -> str:
    """A plain phrase for the commonest mistake, led by a direction when answers are numbers."""
    if not counts:
        return ""
    parts, total = [], sum(counts.values())
    numeric = [(_num(a), _num(p), t) for (a, p), t in counts.items()]
    numeric = [(a, p, t) for a, p, t in numeric if a is not None and p is not None]
    n_num = sum(t for _, _, t in numeric)
    if n_num * 2 >= total:
        if sum(t for a, p, t in numeric if p < a) * 2 > n_num:
            parts.append(f"tends to {low}")
        elif sum(t for a, p, t in numeric if p > a) * 2 > n_num:
            parts.append(f"tends to {high}")
    a, p, t = top_confusions(counts, 1)[0]
    parts.append(f"{'often' if t > 1 else 'e.g.'} answers {p or 'nothing'} where the answer is {a}")
    return "; ".join(parts)


def _copy(constraint: Constraint) -> Constraint:
    return {k: list(v) if isinstance(v, list) else v for k, v in constraint.items()}


@dataclass
class _Group:
    """A candidate weakness: its probe items, wrong ones, capped failures, and diagnosis lead."""

    id: str
    skill: str | None
    slice: Constraint
    spec: dict[str, Any] | None
    n: int
    bad: set[str]
    failures: list[Failure]
    lead: str  # diagnosis text before "k of n"


class OfflineAnalyzer:
    """The default analyzer: deterministic, local, no network.

    World items fall into the fixed slices of ``slices_for`` plus one value slice per recurring
    confusion whose answer a parameter pins (``count``'s answer is ``num_objects``). A slice is
    kept when it has ``min_failures`` wrong items and the Wilson lower bound of its failure rate
    (one-sided ~95 % at z=1.64) exceeds the overall probe failure rate: it then fails more than
    the average item even in its worst plausible case. The overall rate is a point estimate over
    far more items than any slice, so its noise is small next to the slice's, and it includes the
    slice, which makes the test conservative. With ~100 slices tested a few small ones can pass
    by chance; ranking by the bound puts them below real weaknesses (raise ``z`` to be
    stricter). If none passes (a model failing everywhere alike), whole skills are the targets.

    With ``spread_skills`` the strongest weakness of every skill comes before a second one of any
    skill, so that one skill's many failing slices cannot take every place.

    Ranked by lower bound, a slice is dropped when a kept one of the same skill already holds
    more than ``overlap`` of its wrong items. A child clearly worse than its parent (its bound
    above the parent's rate) always ranks above it, so the specific slice is the one kept.

    External data with labels (a skill column, or metadata columns the run puts in ``params``:
    ``data.hf.slice_columns``) is sliced the same way by ``labelled_slices``: per skill, the whole
    skill, each value of each metadata column and each answer; the same baseline test, ranking
    and overlap rule. Its weaknesses have no generation spec (nothing renders them).

    Items without any label are embedded as "question || answer", their failures clustered with
    k-means (k = min(max_weaknesses, failures // min_failures)), and every such probe item goes
    to its nearest centroid to count n and the rate. Clusters need ``min_failures`` wrong items
    but not the baseline test: being groups of failures by construction, what counts is what
    they share. Without an embedder (the ``embed`` extra not installed) they are sliced by answer
    instead, as labelled data is.
    """

    name = "offline"

    def __init__(
        self,
        max_weaknesses: int = 6,
        min_failures: int = 3,
        z: float = 1.64,
        embedder: Embedder | None = None,
        overlap: float = 0.8,
        seed: int = 0,
        spread_skills: bool = False,
    ) -> None:
        if max_weaknesses < 1 or min_failures < 1 or z <= 0:
            raise ValueError("max_weaknesses and min_failures must be >= 1 and z > 0")
        self.max_weaknesses, self.min_failures, self.z = max_weaknesses, min_failures, z
        self.overlap, self.seed, self._embedder = overlap, seed, embedder
        self.spread_skills = spread_skills
        self._warned = False

    @classmethod
    def of(cls, cfg: Any) -> OfflineAnalyzer:
        """The analyzer a run's ``curriculum`` section asks for (``max_weaknesses``, ``spread_skills``)."""
        return cls(max_weaknesses=cfg.max_weaknesses, spread_skills=cfg.spread_skills)

    def analyze(
        self,
        failures: list[Failure],
        probe: list[tuple[Example, bool]],
        exemplars: Sequence[dict[str, Any]] = (),
    ) -> list[Weakness]:
        """Weaknesses of this round, ranked by the lower bound of their failure rate."""
        items = {ex.id: (ex, ok) for ex, ok in probe}
        for f in failures:  # a failure missing from the probe still counts as a wrong item
            items.setdefault(f.example.id, (f.example, False))
        wrong = {i for i, (_, ok) in items.items() if not ok}
        if not wrong:
            return []
        base = len(wrong) / len(items)
        world = [ex for ex, _ in items.values() if is_world_item(ex)]
        ids = {ex.id for ex in world}
        labelled = [ex for ex, _ in items.values() if ex.id not in ids and (ex.skill or ex.params)]
        ids_l = {ex.id for ex in labelled}
        other = [ex for ex, _ in items.values() if ex.id not in ids | ids_l]
        groups = self._slices(world, wrong, [f for f in failures if f.example.id in ids], base)
        groups += self._labelled(labelled, wrong, [f for f in failures if f.example.id in ids_l], base)
        rest = [f for f in failures if f.example.id not in ids | ids_l]
        clusters = self._clusters(other, wrong, rest)
        if clusters is None:  # no embedder: slice the unlabelled items by answer instead
            clusters = self._labelled(other, wrong, rest, base)
        groups += clusters
        ranked = sorted(groups, key=self._rank)
        if self.spread_skills:  # the strongest of each skill first, then the rest in rank order
            firsts = list({g.skill: g for g in reversed(ranked)}.values())
            lead = sorted(firsts, key=self._rank)
            ranked = lead + [g for g in ranked if all(g is not f for f in lead)]
        return [self._weakness(g, base) for g in ranked[: self.max_weaknesses]]

    def _lower(self, g: _Group) -> float:
        return wilson_lower(len(g.bad), g.n, self.z)

    def _rank(self, g: _Group) -> tuple[float, int, str]:
        return (-self._lower(g), -len(g.bad), g.id)

    def _slices(
        self, world: list[Example], wrong: set[str], failures: list[Failure], base: float
    ) -> list[_Group]:
        """Slices of world skills that pass the baseline test, ranked, with overlaps removed."""
        cands = []
        for skill in sorted({str(ex.skill) for ex in world}):
            exs = [ex for ex in world if ex.skill == skill]
            slices = {s.id: s for s in slices_for(skill) + self._confusion_slices(skill, exs, failures)}
            for s in slices.values():
                ids = {ex.id for ex in exs if in_slice(ex.params, s.constraint)}
                if len(ids & wrong) >= self.min_failures:
                    fs = [f for f in failures if f.example.id in ids]
                    spec = {"skill": skill, "params": _copy(s.constraint)}
                    lead = f"{skill}: {s.words} fails"
                    cands.append(
                        _Group(s.id, skill, _copy(s.constraint), spec, len(ids), ids & wrong, fs, lead)
                    )
        return self._select(cands, base)

    def _select(self, cands: list[_Group], base: float) -> list[_Group]:
        """The candidate slices that pass the baseline test (none passing: the whole skills),
        ranked, each dropped when a kept slice of its skill already holds most of its failures."""
        cands = sorted(cands, key=self._rank)
        kept: list[_Group] = []
        for g in [g for g in cands if self._lower(g) > base] or [g for g in cands if not g.slice]:
            if not any(k.skill == g.skill and len(g.bad & k.bad) > self.overlap * len(g.bad) for k in kept):
                kept.append(g)
        return kept

    def _labelled(
        self, exs: list[Example], wrong: set[str], failures: list[Failure], base: float
    ) -> list[_Group]:
        """Slices of external items by skill, metadata column and answer (``labelled_slices``)."""
        by_skill: dict[str | None, list[Example]] = {}
        for ex in exs:
            by_skill.setdefault(ex.skill, []).append(ex)
        cands = []
        for skill in sorted(by_skill, key=lambda s: (s is not None, s or "")):
            group = by_skill[skill]
            values = {ex.id: slice_values(ex) for ex in group}
            for s in labelled_slices(skill, group):
                ids = {
                    i for i, v in values.items() if all(v.get(k) == want for k, want in s.constraint.items())
                }
                if len(ids & wrong) >= self.min_failures:
                    fs = [f for f in failures if f.example.id in ids]
                    lead = f"{s.words} fail"
                    cands.append(
                        _Group(s.id, skill, dict(s.constraint), None, len(ids), ids & wrong, fs, lead)
                    )
        return self._select(cands, base)

    def _confusion_slices(self, skill: str, exs: list[Example], failures: list[Failure]) -> list[Slice]:
        """One value slice per recurring (answer, prediction) pair whose answer a parameter pins."""
        params, out = get_skill(skill).params, []
        pins = [k for k, p in params.items() if p.kind in ("int", "choice")]
        pins = [k for k in pins if all(_norm(str(ex.params.get(k))) == _norm(ex.answer) for ex in exs)]
        counts = confusion_counts([f for f in failures if f.example.skill == skill])
        for answer in sorted({a for (a, _), t in counts.items() if t > 1}) if pins else []:
            number = _num(answer)
            if params[pins[0]].kind == "int" and number is not None:
                out.append(make_slice(skill, pins[0], [int(number)] * 2))
            elif answer in params[pins[0]].choices:
                out.append(make_slice(skill, pins[0], answer))
        return out

    def _embed(self, texts: list[str]) -> np.ndarray | None:
        """Unit-length float64 rows, whatever the embedder returns (tensor or array); None when
        no embedder was given and the default one is not installed (warned once)."""
        if self._embedder is None:
            try:
                self._embedder = minilm_embedder()
            except ImportError as err:
                if not self._warned:
                    log.warning("%s; slicing items without labels by answer instead", err)
                    self._warned = True
                return None
        out = self._embedder(texts)
        x = np.asarray(out.detach().float().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def _clusters(self, exs: list[Example], wrong: set[str], failures: list[Failure]) -> list[_Group] | None:
        """One group per k-means cluster of the failures without labels, largest first (None:
        no embedder to cluster them with)."""
        k = min(self.max_weaknesses, len(failures) // self.min_failures)
        if k < 1:
            return []
        x = self._embed([f"{ex.question} || {ex.answer}" for ex in exs])
        if x is None:
            return None
        row = {ex.id: i for i, ex in enumerate(exs)}
        xf = x[[row[f.example.id] for f in failures]]
        centres = kmeans(xf, k, self.seed)
        labels, flabels = nearest(x, centres), nearest(xf, centres)
        found = []
        for j in range(k):
            ids = {ex.id for ex, lab in zip(exs, labels, strict=True) if lab == j}
            members = [i for i, lab in enumerate(flabels) if lab == j]
            if len(ids & wrong) >= self.min_failures and members:
                found.append((j, ids, members))
        out = []
        for i, (j, ids, members) in enumerate(sorted(found, key=lambda c: (-len(c[1] & wrong), c[2][0]))):
            closest = np.argsort(((xf[members] - centres[j]) ** 2).sum(1), kind="stable")[:3]
            quoted = "; ".join(
                f"{f.example.question!r} (answer {f.example.answer!r}, said {f.prediction!r})"
                for f in (failures[members[m]] for m in closest)
            )
            fs, lead = [failures[m] for m in members], f"questions like {quoted} fail"
            out.append(_Group(f"cluster/{i}", None, {"cluster": i}, None, len(ids), ids & wrong, fs, lead))
        return out

    def _weakness(self, g: _Group, base: float) -> Weakness:
        """The Weakness record; its diagnosis reads "<lead> k of n, r % (the whole probe: b % wrong);
        <confusion>": both rates are failure rates, and the text says so."""
        kind = "external" if g.spec is None else "bar" if str(g.skill).startswith("bar") else "count"
        counts, rate = confusion_counts(g.failures), len(g.bad) / g.n
        said = confusion_words(counts, *DIRECTIONS[kind])
        tail = f" (the whole probe: {round(100 * base)} % wrong){'; ' + said if said else ''}."
        return Weakness(
            id=g.id,
            skill=g.skill,
            slice=g.slice,
            failure_rate=rate,
            lower_bound=self._lower(g),
            n=g.n,
            failures=len(g.bad),
            failure_ids=[f.example.id for f in sorted(g.failures, key=lambda f: not f.new)],
            diagnosis=f"{g.lead} {len(g.bad)} of {g.n}, {round(100 * rate)} %{tail}",
            confusions=top_confusions(counts),
            spec=g.spec,
        )
