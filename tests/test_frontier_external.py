"""A frontier on external data (no scenes, no world renderer): the analyst sees the offline
analyzer's skill and answer slices, proposes questions about the failed images and images to
generate; the judge panel checks every proposed answer (no program can), and only what it accepts
trains, recorded as checked by the judges. Through the real ``openai`` client and a local server."""

import dataclasses
import json

from curriculum.engine import Curriculum
from curriculum.types import as_pil, image_hash
from tests.openai_server import FakeOpenAI, json_reply
from train.config import CurriculumConfig, EndpointConfig, FrontierConfig

KEY = "sk-ext-5c1d"
SAME_Q = "Is the largest object in the upper half?"  # the judges reach the proposal's answer
WRONG_Q = "How many corners does it have?"  # the judges do not: dropped
GENERATED_Q = "How many stars are there?"


def external(world):
    """The world's pictures as a user's labelled data: skill column, no scene, no parameters."""
    strip = lambda ex: dataclasses.replace(ex, scene=None, params={}, meta={})  # noqa: E731
    return {split: [strip(ex) for ex in items] for split, items in world.items()}


class Policy:
    """Right on colour and shape; says "0" elsewhere."""

    def answer(self, examples):
        return [ex.answer if ex.skill in ("colour", "shape") else "0" for ex in examples]

    def sample(self, examples, n):
        return [[a] * n for a in self.answer(examples)]


class Endpoints:
    """Analyst, two judges and an image model; records what the analyst was shown."""

    def __init__(self):
        self.groups, self.kinds = [], set()

    def __call__(self, path, body):
        if path.endswith("/images/generations"):
            return {"images": body["n"]}
        schema = body["response_format"]["json_schema"]["schema"]
        if body["response_format"]["json_schema"]["name"].endswith("_reply"):
            self.groups.append(body["messages"][1]["content"][0]["text"])
            self.kinds |= set(schema["properties"]["proposals"]["items"]["properties"]["kind"]["enum"])
            blank = {"skill": "", "params": [], "image_prompt": ""}
            proposals = [
                {**blank, "kind": "same_image", "item": 0, "question": SAME_Q, "answer": "yes"},
                {**blank, "kind": "same_image", "item": 1, "question": WRONG_Q, "answer": "4"},
                {**blank, "kind": "generated", "item": 0, "question": GENERATED_Q, "answer": "5",
                 "image_prompt": "Five white stars on black."},
            ]  # fmt: skip
            return json_reply({"error_type": "counting", "missing_skill": "counting", "diagnosis": "Misses some.",
                               "proposals": proposals})  # fmt: skip
        asked = json.loads(
            body["messages"][1]["content"][1]["text"].removeprefix("<data>").removesuffix("</data>")
        )
        answer = {SAME_Q: "yes", GENERATED_Q: "5"}.get(asked["question"], "3")
        reply = {"reasoning": "Looked.", "answer": answer}
        return json_reply({**reply, "image_shows": "yes"} if "image_shows" in schema["properties"] else reply)


def _config(url):
    def endpoint(model):
        return EndpointConfig(model=model, base_url=url, api_key_env="LL_EXT_KEY", max_retries=0, timeout=5)

    frontier = FrontierConfig(
        model="analyst", base_url=url, api_key_env="LL_EXT_KEY", max_retries=0, timeout=5, cache=None,
        judges=[endpoint("judge-a"), endpoint("judge-b")], judge_agree=2, judge_scope="unverified",
        image_model=endpoint("painter"), image_settings=[{}], images_per_setting=2, image_price=0.0,
    )  # fmt: skip
    return CurriculumConfig(enabled=True, every=10, budget=64, analyzer="openai", frontier=frontier,
                            generators={"proposals": 0.75, "replay": 0.25})  # fmt: skip


def test_a_frontier_round_on_external_data_proposes_on_failed_images_and_judges_every_answer(
    tmp_path, world_small, monkeypatch
):
    monkeypatch.setenv("LL_EXT_KEY", KEY)
    data = external(world_small)
    endpoints = Endpoints()
    with FakeOpenAI(default=endpoints) as server:
        cur = Curriculum(
            _config(server.url), tmp_path / "cur", data["train"], data["probe"], {"test": data["test"]}, 32, 0
        )
        result = cur.update(10, Policy())
        cur.close()
    assert result.status == "ok", result.error
    assert endpoints.kinds == {"same_image", "generated"}  # nothing to render on external data
    # The analyst is shown the offline analyzer's slices of the skill column, by their stable ids.
    assert endpoints.groups and all(g.startswith("Group: ") for g in endpoints.groups)
    ids = {w.id for w in result.weaknesses}
    assert ids and all(w.skill not in ("colour", "shape") for w in result.weaknesses)
    assert any(f"Group: {i};" in g for i in ids for g in endpoints.groups)

    made = [
        json.loads(x)
        for x in (tmp_path / "cur" / "round_00001" / "candidates.jsonl").read_text().splitlines()
    ]
    proposed = [c for c in made if c["generator"] == "proposals"]
    by_question = {q: [c for c in proposed if c["question"] == q] for q in (SAME_Q, WRONG_Q, GENERATED_Q)}
    assert all(by_question.values()), {q: len(v) for q, v in by_question.items()}
    failed = {f.example.id: f.example for f in result.failures}
    for c in by_question[SAME_Q] + by_question[WRONG_Q]:  # on the very picture the model misread
        assert c["meta"]["image_from"] in failed and c["verdicts"]["answer"] == "unverified"
    assert all(c["kept"] and c["meta"]["answer_checked_by"] == "judges" for c in by_question[SAME_Q])
    assert all(c["dropped_by"] == "judge" for c in by_question[WRONG_Q])
    assert all(c["meta"]["image_generated"] for c in by_question[GENERATED_Q])
    assert any(c["kept"] and c["meta"]["answer_checked_by"] == "judges" for c in by_question[GENERATED_Q])

    pooled = {ex.id: ex for ex in cur.pool.examples}
    for c in by_question[SAME_Q]:
        ex = pooled[c["id"]]
        assert image_hash(ex.image) == image_hash(as_pil(failed[c["meta"]["image_from"]].image))
    # Replays of the user's own items train too, verified by the data itself.
    replays = [ex for ex in pooled.values() if ex.meta["generator"] == "replay"]
    assert replays and all(ex.meta["answer_checked_by"] == "data" and ex.source == "real" for ex in replays)
