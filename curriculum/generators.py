"""Generators: new training examples aimed at one diagnosed weakness.

Each generator has a ``name`` and one method, ``generate(weakness, failures, count, seed, prefix)``,
returning at most ``count`` Examples whose ids start with ``prefix``. A generator that cannot
serve a weakness (no generation spec, no scene, nothing similar) returns an empty list and the
round passes its share of the budget to the others.

- ``world``: follows the weakness's spec through the built-in world's generator.
- ``same_image``: reuses the scene of a failed item and asks other questions about it, so the
  model sees the very picture it misread from new angles (answers computed from the scene).
- ``replay``: hard-example mining: the real training items nearest the failures in image and
  text (same skill, its slice first), none offered again while the pool holds it.

Three more serve the baselines a curriculum is compared with (``curriculum.source``), not a
weakness: ``real`` draws new items of the real data's own distribution (the built-in world's
skewed train distribution, or on external data items of the reserve: train items held back from
training), ``skill_real`` draws such items of the weakness's skill (the world's natural
distribution of that skill, or reserve items with that skill), and ``hard_real`` draws train
items at random for the student check to keep the ones the model gets wrong.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from curriculum.analyze import ANSWER, slice_values
from curriculum.mining import Neighbours, hard_examples
from curriculum.scoring import ANSWER_TAG, normalise, with_rationale
from curriculum.types import Example, Failure, Weakness
from curriculum.world import Spec, generate, get_skill, natural_examples, world_skills
from curriculum.world.questions import questions_for_scene


class Generator(Protocol):
    name: str

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]: ...


def in_slice(params: dict[str, Any], slice_: dict[str, Any]) -> bool:
    """Whether parameters fall inside a weakness slice (``[lo, hi]`` ranges or single values)."""
    for key, want in slice_.items():
        if key not in params:
            return False
        value = params[key]
        if isinstance(want, (list, tuple)) and len(want) == 2 and not isinstance(value, (list, tuple)):
            if not want[0] <= value <= want[1]:
                return False
        elif value != want:
            return False
    return True


def _on_image(src: Example, id: str, question: str, answer: str, skill: str | None = None) -> Example:
    """A new synthetic question about ``src``'s picture (same image and scene)."""
    return Example(
        id=id,
        image=src.image,
        question=question,
        answer=answer,
        skill=skill,
        scene=src.scene,
        source="synthetic",
    )


def _provenance(ex: Example, generator: str, weakness: Weakness, **extra: Any) -> Example:
    meta = {**ex.meta, "generator": generator, "weakness": weakness.id, **extra}
    return dataclasses.replace(ex, meta=meta)


class WorldGenerator:
    name = "world"

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        if weakness.spec is None or count <= 0:
            return []
        spec = Spec.from_dict({**weakness.spec, "count": count})
        made = []
        for i, part in enumerate(contrast(spec)):
            tag = f"{prefix}c{i}" if i else prefix  # ids unchanged where there is one part
            extra = {"contrast": True} if i else {}  # the student check keeps these (StudentCheck)
            made += [
                _provenance(ex, self.name, weakness, **extra)
                for ex in generate(part, seed + i, self.image_size, source="synthetic", id_prefix=tag)
            ]
        return made


def contrast(spec: Spec) -> list[Spec]:
    """The specs to draw for ``spec``: itself, or, when it fixes the answer of a question (a slice
    such as ``compare/answer=yes``, found when the model gives the other answer to every item),
    half of its count with that answer and half spread over the other answers. Examples of one
    answer only teach the opposite bias: in ``benchmarks/results/claim_tiny_gpu`` the analyzer found
    ``answer=yes`` and ``answer=no`` of compare and spatial in turn, round after round, and the
    model's constant answer followed the pool while its accuracy stayed at the prior."""
    fixed = spec.params.get("answer")
    options = get_skill(spec.skill).params.get("answer")
    if fixed is None or options is None or not options.options() or spec.count < 2:
        return [spec]
    others = [v for v in options.options() if v != fixed]
    if not others:
        return [spec]
    half = spec.count // 2
    parts = [dataclasses.replace(spec, count=spec.count - half)]
    for i, value in enumerate(others):
        n = half // len(others) + (i < half % len(others))
        if n:
            parts.append(dataclasses.replace(spec, params={**spec.params, "answer": value}, count=n))
    return parts


