"""Filters: each drops candidates with a recorded reason, in a fixed order.

1. ``AnswerCheck``   the answer is recomputed by program from the scene (built-in world); items
                     without a scene pass as unverified (a judge panel can check those).
2. ``Dedup``         exact and near-duplicates: same image and the same or a near-identical
                     question, against the pool and earlier candidates of the round.
3. ``Decontaminate`` nothing that matches an evaluation item trains: not its image (by hash),
                     not a near-duplicate of its question where that question identifies the
                     item; probe items are the mining set, so their images may be reused with new
                     questions, but a probe item itself (image and question) never trains.
                     Examples rendered from a scene are matched by image only: the same scene
                     always renders the same pixels, and their templated questions recur across
                     unrelated pictures, so text says nothing about a leak there.
4. ``JudgePanel``    (frontier, optional) judges answer each candidate blind, or score it; see
                     ``frontier/judge.py``.
5. ``RationaleCheck`` with rationales on, of the reasoning offered for a candidate (by its proposal
                     or by the judges that reached its answer) keep the first whose final answer
                     matches the verified answer (STaR-style); a candidate whose every rationale
                     ends elsewhere is dropped; one offered none trains on its plain answer.
6. ``VerifiedOnly``  answers that no program verified and no judge panel accepted never train
                     (the user's own labelled items, real data, are verified by definition),
                     unless the run allows unverified answers; GRPO never does (a reward needs an
                     answer it can trust). It records how each survivor's answer was checked.
7. ``StudentCheck``  keep what the current model still gets wrong (or whose sampled pass rate
                     lies in a band): an example the model already answers teaches little.

The first three are cheap and model-free; the judges call an API; the student check asks the model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from curriculum.scoring import final_answer, is_correct, normalise, split_answer
from curriculum.types import Candidate, Example, Policy, image_hash
from curriculum.world.questions import answer_from_scene


def shingles(text: str) -> frozenset[str]:
    """Word bigrams (and unigrams for one-word texts) of the normalised text."""
    words = normalise(text).split()
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class TextIndex:
    """Near-duplicate lookup over many texts through an inverted index of shingles."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.sets: list[frozenset[str]] = []
        self.keys: list[str] = []
        self.postings: dict[str, list[int]] = defaultdict(list)

    def add(self, text: str, key: str) -> None:
        s = shingles(text)
        for sh in s:
            self.postings[sh].append(len(self.sets))
        self.sets.append(s)
        self.keys.append(key)

    def match(self, text: str) -> str | None:
        """The key of a stored text that is a near-duplicate of ``text``, if any."""
        s = shingles(text)
        seen: set[int] = set()
        for sh in s:
            for i in self.postings.get(sh, ()):
                if i not in seen:
                    seen.add(i)
                    if jaccard(s, self.sets[i]) >= self.threshold:
                        return self.keys[i]
        return None


class AnswerCheck:
    name = "answer"

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            ex = c.example
            if ex.scene is None:
                c.verdicts[self.name] = "unverified"
                continue
            got = answer_from_scene(ex.scene, ex.question)
            if got is None:
                c.drop(self.name, "the question is not well posed for its scene")
            elif not is_correct(ex.answer, got[1]):
                c.drop(self.name, f"answer {ex.answer!r} disagrees with the scene ({got[1]!r})")
            else:
                c.keep(self.name)


class Dedup:
    """Drops a candidate whose image and (near-)question repeat one in the pool or the round."""

    name = "dedup"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.by_image: dict[str, TextIndex] = {}

    def add(self, example: Example, key: str | None = None) -> None:
        h = image_hash(example.image)
        self.by_image.setdefault(h, TextIndex(self.threshold)).add(example.question, key or example.id)

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            if c.dropped:
                continue
            index = self.by_image.get(image_hash(c.example.image))
            other = index.match(c.example.question) if index else None
            if other is not None:
                c.drop(self.name, f"duplicate of {other}")
            else:
                c.keep(self.name)
                self.add(c.example)


