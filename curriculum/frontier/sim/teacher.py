"""The simulated frontier model: what it answers to each request the pipeline sends.

It reads every picture of a request back into its scene (``perceive``), so it knows the right
answer to any world question (``knowledge.solve``), and then errs on purpose at the configured
rates (``SimConfig``):

- **analysis** (``analyze_reply``, ``lrf_reply``, ``cads_reply``): for the shown failures it writes
  a diagnosis and proposals of the kinds the schema allows: new questions on a failed picture,
  world specs in the harder half of the failing skill's ranges, and descriptions of new pictures
  with a question and answer. A proposal's answer is wrong with ``proposal_error``: a misreading
  (its rationale reasons to the same wrong answer) or, for ``slip_share`` of them, a slip (the
  rationale reasons to the right answer and the answer field says another).
- **judging** (``judge_answer``, ``judge_score``): a blind judge answers the question and says
  whether the picture shows what it needs; a scoring judge scores the proposed answer. A vote
  misreads the item with ``judge_error`` and is cast without looking with ``judge_lazy``.
- **pictures** (the images API): the description is parsed back into a scene and drawn with the
  world's renderer, each variant laid out anew with every relation kept; with ``image_error`` it is drawn wrong.

Mistakes are tied to items, not requests: each model has one draw per item, and misreads it in
every role whose error rate the draw falls under (a judge with the proposer's rate misreads what
it misread when proposing; a slip is not held); with ``correlation`` the draw is shared by every
model, wrong answer included (see ``misread``). Every draw comes from the seed and the request, never from a shared stream, so
replies do not depend on the order in which concurrent requests arrive.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from PIL import Image

import curriculum.frontier.sim.knowledge as knowledge
from curriculum.frontier.sim.config import SimConfig
from curriculum.frontier.sim.describe import describe, improvise, parse
from curriculum.frontier.sim.request import ChatRequest, Shown, conform, shown_key, skills_in
from curriculum.scoring import is_correct
from curriculum.types import image_hash
from curriculum.world.scene import render
from curriculum.world.skills import SKILLS

DRAWN_KEPT = 20_000  # pictures whose true scene is kept for ``drawn_scene``


class Teacher:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.counts: Counter[str] = Counter()
        self._drawn: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ seeded draws

    def rng(self, *parts: Any) -> random.Random:
        """A generator of its own for one decision (``random`` hashes a str seed with SHA-512)."""
        return random.Random("|".join(map(str, (self.config.seed, *parts))))

    def u(self, *parts: Any) -> float:
        return self.rng(*parts).random()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def misread(self, model: str, key: str, rate: float) -> float | None:
        """Whether ``model`` misreads item ``key`` (a mistake made at ``rate``): None, or a number
        in [0, 1) that picks its wrong answer. With probability ``correlation`` the model's draw
        is the item's shared one, which every model shares, wrong answer included."""
        shared = self.u("which", model, key) < self.config.correlation
        who = "shared" if shared else f"own:{model}"
        if self.u("misread", who, key) >= rate:
            return None
        return self.u("wrong", who, key)

    def believed(
        self, model: str, scene: dict[str, Any] | None, question: str, truth: str, rate: float
    ) -> str:
        """The answer ``model`` holds for an item: the truth, or a wrong one when it misreads it."""
        pick = self.misread(model, knowledge.item_key(scene, question), rate)
        if pick is None:
            return truth
        options = knowledge.wrong_answers(truth, scene)
        return options[int(pick * len(options))]

    # ------------------------------------------------------------------ chat requests

    def reply(self, request: ChatRequest, key: str) -> dict[str, Any]:
        """The JSON object the model answers ``request`` with (``key``: the request's hash)."""
        props = request.schema.get("properties", {})
        if "proposals" in props:
            self.count("analysis")
            value = self.analyse(request)
        elif "score" in props or "answer" in props:
            self.count("judge")
            value = self.judge(request, key)
        else:
            self.count("other")
            value = {}
        return conform(value, request.schema)

    def analyse(self, request: ChatRequest) -> dict[str, Any]:
        props = request.schema["properties"]
        item = props["proposals"].get("items", {}).get("properties", {})
        kinds = list(item.get("kind", {}).get("enum") or ["same_image"])
        rationale = "rationale" in item
        skills = skills_in(request.system) or {name: s.describe() for name, s in SKILLS.items()}
        shown = [s for s in request.shown if s.data]
        # Seeded by what the model is shown, not by the whole request: the same failures with or
        # without a rationale field get the same proposals, so the two can be compared pairwise.
        rng = self.rng("analyse", request.model, shown_key(request), kinds)
        # A model writes what it is asked for: no more than the request says, nor than the schema allows.
        limit = min(self.config.proposals, props["proposals"].get("maxItems", 12), request.asked or 12)
        proposals = self.propose(request.model, shown, kinds, skills, request.strategy, rationale, limit, rng)
        reply: dict[str, Any] = {"proposals": proposals}
        first = next((s for s in shown if s.scene is not None), shown[0] if shown else None)
        skill = self._skill(first) if first else None
        if "error_type" in props:
            reply["error_type"] = knowledge.ERROR_TYPES.get(skill or "", "other")
            reply["missing_skill"] = SKILLS[skill].description if skill else "reading the picture"
            reply["diagnosis"] = _diagnosis(shown)
        if "image_description" in props:
            reply["image_description"] = describe(first.scene) if first and first.scene else "A picture."
            reply["key_elements"] = _key_elements(first) if first else []
            reply["error_hypothesis"] = _diagnosis(shown[:1])
        return reply

    def propose(
        self,
        model: str,
        shown: list[Shown],
        kinds: Sequence[str],
        skills: dict[str, Any],
        strategy: str | None,
        rationale: bool,
        limit: int,
        rng: random.Random,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` proposals over the shown failures, the allowed kinds in turn."""
        out: list[dict[str, Any]] = []
        if not shown:
            return out
        for j in range(limit * 2):  # some slots find nothing to propose (an unread picture)
            if len(out) >= limit:
                break
            index = j % len(shown)  # every failure in turn, and the kinds in turn across them
            kind = kinds[(j + j // max(len(shown), len(kinds))) % len(kinds)]
            made = self._proposal(model, kind, index, shown[index], skills, strategy, rng)
            if made is None:
                continue
            p, scene, truth = made
            if p.get("question"):
                p["answer"], reasoned = self._answer(model, scene, p["question"], truth)
                if rationale:
                    p["rationale"] = f"{_reasoning(scene, p['question'])} Answer: {reasoned}"
            out.append({"item": index, "question": "", "answer": "", "skill": "", "params": [],
                        "image_prompt": "", **({"rationale": ""} if rationale else {}), **p})  # fmt: skip
        return out

    def _answer(self, model: str, scene: dict[str, Any], question: str, truth: str) -> tuple[str, str]:
        """(the answer a proposal states, the answer its rationale reaches). A wrong answer is a
        misreading (held: the rationale reaches it too, and the model believes it when it judges
        the item later) or, for ``slip_share`` of them, a slip (the rationale reaches the truth,
        and so does the model when it looks again)."""
        p, share = self.config.proposal_error, self.config.slip_share
        key = knowledge.item_key(scene, question)
        said = self.believed(model, scene, question, truth, p * (1 - share))
        if said != truth:
            self.count("proposals_misread")
            return said, said
        if self.u("slip", model, key) < p * share / (1 - p * (1 - share)):
            options = knowledge.wrong_answers(truth, scene)
            self.count("proposals_slipped")
            return options[int(self.u("slipped", model, key) * len(options))], truth
        self.count("proposals_right")
        return truth, truth

    def _skill(self, shown: Shown) -> str | None:
        got = knowledge.solve(shown.scene, str(shown.data.get("question", "")))
        return got[0] if got else None

    def _proposal(
        self,
        model: str,
        kind: str,
        index: int,
        shown: Shown,
        skills: dict[str, Any],
        strategy: str | None,
        rng: random.Random,
    ) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        """One proposal (without its answer yet), with the scene and right answer behind it."""
        skill = self._skill(shown) or rng.choice(sorted(skills) or sorted(SKILLS))
        if strategy == "auxiliary_extension" and knowledge.HARDER.get(skill) in skills:
            skill = knowledge.HARDER[skill]
        if kind == "same_image":
            if shown.scene is None:
                return None
            asked = " ".join(str(shown.data.get("question", "")).lower().split())
            found = [
                q for q in knowledge.questions(shown.scene, rng, sorted(skills)) if q[1].lower() != asked
            ]
            if not found:
                return None
            if strategy != "isomorphic_transfer":  # the same kind of question first
                found.sort(key=lambda q: q[0] != skill)
            _, question, truth = found[0]
            return {"kind": kind, "question": question}, shown.scene, truth
        if kind == "rendered":
            if skill not in skills:
                return None
            params = knowledge.harder_params(skill, skills[skill], rng)
            value = [{"name": k, "value": v} for k, v in params.items()]
            return {"kind": kind, "skill": skill, "params": value}, {}, ""
        if kind == "generated":
            if skill not in skills:
                return None
            params = knowledge.harder_params(skill, skills[skill], rng)
            made = knowledge.fresh_item(skill, params, rng.randrange(2**31))
            if made is None:
                return None
            scene, question, truth = made
            return {"kind": kind, "question": question, "image_prompt": describe(scene)}, scene, truth
        return None

    def judge(self, request: ChatRequest, key: str) -> dict[str, Any]:
        props = request.schema["properties"]
        shown = next((s for s in request.shown if s.data), Shown(None, None, {}))
        question = str(shown.data.get("question", ""))
        got = knowledge.solve(shown.scene, question)
        truth = got[1] if got else None
        model, item = request.model, knowledge.item_key(shown.scene, question)
        lazy = self.u("lazy", model, key) < self.config.judge_lazy
        if truth is None:
            belief = "cannot tell"
        else:
            belief = self.believed(model, shown.scene, question, truth, self.config.judge_error)
        if lazy:
            self.count("judge_lazy")
        elif truth is not None and belief != truth:
            self.count("judge_misread")
        reasoning = _reasoning(shown.scene, question)
        if "score" in props:
            proposed = str(shown.data.get("answer", ""))
            if lazy:
                score = 3
            elif truth is None:
                score = 2 if shown.scene is not None else 1
            else:
                score = 3 if is_correct(proposed, belief) else 1
            return {"reasoning": f"{reasoning} The proposed answer is {proposed!r}.", "score": score}
        if lazy:
            options = knowledge.wrong_answers(truth, shown.scene) + [truth] if truth else ["yes"]
            belief = options[int(self.u("guess", model, item) * len(options))]
        reply = {"reasoning": f"{reasoning} So the answer is {belief}.", "answer": belief}
        if "image_shows" in props:
            reply["image_shows"] = "yes" if lazy or truth is not None else "no"
        return reply

    # ------------------------------------------------------------------ pictures

    def draw(self, prompt: str, n: int, size: str, extra: dict[str, Any], key: str) -> list[Image.Image]:
        """``n`` pictures for ``prompt``, each a variant of the scene it describes."""
        side = _side(size)
        scene = parse(prompt)
        if scene is None:
            self.count("images_unparsed")
            scene = improvise(prompt, self.rng("improvise", prompt))
        out = []
        for i in range(max(0, min(int(n), 10))):
            rng = self.rng("variant", key, i)
            drawn = knowledge.variant(scene, rng)
            if rng.random() < self.config.image_error:
                drawn = knowledge.spoil(drawn, rng)
                self.count("images_spoiled")
            image = render(drawn, side)
            with self._lock:
                if len(self._drawn) >= DRAWN_KEPT:
                    self._drawn.pop(next(iter(self._drawn)))
                self._drawn[image_hash(image)] = drawn
            out.append(image)
        self.count("images", len(out))
        return out

    def drawn_scene(self, image: Image.Image) -> dict[str, Any] | None:
        """The scene a picture this model drew really shows (None for one it did not draw)."""
        with self._lock:
            return self._drawn.get(image_hash(image))


def _side(size: str) -> int:
    """The side of the square picture drawn for a requested size (``WxH`` or ``auto``)."""
    try:
        w, h = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        return 1024
    return max(64, min(w, h, 1024))


def _reasoning(scene: dict[str, Any] | None, question: str) -> str:
    """A short account of what the picture shows, as a model reasons before answering."""
    if scene is None:
        return "The picture is not one I can read with certainty."
    if scene.get("kind") == "bars":
        values = ", ".join(f"{b['label']} = {b['value']}" for b in scene["bars"])
        return f"The chart has {len(scene['bars'])} bars: {values}."
    things = Counter(f"{o['colour']} {o['shape']}" for o in scene["objects"])
    listed = ", ".join(f"{n} {name}" for name, n in sorted(things.items()))
    return f"The picture shows {len(scene['objects'])} objects: {listed}."


def _diagnosis(shown: list[Shown]) -> str:
    """What the shown failures have in common: the model's answers against the right ones."""
    pairs = [f"{s.data.get('model_answer')!r} for {s.data.get('answer')!r}" for s in shown]
    return f"The model answers {'; '.join(pairs)}: it misreads the part of the picture the question needs."


def _key_elements(shown: Shown) -> list[str]:
    words = str(shown.data.get("question", "")).rstrip("?").split()
    return [w for w in words if w.lower() not in {"what", "is", "the", "are", "there", "how", "many", "a"}][
        :6
    ]