class SameImageGenerator:
    name = "same_image"

    def __init__(self, skills: list[str] | None = None) -> None:
        self.skills = skills  # the skills it may ask (None: all)

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        rng = random.Random(seed)
        sources = [f.example for f in failures if f.example.scene is not None]
        if not sources or count <= 0:
            return []
        per_scene: list[list[tuple[Example, str, str, str]]] = []
        for ex in sources:
            asked = normalise(ex.question)
            questions = [
                q for q in questions_for_scene(ex.scene, rng, self.skills) if normalise(q[1]) != asked
            ]
            # The weakness's own skill first: the same kind of question on the picture it misread.
            questions.sort(key=lambda q: q[0] != weakness.skill)
            per_scene.append([(ex, *q) for q in questions])
        out: list[Example] = []
        # Round-robin over scenes so the budget spreads over all the failed pictures.
        for depth in range(max((len(q) for q in per_scene), default=0)):
            for items in per_scene:
                if depth < len(items) and len(out) < count:
                    src, skill, question, answer = items[depth]
                    ex = _on_image(src, f"{prefix}-{len(out):05d}", question, answer, skill)
                    out.append(_provenance(ex, self.name, weakness, image_from=src.id))
        return out


class ReplayGenerator:
    """Real training items shown again for a weakness: hard-example mining.

    Candidates are the train items of the weakness's skill (every item for a weakness without
    one), those of its slice first (its parameter range or value, or on external data its
    metadata value or answer: ``curriculum.analyze.slice_values``), ranked for each failure by
    nearness in image and text (``curriculum.mining.hard_examples``), the picks spread over the
    failures. A slice that fixes the answer gets half its picks from the slice and half from the
    skill's other answers, nearest the failures (as the world generator's ``contrast``). An item
    is never offered twice in one round, nor while the pool holds it
    (``held()``: ids of real items the live pool holds a copy of), so every round brings items
    not shown yet until the candidates are spent; a round then makes fewer, and the budget passes
    on. Both are functions of the committed pool and the round, so a resumed run replays alike.
    """

    name = "replay"

    def __init__(self, train: list[Example], held: Callable[[], Iterable[Any]] | None = None) -> None:
        self.train, self.held = train, held
        self.index = Neighbours(train)
        self.row = {ex.id: i for i, ex in enumerate(train)}
        self.values = [slice_values(ex) for ex in train]  # what a weakness's slice reads
        self.by_skill: dict[str | None, list[int]] = {}
        for i, ex in enumerate(train):
            self.by_skill.setdefault(ex.skill, []).append(i)
        self._round: tuple[int, set[int]] = (-1, set())  # (round, rows offered in it so far)

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        if count <= 0:
            return []
        k = max((f.round for f in failures), default=-1)  # the round (none known without failures)
        if self._round[0] != k or k < 0:
            self._round = (k, set())
        offered = self._round[1]
        held = {self.row[i] for i in (self.held() if self.held is not None else ()) if i in self.row}
        rows = self.by_skill.get(weakness.skill, []) if weakness.skill is not None else range(len(self.train))
        first = {i for i in rows if in_slice(self.values[i], weakness.slice)}
        contrast = ANSWER in weakness.slice
        if contrast:  # one answer alone teaches that answer: half from the others
            rest = [i for i in rows if i not in first]
            half = count // 2 if rest else 0
            picked = hard_examples(
                self.index, sorted(first), first, failures, count - half, seed, held | offered
            )
            picked += hard_examples(
                self.index, rest, set(), failures, half, seed + 1, held | offered | set(picked)
            )
        else:
            picked = hard_examples(self.index, list(rows), first, failures, count, seed, held | offered)
        offered.update(picked)
        # A replay is a new pool entry (its own id) pointing at the real item it repeats; the
        # other answers of a slice that fixes one are contrast items (kept by the student check).
        return [
            dataclasses.replace(
                _provenance(self.train[i], self.name, weakness, replay_of=self.train[i].id,
                            **({"contrast": True} if contrast and i not in first else {})),
                id=f"{prefix}-{n:05d}",
            )
            for n, i in enumerate(picked)
        ]  # fmt: skip


