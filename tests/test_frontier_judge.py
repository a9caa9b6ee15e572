"""The judge panel and the rationale filter, with judges served by a local OpenAI-compatible server."""

import dataclasses
import json

import pytest

from curriculum.filters import RationaleCheck
from curriculum.frontier.client import Endpoint, FrontierClient
from curriculum.frontier.judge import JudgePanel
from curriculum.scoring import with_rationale
from curriculum.types import Candidate
from tests.openai_server import FakeOpenAI, json_reply


def _question(body):
    """The question a judge request carries (inside its <data> block)."""
    text = next(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")
    return json.loads(text.removeprefix("<data>").removesuffix("</data>"))


def _server(answers):
    """Each judge (by model name) answers by ``answers[model](item) -> reply dict``."""

    def reply(path, body):
        answer = answers[body["model"]]
        return answer if isinstance(answer, dict) else json_reply(answer(_question(body)))

    return FakeOpenAI(default=reply)


def _panel(server, models, monkeypatch, **kw):
    monkeypatch.setenv("LL_TEST_KEY", "sk-judge")
    clients = [
        FrontierClient(Endpoint(m, base_url=server.url, api_key_env="LL_TEST_KEY", max_retries=0, timeout=5))
        for m in models
    ]
    return JudgePanel(clients, **kw)


def _candidates(world, n=3, **meta):
    items = world["probe"][:n]
    return [Candidate(dataclasses.replace(ex, meta=dict(meta)), "w0", "proposals") for ex in items]


def says(answer, image=None):
    reply = {"reasoning": f"I see it. The answer is {answer}.", "answer": answer}
    return lambda item: reply if image is None else {**reply, "image_shows": image}


def test_blind_answers_are_kept_when_enough_judges_agree(world_small, monkeypatch):
    cands = _candidates(world_small)
    gold = {c.example.question: c.example.answer for c in cands}

    def right(item):
        return {"reasoning": "looked", "answer": gold[item["question"]]}

    with _server({"a": right, "b": right, "c": says("nonsense")}) as server:
        _panel(server, ["a", "b", "c"], monkeypatch, agree=2)(cands)
        bodies = [r["json"] for r in server.requests]
    assert all(c.dropped is None and c.verdicts["judge"] == "ok" for c in cands)
    votes = cands[0].example.meta["judges"]
    assert [v["model"] for v in votes] == ["a", "b", "c"] and [v["agrees"] for v in votes] == [
        True,
        True,
        False,
    ]
    # Blind: the judges see the image and the question, never the answer.
    for body in bodies:
        assert (
            set(_question(body)) == {"question"} and body["messages"][1]["content"][0]["type"] == "image_url"
        )
    with _server({"a": right, "b": says("nonsense"), "c": says("nonsense")}) as server:
        cands = _candidates(world_small)
        _panel(server, ["a", "b", "c"], monkeypatch, agree=2)(cands)
    assert all(c.dropped == "judge" and "1 of 3 judges agree" in c.verdicts["judge"] for c in cands)


def test_a_majority_by_default_and_failing_judges_cast_no_vote(world_small, monkeypatch):
    cands = _candidates(world_small, n=1)
    gold = cands[0].example.answer
    with _server({"a": says(gold), "b": {"status": 500}, "c": says(gold)}) as server:
        panel = _panel(server, ["a", "b", "c"], monkeypatch)
        assert panel.need == 2
        panel(cands)
    assert cands[0].dropped is None and "HTTP 500" in cands[0].example.meta["judges"][1]["error"]
    cands = _candidates(world_small, n=1)
    with _server({"a": says(gold), "b": {"status": 500}, "c": {"status": 500}}) as server:
        _panel(server, ["a", "b", "c"], monkeypatch)(cands)
    assert cands[0].dropped == "judge" and "1 of 3 judges answered" in cands[0].verdicts["judge"]
    with pytest.raises(ValueError, match="judge_agree=3 but the panel has 2"):
        JudgePanel([object(), object()], agree=3)


def test_generated_images_must_show_what_the_question_needs(world_small, monkeypatch):
    cands = _candidates(world_small, n=1, image_generated=True)
    gold = cands[0].example.answer
    with _server({"a": says(gold, image="no"), "b": says(gold, image="yes")}) as server:
        _panel(server, ["a", "b"], monkeypatch, agree=2)(cands)
        schema = server.requests[0]["json"]["response_format"]["json_schema"]["schema"]
    assert "image_shows" in schema["required"]
    assert cands[0].dropped == "judge" and "(image no)" in cands[0].verdicts["judge"]


def test_score_mode_keeps_only_threes_and_shows_the_answer(world_small, monkeypatch):
    cands = _candidates(world_small, n=2)
    first = cands[0].example.question

    def score(item):
        return {"reasoning": "checked", "score": 3 if item["question"] == first else 2}

    with _server({"a": score}) as server:
        _panel(server, ["a"], monkeypatch, mode="score")(cands)
        items = [_question(r["json"]) for r in server.requests]
    assert all("answer" in item for item in items)
    assert (
        cands[0].dropped is None
        and cands[1].dropped == "judge"
        and "scored [2]" in cands[1].verdicts["judge"]
    )


def test_scope_unverified_leaves_program_checked_answers_alone(world_small, monkeypatch):
    cands = _candidates(world_small, n=2)
    cands[0].verdicts["answer"] = "ok"
    cands[1].verdicts["answer"] = "unverified"
    with _server({"a": says("nonsense")}) as server:
        _panel(server, ["a"], monkeypatch, scope="unverified")(cands)
        assert server.calls == 1
    assert "judge" not in cands[0].verdicts and cands[1].dropped == "judge"


def test_rationales_are_kept_only_when_they_reach_the_verified_answer(world_small, monkeypatch):
    cands = _candidates(world_small, n=3)
    for c in cands:
        c.example.meta["rationale_options"] = []
    gold = [c.example.answer for c in cands]
    # Candidate 0: the proposal reasoned to a wrong answer, a judge reached the right one.
    cands[0].example.meta["rationale_options"].append(with_rationale("Counted badly.", "nonsense"))
    by_question = {c.example.question: i for i, c in enumerate(cands)}

    def judge(item):
        i = by_question[item["question"]]
        return {"reasoning": f"Reasoning {i}.", "answer": gold[i] if i == 0 else "nonsense"}

    with _server({"a": judge}) as server:
        _panel(server, ["a"], monkeypatch, agree=1)(cands)
    # Candidate 1: its judge disagreed, so it is dropped there and never reaches the rationale filter.
    assert cands[0].dropped is None and cands[1].dropped == "judge"
    cands[2].dropped, cands[2].example.meta["rationale_options"] = None, [with_rationale("Off.", "nonsense")]
    RationaleCheck()(cands)
    assert (
        cands[0].example.meta["rationale"] == "Reasoning 0."
        and "rationale_options" not in cands[0].example.meta
    )
    assert cands[0].example.target == f"Reasoning 0.\nAnswer: {gold[0]}"
    assert cands[2].dropped == "rationale" and "nonsense" in cands[2].verdicts["rationale"]
