"""The judge panel: frontier models check each candidate before it may train.

Two ways to judge, one per preset family:

- ``answer`` (blind): each judge sees only the image and the question and answers it; the
  candidate is kept when at least ``agree`` judges reach its answer. For a generated image each
  judge also says whether the image shows what the question needs, and the same number must say
  yes. Consensus of independent solvers is how a committee separates solvable-and-correct items
  from the rest.
- ``score``: each judge sees image, question and answer and scores the triple 1 to 3 (3: the image
  shows what the question needs and the answer is right); kept when ``agree`` judges give 3.

What the panel judges (``scope``): the question/answer pairs a frontier model wrote, all of them
(``all``) or those whose answer no program verified (``unverified``). Not the candidates of the
offline generators, nor ``rendered`` proposals (the model named a skill and parameters; the
world's program wrote question and answer): their answers are the world's program's or real
items (the user's labelled data, verified by definition). A judge can only lose those, at its
own error rate, and they took half of a round's judge calls (``benchmarks/frontier_sim.py``,
part ``scope``).

Every vote (model, answer or score, reasoning) is stored in the example's ``meta["judges"]``.
A judge whose call fails casts no vote; a candidate that can no longer reach ``agree`` votes is
dropped with the reason. With rationales on, the reasoning of each judge that reached the
candidate's answer is offered to the rationale filter.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from curriculum.frontier.client import FrontierClient, FrontierError
from curriculum.frontier.prompting import data_block, data_url, load_prompt
from curriculum.frontier.schema import Reply, text
from curriculum.generators import ProposalGenerator
from curriculum.scoring import is_correct, with_rationale
from curriculum.types import Candidate


class AnswerVerdict(Reply):
    """A judge's own answer to the question, after its reasoning."""

    reasoning: text(1500)
    answer: text(100)


class ImageVerdict(AnswerVerdict):
    """For a generated image: also whether it shows what the question needs."""

    image_shows: Literal["yes", "no"]


class ScoreVerdict(Reply):
    """A judge's score of the question and its answer (1 bad, 3 good)."""

    reasoning: text(1500)
    score: Annotated[int, Field(ge=1, le=3)]


ANSWER_SCHEMA, IMAGE_SCHEMA, SCORE_SCHEMA = AnswerVerdict, ImageVerdict, ScoreVerdict
PROMPTS = {"answer": "judge_answer_v1", "score": "judge_score_v1"}


class JudgePanel:
    name = "judge"

    def __init__(
        self,
        judges: list[FrontierClient],
        agree: int = 0,
        mode: str = "answer",
        scope: str = "all",
        workers: int = 4,
    ) -> None:
        if not judges:
            raise ValueError("a judge panel needs at least one judge")
        self.judges, self.mode, self.scope, self.workers = judges, mode, scope, max(1, workers)
        self.need = agree or len(judges) // 2 + 1  # 0: a majority
        if self.need > len(judges):
            raise ValueError(f"judge_agree={agree} but the panel has {len(judges)} judges")
        self.prompt = PROMPTS[mode]
        self.system = load_prompt(self.prompt)

    def messages(self, candidate: Candidate) -> list[dict[str, Any]]:
        ex = candidate.example
        item: dict[str, Any] = {"question": ex.question}
        if self.mode == "score":
            item["answer"] = ex.answer
        content = [
            {"type": "image_url", "image_url": {"url": data_url(ex.image)}},
            {"type": "text", "text": data_block(item)},
        ]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def _schema(self, candidate: Candidate) -> type[BaseModel]:
        if self.mode == "score":
            return SCORE_SCHEMA
        return IMAGE_SCHEMA if candidate.example.meta.get("image_generated") else ANSWER_SCHEMA

    def _ask(self, judge: FrontierClient, candidate: Candidate) -> dict[str, Any]:
        try:
            reply = judge.chat_json(self.messages(candidate), self._schema(candidate), f"judge_{self.mode}")
        except FrontierError as err:
            return {"model": judge.endpoint.model, "error": str(err)}
        return {"model": judge.endpoint.model, **reply}

    def judged(self, c: Candidate) -> bool:
        """Whether the panel judges ``c`` (see the module's docstring)."""
        if c.dropped:
            return False
        unverified = c.verdicts.get("answer") == "unverified"
        if c.generator == ProposalGenerator.name and c.example.meta.get("proposal") != "rendered":
            return self.scope == "all" or unverified
        # The world's program made it (an offline generator, a rendered spec), or it is a real
        # item: only an answer nothing verified, on data not the user's own, is judged.
        return unverified and c.example.source != "real"

    def __call__(self, candidates: list[Candidate]) -> None:
        live = [c for c in candidates if self.judged(c)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="judge") as pool:
            futures = [[pool.submit(self._ask, j, c) for j in self.judges] for c in live]
            votes = [[f.result() for f in row] for row in futures]
        for c, row in zip(live, votes, strict=True):
            self._verdict(c, row)

    def _verdict(self, c: Candidate, votes: list[dict[str, Any]]) -> None:
        ex = c.example
        cast = [v for v in votes if "error" not in v]
        if self.mode == "score":
            passed = [v for v in cast if v["score"] == 3]
        else:
            for v in cast:
                v["agrees"] = is_correct(v["answer"], ex.answer)
            passed = [v for v in cast if v["agrees"] and v.get("image_shows", "yes") == "yes"]
            if ex.meta.get("rationale_options") is not None:
                ex.meta["rationale_options"] += [
                    with_rationale(v["reasoning"], v["answer"]) for v in cast if v["agrees"]
                ]
        ex.meta["judges"] = votes
        ex.meta["judge_prompt"] = self.prompt
        if len(passed) >= self.need:
            c.keep(self.name)
        elif len(cast) < self.need:
            errors = [v["error"] for v in votes if "error" in v]
            c.drop(self.name, f"{len(cast)} of {len(votes)} judges answered ({errors[0]})")
        elif self.mode == "score":
            c.drop(self.name, f"scored {[v['score'] for v in cast]}; {self.need} threes needed")
        else:
            said = [
                f"{v['answer']!r}" + ("" if v.get("image_shows", "yes") == "yes" else " (image no)")
                for v in cast
            ]
            c.drop(
                self.name,
                f"{len(passed)} of {len(cast)} judges agree ({', '.join(said)}); {self.need} needed",
            )
