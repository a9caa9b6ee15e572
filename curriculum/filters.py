"""Filters: each drops candidates with a recorded reason, in a fixed order.

1. ``AnswerCheck``   the answer is recomputed by program from the scene (built-in world); items
                     without a scene pass as unverified (a judge panel can check those).
2. ``Dedup``         exact and near-duplicates: the same or a near-identical image (resized,
                     re-encoded: see ``ImageIndex``) with the same or a near-identical question,
                     against the pool and earlier candidates of the round.
3. ``Decontaminate`` nothing that matches an evaluation item trains: not its image (by pixel hash,
                     or a resized or re-encoded copy of it by perceptual hash), not a
                     near-duplicate of its question where that question identifies the item;
                     probe items are the mining set, so their images may be reused with new
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

import numpy as np

from curriculum.scoring import final_answer, is_correct, normalise, split_answer
from curriculum.types import (
    HASH_BYTES,
    PHASH_BITS,
    Candidate,
    Example,
    Policy,
    hash_distances,
    image_hash,
    perceptual_hash,
    same_colour,
)
from curriculum.world.questions import answer_from_scene

NEAR_IMAGE_BITS = 10
"""Two images are the same picture when their perceptual hashes (``perceptual_hash``, 192 bits)
differ in at most this many layout bits (and their mean colours agree: ``COLOUR_TOLERANCE``). Chosen from ``benchmarks/perceptual_hash.py`` (results in
``benchmarks/results/perceptual_hash_cpu.json``): over 2243 distinct world images of every skill,
278,391 pairs of the same skill (alike layouts, the hard case) and 2,236,012 of different skills,
at 10 bits

- distinct images collide: same skill 2 pairs at 64 px (7e-6), 10 at 32 px (3.6e-5), 2 at
  224 px (7e-6); different skills 3 pairs at 32 and 64 px (1.3e-6), 1 at 224 px. Against a
  300-item test set, under 0.2 % of candidates would be dropped for an image they do not share;
  the collisions are sparse scenes whose few small objects differ (a grey pHash collided in
  0.9 % of the same-skill pairs: 2453 at 64 px);