class RealGenerator:
    """New real items of the data's own distribution, whatever the weakness: the built-in world's
    natural (skewed) distribution over ``skills``, or, given a ``reserve`` (external data), reserve
    items at random. A reserve item keeps its image, question and answer under a new id and
    names the item it is in ``meta["reserve_of"]``. ``taken`` returns the ids of the reserve
    items the pool holds now; they are left out, so every round draws fresh data (without it an
    item drawn again would be dropped as a duplicate, and the round fall short)."""

    name = "real"

    def __init__(
        self,
        image_size: int,
        skills: list[str] | None = None,
        reserve: list[Example] | None = None,
        taken: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.image_size, self.skills, self.reserve, self.taken = image_size, skills, reserve, taken
        self.by_skill: dict[str | None, list[Example]] = {}
        for ex in reserve or []:
            self.by_skill.setdefault(ex.skill, []).append(ex)

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        return self._draw(None, weakness, count, seed, prefix)

    def _draw(
        self, skill: str | None, weakness: Weakness, count: int, seed: int, prefix: str
    ) -> list[Example]:
        """``count`` new real items of ``skill`` (None: of any skill, in the data's own mix)."""
        if count <= 0:
            return []
        if self.reserve is not None:
            items = self.reserve if skill is None else self.by_skill.get(skill, [])
            taken = set(self.taken()) if self.taken is not None else set()
            fresh = [ex for ex in items if ex.id not in taken]
            picked = random.Random(seed).sample(fresh, min(count, len(fresh)))
            return [
                dataclasses.replace(
                    _provenance(ex, self.name, weakness, reserve_of=ex.id), id=f"{prefix}-{i:05d}"
                )
                for i, ex in enumerate(picked)
            ]
        skills = self.skills
        if skill is not None:
            if skill not in world_skills(self.skills):
                return []  # not a skill of this run's world: nothing to make
            skills = [skill]
        made = natural_examples(count, seed, self.image_size, name=prefix, skills=skills)
        return [
            dataclasses.replace(_provenance(ex, self.name, weakness), id=f"{prefix}-{i:05d}")
            for i, ex in enumerate(made)
        ]


class SkillRealGenerator(RealGenerator):
    """New real items of the weakness's skill (of any skill, in the data's own mix, for a weakness
    without one): what collecting more real data of chosen skills would bring."""

    name = "skill_real"

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        return self._draw(weakness.skill, weakness, count, seed, prefix)


class HardRealGenerator:
    name = "hard_real"

    def __init__(self, train: list[Example]) -> None:
        self.train = train

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        picked = random.Random(seed).sample(self.train, min(max(0, count), len(self.train)))
        return [
            dataclasses.replace(_provenance(ex, self.name, weakness, replay_of=ex.id), id=f"{prefix}-{i:05d}")
            for i, ex in enumerate(picked)
        ]


def parse_value(text: str) -> Any:
    """A proposal's parameter value as the world expects it: int, float, bool or text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(low)
        except ValueError:
            pass
    return text.strip()


class ProposalGenerator:
    """Examples from a frontier analyzer's proposals (``weakness.notes["proposals"]``).

    ``same_image``: the failed item's image with the proposed question and answer (the answer
    filter recomputes it from the scene where there is one). ``generated``: variants of an image
    generated from the proposal's description (``images``: an ``ImageMaker``; without one these
    proposals are skipped), each with the proposed question and answer, for the judges to verify.
    Image requests that fail are skipped and their reasons kept in ``image_errors``.
    ``rendered``: the proposed skill and parameters go through the world's generator, so the
    answer is computed by program; a proposal the world refuses (unknown skill or parameter,
    value out of range) or of a skill outside ``skills`` is skipped. A proposal's rationale is
    offered to the rationale filter.
    """

    name = "proposals"

    def __init__(self, image_size: int, images: Any = None, skills: list[str] | None = None) -> None:
        self.image_size, self.images, self.skills = image_size, images, skills
        self.image_errors: list[str] = []

    def generate(
        self, weakness: Weakness, failures: list[Failure], count: int, seed: int, prefix: str
    ) -> list[Example]:
        proposals = weakness.notes.get("proposals") or []
        if count <= 0 or not proposals:
            return []
        by_id = {f.example.id: f.example for f in failures}
        out: list[Example] = []

        def add(ex: Example, p: dict[str, Any], **meta: Any) -> None:
            extra = {k: p[k] for k in ("strategy", "model") if k in p}
            ex = _provenance(ex, self.name, weakness, proposal=p["kind"], **extra, **meta)
            if p.get("rationale"):  # checked by its own final answer when it states one
                r = p["rationale"]
                ex.meta["rationale_options"] = [
                    r if ANSWER_TAG in r else with_rationale(r, p["answer"] or ex.answer)
                ]
            out.append(ex)

        for p in proposals:
            src = by_id.get(p.get("item_id") or "")
            if p["kind"] == "same_image" and src is not None and p["question"] and p["answer"]:
                add(
                    _on_image(src, f"{prefix}-{len(out):05d}", p["question"], p["answer"]),
                    p,
                    image_from=src.id,
                )
        for p in proposals:
            if p["kind"] != "generated" or self.images is None or len(out) >= count:
                continue
            if not (p["image_prompt"] and p["question"] and p["answer"]):
                continue
            variants, errors = self.images(p["image_prompt"], count - len(out))
            self.image_errors += errors
            for image, setting in variants:
                ex = Example(
                    f"{prefix}-{len(out):05d}", image, p["question"], p["answer"], source="synthetic"
                )
                add(ex, p, image_generated=True, image_prompt=p["image_prompt"], image_setting=setting)
        rendered = [
            p for p in proposals if p["kind"] == "rendered" and (not self.skills or p["skill"] in self.skills)
        ]
        per_spec = -(-max(0, count - len(out)) // max(1, len(rendered)))
        for i, p in enumerate(rendered):
            spec = {"skill": p["skill"], "params": {q["name"]: parse_value(q["value"]) for q in p["params"]}}
            try:
                made = generate(Spec.from_dict({**spec, "count": per_spec}), seed + i, self.image_size,
                                source="synthetic", id_prefix=f"{prefix}-s{i}")  # fmt: skip
            except ValueError:
                continue  # the world refuses this spec: nothing is made from it
            for ex in made:
                add(ex, {**p, "rationale": ""})  # the world's answer is not the proposal's
        return out[:count]


def default_generators(
    image_size: int,
    train: list[Example],
    skills: list[str] | None,
    images: Any,
    reserve: list[Example] | None,
    taken: Callable[[], set[Any]],
) -> list[Generator]:
    """Every generator a round may use, proposals first (only frontier weaknesses carry them).
    ``images``: the frontier's image maker (None: no generated images); ``reserve``: external
    data's held-back train items the real-data baselines draw from (None: the built-in world makes
    new items); ``taken()``: ids of the real items the pool already holds a copy of (reserve items,
    replayed train items), never drawn again."""
    return [
        ProposalGenerator(image_size, images, skills),
        WorldGenerator(image_size),
        SameImageGenerator(skills),
        ReplayGenerator(train, taken),
        RealGenerator(image_size, skills, reserve, taken),
        SkillRealGenerator(image_size, skills, reserve, taken),
        HardRealGenerator(train),
    ]
