"""The frontier analyzer: models behind the OpenAI API diagnose failures and propose examples.

Failures are grouped first by the offline analyzer (skill and parameter slices where the data has
them, embedding clusters where it does not). What is asked of the frontier then depends on the
preset:

- ``analyze``: each group's representatives go to the analyst in one request, which returns the
  error type, the missing skill, a diagnosis and proposals for new examples.
- ``lrf``: each failure goes alone: the analyst describes the image, names its key visual
  elements, hypothesises the reasoning error and proposes question/answer pairs, on the failed
  image or on an image to generate from a description.
- ``cads``: a committee of generator models; each applies each of four strategies (parameter
  variation, logic reversal, auxiliary extension, isomorphic transfer) to the group's failures.

Every reply is schema-checked JSON; proposals share one form (kind ``same_image``, ``rendered`` or
``generated``) and become examples in ``generators.ProposalGenerator``. The accepted examples of
the last round that the student still failed (``exemplars``) go into every request, so each
round's proposals move toward what is hard for the model.

A group whose requests all fail keeps its offline diagnosis, with the reason in its notes (a
partial round); if every group fails, ``analyze`` raises and the round is recorded as failed while
training goes on. A spent budget refuses the calls not yet started.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from curriculum.analyze import OfflineAnalyzer
from curriculum.budget import split_budget
from curriculum.frontier.client import FrontierClient, FrontierError
from curriculum.frontier.prompting import data_block, data_url, fill, load_prompt
from curriculum.frontier.schema import Reply, text
from curriculum.types import Example, Failure, Weakness
from curriculum.world import describe_skills

ERROR_TYPES = ["perception", "counting", "spatial", "reading", "reasoning", "format", "other"]
STRATEGIES = {
    "parameter_variation": "keep the question's structure and change its parameters (numbers, "
    "attributes, positions) so that the answer changes",
    "logic_reversal": "reverse the question's logic (ask for the complement, the opposite relation, "
    "or the premise given the conclusion)",
    "auxiliary_extension": "add one reasoning step or one auxiliary element the answer depends on",
    "isomorphic_transfer": "keep the reasoning and move it to another surface: other objects, "
    "another chart or scene type, other wording",
}
PRESET_PROMPTS = {"analyze": "analyze_v1", "lrf": "lrf_v1", "cads": "cads_v1"}
KIND_TEXT = {
    "same_image": 'Kind "same_image": a new question and its answer about one of the shown images '
    '(its number in "item").',
    "rendered": 'Kind "rendered": a question type the built-in world renders, as a skill name and '
    "parameter values from the skill list below; question and answer may be left empty, the world "
    "computes them.",
    "generated": 'Kind "generated": a new image to be generated from "image_prompt" (a precise '
    "description of everything the question needs to be visible), with its question and answer.",
}


class Param(Reply):
    name: text(40)
    value: text(40)


MAX_PROPOSALS = 12
"""The most proposals one reply may hold."""


def proposal_schema(kinds: Sequence[str], rationale: bool, max_items: int = MAX_PROPOSALS) -> Any:
    """The type of a list of proposals (fields that do not apply are left empty)."""
    fields: dict[str, Any] = {
        "kind": Literal[tuple(kinds)],
        "item": Annotated[int, Field(ge=0, le=16)],
        "question": text(300),
        "answer": text(100),
        "skill": text(40),
        "params": Annotated[list[Param], Field(max_length=12)],
        "image_prompt": text(1000),
    }
    if rationale:
        fields["rationale"] = text(1500)
    proposal = create_model("Proposal", __base__=Reply, **{k: (v, ...) for k, v in fields.items()})
    return Annotated[list[proposal], Field(max_length=max_items)]


def reply_schema(preset: str, kinds: Sequence[str], rationale: bool) -> type[BaseModel]:
    """The reply model of ``preset``'s analysis, with proposals of ``kinds``."""
    fields: dict[str, Any]
    if preset == "analyze":
        fields = {
            "error_type": Literal[tuple(ERROR_TYPES)],
            "missing_skill": text(200),
            "diagnosis": text(1000),
        }
    elif preset == "lrf":
        fields = {
            "image_description": text(1000),
            "key_elements": Annotated[list[text(100)], Field(max_length=12)],
            "error_hypothesis": text(600),
        }
    elif preset == "cads":
        fields = {}
    else:
        raise ValueError(f"unknown frontier preset {preset!r} (known: {', '.join(PRESET_PROMPTS)})")
    fields["proposals"] = proposal_schema(kinds, rationale)
    name = f"{preset.capitalize()}Reply"
    return create_model(name, __base__=Reply, **{k: (v, ...) for k, v in fields.items()})