- copies are recognised, at 64 px (the demo's size): JPEG q90-95 99.7 %, q75 98.6 %, q50 90 %,
  JPEG twice (q75 then q70) 92 %, resized x2, x0.8 or x0.5 100 %, x2 then JPEG q75 100 %, x0.5
  then JPEG q90 59 % (a 32 px JPEG); at 224 px every kind of copy >= 99.4 %. At 32 px resizes
  stay >= 99 % but JPEG q75 falls to 12 %: eight-pixel blocks rewrite a 32 px picture.

At 8 bits collisions fall to 1 pair at 64 px but JPEG q75 copies to 94 %; at 12 bits q75 reaches
99.2 % and collisions rise to 3 (same skill) and 7 (different skills)."""


class ImageIndex:
    """Perceptual hashes with a key each; ``near`` finds the keys within ``max_bits`` of a hash.

    A linear scan over a packed array (under 0.1 microsecond per stored image: 1.5 ms a lookup
    among 20,000), fast enough for eval sets and pools of tens of thousands of images.
    """

    def __init__(self, max_bits: int = NEAR_IMAGE_BITS) -> None:
        self.max_bits = max_bits
        self.keys: list[str] = []
        self._hashes = np.zeros((64, HASH_BYTES), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, phash: bytes, key: str) -> None:
        n = len(self.keys)
        if n == len(self._hashes):  # grow by doubling: adds stay amortised O(1)
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[n] = np.frombuffer(phash, dtype=np.uint8)
        self.keys.append(key)

    def near(self, phash: bytes) -> list[tuple[int, str]]:
        """``(distance, key)`` of every stored image within ``max_bits`` bits, nearest first."""
        if not self.keys:
            return []
        stored = self._hashes[: len(self.keys)]
        d = hash_distances(stored, phash)
        hits = np.nonzero((d <= self.max_bits) & same_colour(stored, phash))[0]
        return sorted((int(d[i]), self.keys[i]) for i in hits)


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
    """Drops a candidate whose image and (near-)question repeat one in the pool or the round.

    The image repeats when its pixels are the same or when it is a near-identical copy (resized,
    re-encoded: perceptual hashes within ``image_bits``); the question when it is the same or a
    near-duplicate (word-bigram Jaccard >= ``threshold``). A new question about the same picture
    is not a duplicate: it teaches something else.
    """

    name = "dedup"

    def __init__(self, threshold: float, image_bits: int = NEAR_IMAGE_BITS) -> None:
        self.threshold = threshold
        self.by_image: dict[str, TextIndex] = {}  # questions asked of each distinct image (pixel hash)
        self.images = ImageIndex(image_bits)  # perceptual hash -> pixel hash

    @staticmethod
    def _key(example: Example) -> str:
        """The pixel hashes of every image the item shows: conversations that differ in any
        picture are different items."""
        return "+".join(image_hash(im) for im in _pictures(example))

    def add(self, example: Example, key: str | None = None) -> None:
        h = self._key(example)
        if h not in self.by_image:
            self.by_image[h] = TextIndex(self.threshold)
            if not example.more_images:  # copies are looked for among single pictures
                self.images.add(perceptual_hash(example.image), h)
        self.by_image[h].add(example.question, key or example.id)

    def match(self, example: Example) -> str | None:
        """Why ``example`` duplicates a stored one (``"duplicate of <id>"``), or None."""
        h = self._key(example)
        same = self.by_image.get(h)
        if same is not None and (other := same.match(example.question)) is not None:
            return f"duplicate of {other}"
        if example.more_images:
            return None
        for bits, key in self.images.near(perceptual_hash(example.image)):
            if key != h and (other := self.by_image[key].match(example.question)) is not None:
                return f"duplicate of {other} (a near-identical image, {bits} of {PHASH_BITS} bits apart)"
        return None

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            if c.dropped:
                continue
            reason = self.match(c.example)
            if reason is not None:
                c.drop(self.name, reason)
            else:
                c.keep(self.name)
                self.add(c.example)


def _pictures(example: Example) -> list:
    """Every image an item shows (a conversation can show several; an item may have none)."""
    return [im for im in example.images if im is not None]


class Decontaminate:
    """Keeps evaluation items, their resized or re-encoded copies, and probe items (image and question)
    out of training."""

    name = "decontaminate"

    def __init__(
        self,
        eval_sets: dict[str, list[Example]],
        probe: Iterable[Example],
        threshold: float,
        image_bits: int = NEAR_IMAGE_BITS,
    ) -> None:
        self.images: dict[str, str] = {}  # pixel hash -> the first evaluation item with that image
        self.near_images = ImageIndex(image_bits)  # perceptual hash -> that item
        self.texts = TextIndex(threshold)
        for set_name, items in eval_sets.items():
            # A question asked of many items (a template) names none of them; only a question
            # that identifies its item can leak it.
            counts = Counter(normalise(ex.question) for ex in items)
            for ex in items:
                label = f"{set_name}:{ex.id}"
                for image in _pictures(ex):  # every image of a conversation can leak it
                    if (h := image_hash(image)) not in self.images:
                        self.images[h] = label
                        self.near_images.add(perceptual_hash(image), label)
                if counts[normalise(ex.question)] == 1:
                    self.texts.add(ex.question, label)
        # Probe items by image, then question: a copy of a probe picture with its own question is one.
        self.probe_items: dict[str, dict[str, str]] = {}
        self.probe_images = ImageIndex(image_bits)  # perceptual hash -> pixel hash
        for ex in probe:
            for image in _pictures(ex):
                h = image_hash(image)
                if h not in self.probe_items:
                    self.probe_items[h] = {}
                    self.probe_images.add(perceptual_hash(image), h)
                self.probe_items[h].setdefault(normalise(ex.question), ex.id)

    def match(self, example: Example) -> str | None:
        """Why ``example`` must not train (it is or copies an evaluation or probe item), or None.
        Every image of a conversation is checked, not only the first."""
        hashes = [(image_hash(im), perceptual_hash(im)) for im in _pictures(example)]
        for h, phash in hashes:
            if h in self.images:
                return f"image of evaluation item {self.images[h]}"
            near = self.near_images.near(phash)
            if near:
                bits, label = near[0]
                return f"image of evaluation item {label} (a resized or re-encoded copy, {bits} bits apart)"
        if example.scene is None and (hit := self.texts.match(example.question)) is not None:
            return f"question near-duplicates evaluation item {hit}"
        question = normalise(example.question)
        for h, phash in hashes:
            pictures = [h] if h in self.probe_items else []
            pictures += [key for _, key in self.probe_images.near(phash) if key != h]
            for key in pictures:
                if question in self.probe_items[key]:
                    return f"probe item {self.probe_items[key][question]}"
        return None

    def __call__(self, candidates: list[Candidate]) -> None:
        for c in candidates:
            if c.dropped:
                continue
            reason = self.match(c.example)
            if reason is not None:
                c.drop(self.name, reason)
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
    """Asks the model; keeps what it fails (``fails``) or what it passes at a rate in ``band``.
    Contrast examples (``generators.contrast``: the other answers of a question the model answers
    one way) are kept unasked."""

    name = "student"

    def __init__(
        self, policy: Policy, mode: str, band: tuple[float, float] = (0.0, 0.5), samples: int = 4
    ) -> None:
        self.policy, self.mode, self.band, self.samples = policy, mode, band, samples

    def __call__(self, candidates: list[Candidate]) -> None:
        live = [c for c in candidates if not c.dropped]
        for c in live:  # a bias is broken by the answers the model already gives: kept as they are
            if c.example.meta.get("contrast"):
                c.verdicts[self.name] = "contrast: kept whatever the model answers"
        live = [c for c in live if not c.example.meta.get("contrast")]
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
