"""The frontier analyzer: a model behind the OpenAI API diagnoses each group of failures.

Failures are grouped first by the offline analyzer (skill and parameter slices where the data has
them, embedding clusters where it does not); each group's representatives (image as a data URL,
question, gold answer, the model's answer) then go to the frontier model with the versioned prompt
in ``prompts/``, and its schema-checked reply (error type, missing skill, diagnosis, proposals)
replaces the group's offline diagnosis. Dataset text enters the prompt only inside a ``<data>``
block, JSON-encoded, and the system prompt says it is data.

A group whose call fails keeps its offline diagnosis, with the reason in its notes (a partial
round); if every call fails, ``analyze`` raises and the round is recorded as failed while training
goes on. A spent budget stops further calls in the round.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from curriculum.analyze import OfflineAnalyzer
from curriculum.frontier.client import BudgetExceeded, FrontierClient, FrontierError
from curriculum.types import Example, Failure, Weakness, image_to_png_bytes
from curriculum.world import describe_skills

PROMPTS = Path(__file__).parent / "prompts"
ERROR_TYPES = ["perception", "counting", "spatial", "reading", "reasoning", "format", "other"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error_type", "missing_skill", "diagnosis", "proposals"],
    "properties": {
        "error_type": {"type": "string", "enum": ERROR_TYPES},
        "missing_skill": {"type": "string", "maxLength": 200},
        "diagnosis": {"type": "string", "maxLength": 1000},
        "proposals": {
            "type": "array",
            "maxItems": 12,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "item", "question", "answer", "skill", "params"],
                "properties": {
                    "kind": {"type": "string", "enum": ["same_image", "rendered"]},
                    "item": {"type": "integer", "minimum": 0, "maximum": 16},
                    "question": {"type": "string", "maxLength": 300},
                    "answer": {"type": "string", "maxLength": 100},
                    "skill": {"type": "string", "maxLength": 40},
                    "params": {
                        "type": "array",
                        "maxItems": 12,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "value"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 40},
                                "value": {"type": "string", "maxLength": 40},
                            },
                        },
                    },
                },
            },
        },
    },
}


def load_prompt(name: str) -> str:
    """A prompt template by versioned name, e.g. ``analyze_v1``."""
    path = PROMPTS / f"{name}.md"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.md")))
        raise ValueError(f"unknown prompt {name!r} (known: {known})")
    return path.read_text()


def data_url(example: Example) -> str:
    return "data:image/png;base64," + base64.b64encode(image_to_png_bytes(example.image)).decode()


class FrontierAnalyzer:
    name = "openai"

    def __init__(
        self,
        client: FrontierClient,
        grouper: OfflineAnalyzer | None = None,
        representatives: int = 3,
        prompt: str = "analyze_v1",
    ) -> None:
        self.client, self.grouper = client, grouper or OfflineAnalyzer()
        self.representatives, self.prompt = representatives, prompt
        skills = json.dumps(describe_skills(), indent=None)
        self.system = load_prompt(prompt).replace("{skills}", skills)

    def messages(self, weakness: Weakness, failures: list[Failure]) -> list[dict[str, Any]]:
        """The request for one group: the system prompt, then each representative as data."""
        content: list[dict[str, Any]] = [
            {
                "type": "text",
                "text": f"Group: {weakness.id}; the model fails {weakness.failures} of {weakness.n} "
                f"probe items like these.",
            }
        ]
        for i, f in enumerate(failures):
            item = {
                "item": i,
                "question": f.example.question,
                "answer": f.example.answer,
                "model_answer": f.prediction,
            }
            content.append({"type": "image_url", "image_url": {"url": data_url(f.example)}})
            content.append({"type": "text", "text": f"<data>{json.dumps(item)}</data>"})
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def analyze(self, failures: list[Failure], probe: list[tuple[Example, bool]]) -> list[Weakness]:
        weaknesses = self.grouper.analyze(failures, probe)
        by_id = {f.example.id: f for f in failures}
        reasons: list[str] = []
        stopped = None
        for w in weaknesses:
            if stopped is not None:
                w.notes = {"analyzer": self.name, "skipped": stopped}
                continue
            shown = [by_id[i] for i in w.failure_ids if i in by_id][: self.representatives]
            try:
                reply = self.client.chat_json(self.messages(w, shown), SCHEMA, "failure_analysis")
            except BudgetExceeded as err:
                stopped = str(err)
                reasons.append(stopped)
                w.notes = {"analyzer": self.name, "skipped": stopped}
                continue
            except FrontierError as err:
                reasons.append(str(err))
                w.notes = {"analyzer": self.name, "error": str(err)}
                continue
            offline = w.diagnosis
            w.diagnosis = f"[{reply['error_type']}; missing: {reply['missing_skill']}] {reply['diagnosis']}"
            w.notes = {
                "analyzer": self.name,
                "model": self.client.endpoint.model,
                "prompt": self.prompt,
                "error_type": reply["error_type"],
                "missing_skill": reply["missing_skill"],
                "offline_diagnosis": offline,
                "proposals": [
                    {**p, "item_id": shown[p["item"]].example.id if p["item"] < len(shown) else None}
                    for p in reply["proposals"]
                ],
            }
        if weaknesses and len(reasons) == len(weaknesses):
            raise FrontierError(f"no group could be analysed: {reasons[0]}")
        return weaknesses