class Decontaminate:
    """Keeps evaluation items (and exact probe items) out of training."""

    name = "decontaminate"

    def __init__(
        self, eval_sets: dict[str, list[Example]], probe: Iterable[Example], threshold: float
    ) -> None:
        self.images: dict[str, str] = {}
        self.texts = TextIndex(threshold)
        for set_name, items in eval_sets.items():
            # A question asked of many items (a template) names none of them; only a question
            # that identifies its item can leak it.
            counts = Counter(normalise(ex.question) for ex in items)
            for ex in items:
                if ex.image is not None:
                    self.images.setdefault(image_hash(ex.image), f"{set_name}:{ex.id}")
                if counts[normalise(ex.question)] == 1:
                    self.texts.add(ex.question, f"{set_name}:{ex.id}")
        self.probe_items = {(image_hash(ex.image), normalise(ex.question)): ex.id for ex in probe}

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            if c.dropped:
                continue
            h = image_hash(c.example.image)
            if h in self.images:
                c.drop(self.name, f"image of evaluation item {self.images[h]}")
            elif c.example.scene is None and (hit := self.texts.match(c.example.question)) is not None:
                c.drop(self.name, f"question near-duplicates evaluation item {hit}")
            elif (h, normalise(c.example.question)) in self.probe_items:
                c.drop(self.name, f"probe item {self.probe_items[(h, normalise(c.example.question))]}")
            else:
                c.keep(self.name)


class RationaleCheck:
    name = "rationale"

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            options = c.example.meta.pop("rationale_options", None)
            if c.dropped or options is None:
                continue
            good = [o for o in options if is_correct(o, c.example.answer)]  # judged by its final answer
            if good:
                c.example.meta["rationale"] = split_answer(good[0])[0]
                c.keep(self.name)
            elif options:
                said = sorted({final_answer(o) for o in options})
                c.drop(self.name, f"no rationale reaches the verified answer (they end at {said})")
            else:
                c.verdicts[self.name] = "none offered"


class VerifiedOnly:
    """Keeps candidates whose answer was checked: by a program (the answer check recomputed it from
    the scene), by a judge panel (it accepted the answer), or by the data (a real item: the
    user's labelled data). Any other candidate is dropped, unless ``allow_unverified``.

    Every survivor records how its answer was checked in ``meta["answer_checked_by"]``:
    ``program``, ``judges``, ``data`` or ``none`` (unverified, kept because allowed).
    """

    name = "verified"

    def __init__(self, allow_unverified: bool = False) -> None:
        self.allow_unverified = allow_unverified

    @staticmethod
    def checked_by(c: Candidate) -> str:
        """How ``c``'s answer was checked: ``program``, ``judges``, ``data`` or ``none``."""
        if c.verdicts.get("answer") == "ok":
            return "program"
        if c.verdicts.get("judge") == "ok":
            return "judges"
        return "data" if c.example.source == "real" else "none"

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            if c.dropped:
                continue
            how = self.checked_by(c)
            if how == "none" and not self.allow_unverified:
                c.drop(self.name, "no program or judge verified its answer, and it is not real data")
                continue
            c.example.meta["answer_checked_by"] = how
            if how == "none":
                c.verdicts[self.name] = "unverified, allowed (allow_unverified)"
            else:
                c.keep(self.name)


class StudentCheck:
    """Asks the model; keeps what it fails (``fails``) or what it passes at a rate in ``band``."""

    name = "student"

    def __init__(
        self, policy: Policy, mode: str, band: tuple[float, float] = (0.0, 0.5), samples: int = 4
    ) -> None:
        self.policy, self.mode, self.band, self.samples = policy, mode, band, samples

    def __call__(self, candidates: list[Candidate]) -> None:
        live = [c for c in candidates if not c.dropped]
        if self.mode == "off" or not live:
            for c in live:
                c.verdicts[self.name] = "skipped"
            return
        examples = [c.example for c in live]
        if self.mode == "fails":
            for c, pred in zip(live, self.policy.answer(examples), strict=True):
                if is_correct(pred, c.example.answer):
                    c.drop(self.name, f"the model already answers it ({pred!r})")
                else:
                    c.keep(self.name)
                    c.example.meta["student_answer"] = pred
            return
        lo, hi = self.band
        for c, preds in zip(live, self.policy.sample(examples, self.samples), strict=True):
            rate = sum(is_correct(p, c.example.answer) for p in preds) / len(preds)
            if lo <= rate <= hi:
                c.keep(self.name)
                c.example.meta["student_pass_rate"] = rate
            else:
                c.drop(self.name, f"pass rate {rate:.2f} outside [{lo}, {hi}]")