class FrontierAnalyzer:
    name = "openai"

    def __init__(
        self,
        client: FrontierClient,
        grouper: OfflineAnalyzer | None = None,
        representatives: int = 3,
        preset: str = "analyze",
        prompt: str | None = None,
        committee: list[FrontierClient] | None = None,
        kinds: Sequence[str] = ("same_image", "rendered"),
        rationales: bool = False,
        exemplars: int = 4,
        workers: int = 4,
        skills: list[str] | None = None,
    ) -> None:
        self.client, self.grouper = client, grouper or OfflineAnalyzer()
        self.representatives, self.preset = representatives, preset
        self.prompt = prompt or PRESET_PROMPTS[preset]
        self.committee = committee or [client]
        self.schema = reply_schema(preset, kinds, rationales)
        self.max_exemplars, self.workers = exemplars, max(1, workers)
        rationale_text = (
            'Give each proposal a "rationale": the reasoning from what the image shows to the answer, '
            'in a few sentences a student could follow, ending with "Answer: <the answer>".'
            if rationales
            else ""
        )
        self.system = fill(
            load_prompt(self.prompt),
            skills=json.dumps(describe_skills(skills))
            if "rendered" in kinds
            else "none (this data is not rendered)",
            kinds="\n".join(f"- {KIND_TEXT[k]}" for k in kinds),
            rationale=rationale_text,
        )

    # ------------------------------------------------------------------ requests

    def messages(
        self,
        weakness: Weakness,
        failures: list[Failure],
        exemplars: Sequence[dict[str, Any]] = (),
        strategy: str | None = None,
        most: int | None = None,
    ) -> list[dict[str, Any]]:
        """One request: the system prompt, the group, each failure as data, then the exemplars;
        ``most``: the proposals the round can use from this request (None: as many as the schema allows)."""
        head = f"Group: {weakness.id}; the model fails {weakness.failures} of {weakness.n} probe items like these."
        if strategy is not None:
            head += f"\nStrategy: {strategy}: {STRATEGIES[strategy]}."
        if most is not None:
            head += f"\nPropose at most {most} examples."
        content: list[dict[str, Any]] = [{"type": "text", "text": head}]
        for i, f in enumerate(failures):
            item = {"item": i, "question": f.example.question, "answer": f.example.answer,
                    "model_answer": f.prediction}  # fmt: skip
            content.append({"type": "image_url", "image_url": {"url": data_url(f.example)}})
            content.append({"type": "text", "text": data_block(item)})
        if exemplars:
            content.append({"type": "text", "text": "Accepted examples of the last round that the model "
                            "still answered wrongly (make new ones at least this hard):"})  # fmt: skip
            content.append({"type": "text", "text": data_block(list(exemplars))})
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def _requests(
        self, weakness: Weakness, shown: list[Failure], exemplars: Sequence[dict[str, Any]], need: int | None
    ) -> list[tuple[FrontierClient, list[dict[str, Any]], dict[str, Any]]]:
        """(client, messages, tag) per request; the tag says how to read the reply back. With
        ``need`` (the proposals the round can use for this group) each request asks for its
        share of them, so the requests together ask for no more than the round takes."""
        n = (
            len(shown)
            if self.preset == "lrf"
            else len(self.committee) * len(STRATEGIES)
            if self.preset == "cads"
            else 1
        )
        most = None if need is None else min(MAX_PROPOSALS, max(1, -(-need // max(1, n))))
        if self.preset == "lrf":
            return [
                (self.client, self.messages(weakness, [f], exemplars, most=most), {"failure": f.example.id})
                for f in shown
            ]
        if self.preset == "cads":
            return [
                (
                    c,
                    self.messages(weakness, shown, exemplars, s, most),
                    {"model": c.endpoint.model, "strategy": s},
                )
                for c in self.committee
                for s in STRATEGIES
            ]
        return [(self.client, self.messages(weakness, shown, exemplars, most=most), {})]

    def _ask(self, client: FrontierClient, messages: list[dict[str, Any]]) -> dict[str, Any] | FrontierError:
        try:
            return client.chat_json(messages, self.schema, f"{self.preset}_reply")
        except FrontierError as err:
            return err

    # ------------------------------------------------------------------ a round

    def analyze(
        self,
        failures: list[Failure],
        probe: list[tuple[Example, bool]],
        exemplars: Sequence[dict[str, Any]] = (),
        proposals: int | None = None,
    ) -> list[Weakness]:
        """The groups of ``failures``, each with the frontier's diagnosis and proposals.
        ``proposals``: how many proposals the round can use in all (its budget's proposal share),
        shared over the groups as the budget is (by failure rate); each group's requests ask for
        no more than its share, so a preset with many requests per group (``lrf``: one per failure
        shown; ``cads``: committee x strategies) does not pay for proposals the round throws away.
        None: each request asks for as many as the schema allows."""
        weaknesses = self.grouper.analyze(failures, probe)
        needs = split_budget(weaknesses, proposals) if proposals is not None else [None] * len(weaknesses)
        by_id = {f.example.id: f for f in failures}
        jobs: list[tuple[int, list[Failure], dict[str, Any], Any]] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="analyst") as pool:
            for w_index, w in enumerate(weaknesses):
                shown = [by_id[i] for i in w.failure_ids if i in by_id][: self.representatives]
                asked = self._requests(w, shown, _for(w, exemplars, self.max_exemplars), needs[w_index])
                for client, messages, tag in asked:
                    jobs.append((w_index, shown, tag, pool.submit(self._ask, client, messages)))
            replies = [(w_index, shown, tag, future.result()) for w_index, shown, tag, future in jobs]
        failed = 0
        for w_index, w in enumerate(weaknesses):
            mine = [(shown, tag, r) for i, shown, tag, r in replies if i == w_index]
            errors = [str(r) for _, _, r in mine if isinstance(r, FrontierError)]
            good = [(shown, tag, r) for shown, tag, r in mine if not isinstance(r, FrontierError)]
            if not good:
                failed += 1
                w.notes = {
                    "analyzer": self.name,
                    "preset": self.preset,
                    "error": errors[0] if errors else "no request",
                }
                continue
            self._merge(w, good, errors)
        if weaknesses and failed == len(weaknesses):
            first = next(w.notes["error"] for w in weaknesses)
            raise FrontierError(f"no group could be analysed: {first}")
        return weaknesses

    def _merge(self, w: Weakness, good: list[tuple[list[Failure], dict[str, Any], dict[str, Any]]],
               errors: list[str]) -> None:  # fmt: skip
        """The replies of one group into its diagnosis and proposals (``weakness.notes``)."""
        proposals = []
        for shown, tag, reply in good:
            for p in reply["proposals"]:
                if "failure" in tag:  # lrf: one failure per request, whatever "item" says
                    item_id = tag["failure"]
                else:
                    item_id = shown[p["item"]].example.id if p["item"] < len(shown) else None
                proposals.append(
                    {**p, **{k: v for k, v in tag.items() if k != "failure"}, "item_id": item_id}
                )
        notes: dict[str, Any] = {
            "analyzer": self.name,
            "preset": self.preset,
            "model": self.client.endpoint.model,
            "prompt": self.prompt,
            "offline_diagnosis": w.diagnosis,
            "proposals": proposals,
        }
        if errors:
            notes["errors"] = errors  # a partial group: some requests failed
        if self.preset == "analyze":
            reply = good[0][2]
            w.diagnosis = f"[{reply['error_type']}; missing: {reply['missing_skill']}] {reply['diagnosis']}"
            notes.update(error_type=reply["error_type"], missing_skill=reply["missing_skill"])
        elif self.preset == "lrf":
            notes["failures"] = [
                {"item_id": tag["failure"], **{k: r[k] for k in ("image_description", "key_elements",
                                                               "error_hypothesis")}}
                for _, tag, r in good
            ]  # fmt: skip
            w.diagnosis = "[lrf] " + " | ".join(f["error_hypothesis"] for f in notes["failures"])[:1000]
        else:
            notes["committee"] = sorted({c.endpoint.model for c in self.committee})
        w.notes = notes


def _for(weakness: Weakness, exemplars: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The exemplars shown for one weakness, at most ``limit``: those made for the same weakness
    first, then those of its skill (all of them when it has none)."""
    same = [e for e in exemplars if e.get("weakness") == weakness.id]
    related = [
        e for e in exemplars if e not in same and (weakness.skill is None or e.get("skill") == weakness.skill)
    ]
    return (same + related)[:limit]
