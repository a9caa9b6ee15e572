"""Whole curriculum rounds through a local OpenAI-compatible server: analysis, every kind of
generation, the judge panel, rationales, exemplars, the pool, the cache, the budget and the key."""

import json

import pytest

from curriculum.engine import Curriculum
from curriculum.frontier.schema import json_schema
from curriculum.types import image_hash
from tests.openai_server import FakeOpenAI, json_reply
from tests.test_curriculum import ScriptedPolicy
from train.config import CurriculumConfig, EndpointConfig, FrontierConfig

KEY = "sk-live-7f3e9b2a"
GENERATED_Q = "How many triangles are there?"
PROPOSALS = [
    {"kind": "same_image", "item": 0, "question": "How many red objects are there?", "answer": "2",
     "skill": "", "params": [], "image_prompt": "", "rationale": "I count the red ones: 2."},
    {"kind": "rendered", "item": 0, "question": "", "answer": "", "skill": "count",
     "params": [{"name": "num_objects", "value": "8"}], "image_prompt": "", "rationale": ""},
    {"kind": "generated", "item": 0, "question": GENERATED_Q, "answer": "3", "skill": "",
     "params": [], "image_prompt": "Three green triangles on a white ground.",
     "rationale": "There are three green triangles. Answer: 3"},
]  # fmt: skip


class Endpoints:
    """The analyst, judges and an image model behind one server, as a request router (by the
    reply's schema name, since one model may both analyse and judge)."""

    def __init__(self):
        self.by_model = {}

    def __call__(self, path, body):
        self.by_model[body["model"]] = self.by_model.get(body["model"], 0) + 1
        if path.endswith("/images/generations"):
            return {"images": body["n"]}
        name = body["response_format"]["json_schema"]["name"]
        schema = body["response_format"]["json_schema"]["schema"]
        if name.endswith("_reply"):  # the analyst, the lrf analyst or a cads committee member
            item = schema["properties"]["proposals"]["items"]["properties"]
            proposals = [
                {k: v for k, v in p.items() if k in item}
                for p in PROPOSALS
                if p["kind"] in item["kind"]["enum"]
            ]
            extra = {"error_type": "counting", "missing_skill": "counting", "diagnosis": "Undercounts.",
                     "image_description": "Shapes.", "key_elements": ["shapes"], "error_hypothesis": "Skips one."}  # fmt: skip
            return json_reply(
                {**{k: v for k, v in extra.items() if k in schema["properties"]}, "proposals": proposals}
            )
        question = json.loads(
            body["messages"][1]["content"][1]["text"].removeprefix("<data>").removesuffix("</data>")
        )
        right = question["question"] == GENERATED_Q
        if name == "judge_score":
            return json_reply({"reasoning": "Checked.", "score": 3 if right else 2})
        answer = "3" if right else "unsure"
        reply = {"reasoning": f"I count {answer} triangles.", "answer": answer}
        return json_reply({**reply, "image_shows": "yes"} if "image_shows" in schema["properties"] else reply)


def _config(url, cache, **kw):
    def endpoint(model):
        return EndpointConfig(model=model, base_url=url, api_key_env="LL_TEST_KEY", max_retries=0, timeout=5)

    options = dict(
        model="analyst", base_url=url, api_key_env="LL_TEST_KEY", max_retries=0, timeout=5, cache=str(cache) if cache else None,
        prices={"analyst": [2.5, 10.0], "judge-a": [1.0, 4.0], "judge-b": [1.0, 4.0]},
        judges=[endpoint("judge-a"), endpoint("judge-b")], judge_agree=2, judge_scope="unverified",
        image_model=endpoint("painter"), image_settings=[{"guidance_scale": 3.5}, {"guidance_scale": 7.0}],
        images_per_setting=1, image_price=0.04, rationales=True,
    )  # fmt: skip
    budget = kw.pop("budget", 96)
    options.update(kw)
    return CurriculumConfig(
        enabled=True, every=10, budget=budget, analyzer="openai", frontier=FrontierConfig(**options)
    )


def _curriculum(cfg, root, world):
    return Curriculum(cfg, root, world["train"], world["probe"], {"test": world["test"]}, 32, 0)


def _candidates(root, k):
    return [json.loads(x) for x in (root / f"round_{k:05d}" / "candidates.jsonl").read_text().splitlines()]


def test_a_round_analyses_generates_every_kind_judges_and_pools(tmp_path, world_small, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    root = tmp_path / "run" / "curriculum"
    endpoints = Endpoints()
    with FakeOpenAI(default=endpoints) as server:
        cur = _curriculum(_config(server.url, None), root, world_small)  # no cache: round 3 must call
        first = cur.update(10, ScriptedPolicy())
        exemplars = list(cur.exemplars)
        len_first = len(server.requests)
        second = cur.update(20, ScriptedPolicy())
        second_requests = [
            json.dumps(r["json"]) for r in server.requests[len_first:] if r["json"].get("model") == "analyst"
        ]
        server.default = lambda path, body: {"status": 503}
        down = cur.update(30, ScriptedPolicy())
        cur.close()
    assert first.status == second.status == "ok" and down.status == "failed" and "HTTP 503" in down.error
    assert (
        endpoints.by_model["judge-a"] == endpoints.by_model["judge-b"] > 0
        and endpoints.by_model["painter"] > 0
    )

    made = _candidates(root, 1)
    kinds = {c["meta"].get("proposal") for c in made if c["generator"] == "proposals" and c["kept"]}
    assert kinds == {"same_image", "rendered", "generated"}
    # The same description in another group is the same request: served from the cache, its
    # images are duplicates there. The first group's variants reach the judges.
    generated = [c for c in made if c["meta"].get("image_generated") and c["dropped_by"] != "dedup"]
    # Two settings, one image each; both judges agreed and said the image shows what is needed.
    assert {json.dumps(c["meta"]["image_setting"]) for c in generated} == {
        '{"guidance_scale": 3.5}',
        '{"guidance_scale": 7.0}',
    }
    assert all(c["verdicts"]["answer"] == "unverified" and c["verdicts"]["judge"] == "ok" for c in generated)
    assert all([v["agrees"] for v in c["meta"]["judges"]] == [True, True] for c in generated)
    # Rationales: kept where they reach the verified answer; program-verified items were not judged.
    assert all(c["meta"]["rationale"] == "There are three green triangles." for c in generated if c["kept"])
    same = [c for c in made if c["meta"].get("proposal") == "same_image"]
    assert all("judge" not in c["verdicts"] for c in same)

    pooled = {ex.id: ex for ex in cur.pool.examples}
    kept_generated = [pooled[c["id"]] for c in generated if c["kept"]]
    assert kept_generated and all(
        ex.target == "There are three green triangles.\nAnswer: 3" for ex in kept_generated
    )

    summary = json.loads((root / "round_00001" / "round.json").read_text())
    cost = summary["cost"]
    assert 0 < cost["frontier_images"] <= endpoints.by_model["painter"]
    assert cost["round_cost_usd"] > 0.04 * cost["frontier_images"] and cost["cost_usd"] == pytest.approx(
        cost["round_cost_usd"]
    )
    assert cost["cost_per_kept_usd"] == pytest.approx(
        cost["round_cost_usd"] / first.metrics["curriculum/kept"]
    )
    kept_proposals = sum(c["kept"] and c["generator"] == "proposals" for c in made)
    assert cost["cost_per_kept_proposal_usd"] == pytest.approx(cost["round_cost_usd"] / kept_proposals)
    assert first.metrics["curriculum/round_cost_usd"] == cost["round_cost_usd"]
    second_cost = json.loads((root / "round_00002" / "round.json").read_text())["cost"]
    assert second_cost["cost_usd"] == pytest.approx(cost["round_cost_usd"] + second_cost["round_cost_usd"])

    # Round 1's accepted examples that the student failed are the exemplars of round 2's requests.
    assert exemplars and all(e["student_answer"] == "0" for e in exemplars)
    # Those made for a weakness go to that weakness's request: the proposals' own questions included.
    made_here = {e["question"] for e in exemplars}
    assert {GENERATED_Q, "How many red objects are there?"} <= made_here
    for question in (GENERATED_Q, "How many red objects are there?"):
        assert any(json.dumps(question)[1:-1] in asked for asked in second_requests)

    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="ignore"), path


def test_a_repeated_run_is_served_from_the_cache(tmp_path, world_small, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    with FakeOpenAI(default=Endpoints()) as server:
        pools, results, calls = [], [], 0
        for run in ("a", "b"):
            cur = _curriculum(_config(server.url, tmp_path / "cache"), tmp_path / run, world_small)
            results.append(cur.update(10, ScriptedPolicy()).metrics)
            cur.close()
            pools.append(sorted((ex.id, image_hash(ex.image), ex.answer) for ex in cur.pool.examples))
            calls = calls or server.calls
        assert server.calls == calls > 0  # the second run made no request
    first, second = results
    assert pools[0] == pools[1] and second["curriculum/frontier_calls"] == 0
    assert second["curriculum/frontier_cached"] == calls + first["curriculum/frontier_cached"]


def test_a_spent_budget_stops_every_endpoint_and_training_goes_on(tmp_path, world_small, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    with FakeOpenAI(default=Endpoints()) as server:
        # Room for the analysis but not for one picture (0.04 USD): no image request is sent.
        cfg = _config(server.url, tmp_path / "cache", run_budget=0.03, concurrency=1)
        cur = _curriculum(cfg, tmp_path / "run", world_small)
        result = cur.update(10, ScriptedPolicy())
        cur.close()
        assert server.calls > 0 and not any("/images" in r["path"] for r in server.requests)
    assert result.status == "ok" and 0 < result.metrics["curriculum/frontier_calls"]
    assert result.metrics["curriculum/round_cost_usd"] <= 0.03
    summary = json.loads((tmp_path / "run" / "round_00001" / "round.json").read_text())
    assert summary["image_errors"] and all("run budget" in e for e in summary["image_errors"])
    assert result.metrics["curriculum/kept"] > 0  # the offline generators still served the round


def test_the_training_loop_logs_cost_and_the_key_reaches_no_file(tmp_path, tiny_qwen, monkeypatch):
    from tests.test_curriculum import _cfg
    from train.loop import run

    monkeypatch.setenv("LL_TEST_KEY", KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with FakeOpenAI(default=Endpoints()) as server:
        judge = f"{{model: judge-a, base_url: '{server.url}', api_key_env: LL_TEST_KEY, max_retries: 0}}"
        cfg = _cfg(
            tmp_path, tiny_qwen, "frontier", "train.steps=4", "train.save_every=2",
            "curriculum.analyzer=openai", "curriculum.frontier.model=analyst",
            f"curriculum.frontier.base_url={server.url}", "curriculum.frontier.api_key_env=LL_TEST_KEY",
            "curriculum.frontier.max_retries=0", "curriculum.frontier.cache=null",
            f"curriculum.frontier.judges=[{judge}]", "curriculum.frontier.prices={analyst: [2.5, 10.0]}",
            "wandb.enabled=true", "wandb.mode=offline",
        )  # fmt: skip
        summary = run(cfg)
        assert server.calls > 0
    assert summary["curriculum"]["rounds"][0]["status"] == "ok"
    metrics = [json.loads(x) for x in (tmp_path / "frontier" / "metrics.jsonl").read_text().splitlines()]
    logged = next(m for m in metrics if "curriculum/round_cost_usd" in m)
    assert logged["curriculum/round_cost_usd"] > 0 and "curriculum/cost_per_kept_usd" in logged
    files = [p for p in (tmp_path / "frontier").rglob("*") if p.is_file()]
    assert any("checkpoint" in str(p) for p in files) and any("wandb" in str(p) for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path


def test_the_deployment_config_builds_its_panel_and_image_model(monkeypatch):
    from curriculum.analyze import OfflineAnalyzer
    from curriculum.frontier.build import build_frontier
    from train.config import load_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("VLLM_API_KEY", "none")
    fc = load_config("configs/frontier_qwen2_5_vl_3b.yaml").curriculum.frontier
    frontier = build_frontier(fc, OfflineAnalyzer(), rendered=False)
    assert [j.endpoint.model for j in frontier.judges.judges] == [
        "gpt-4o-mini",
        "Qwen/Qwen2.5-VL-72B-Instruct",
    ]
    assert frontier.judges.need == 2 and frontier.judges.judges[1].endpoint.api_key_env == "VLLM_API_KEY"
    assert frontier.images is not None and frontier.images.settings == [{"quality": "medium"}]
    schema = json_schema(frontier.analyzer.schema)
    kinds = schema["properties"]["proposals"]["items"]["properties"]["kind"]["enum"]
    assert kinds == ["same_image", "generated"]  # VQA-RAD has no world renderer


@pytest.mark.parametrize("preset", ["lrf", "cads"])
def test_the_presets_run_whole_rounds(tmp_path, world_small, monkeypatch, preset):
    from curriculum.frontier.analyzer import STRATEGIES

    monkeypatch.setenv("LL_TEST_KEY", KEY)
    with FakeOpenAI(default=Endpoints()) as server:
        committee = [
            EndpointConfig(model=m, base_url=server.url, api_key_env="LL_TEST_KEY")
            for m in ("gen-a", "gen-b")
        ]
        cfg = _config(server.url, None, preset=preset, judges=[], judge_agree=0, judge_scope="all", rationales=False, budget=400,
                      committee=committee if preset == "cads" else [])  # fmt: skip
        cur = _curriculum(cfg, tmp_path / "run", world_small)
        result = cur.update(10, ScriptedPolicy())
        cur.close()
    assert result.status == "ok"
    made = _candidates(tmp_path / "run", 1)
    judged = [c for c in made if "judge" in c["verdicts"]]
    assert judged and all(
        v["model"] == "analyst" for c in judged for v in c["meta"]["judges"]
    )  # the default judge
    if preset == "lrf":  # scores: only 3s stay
        assert all(c["verdicts"]["judge"] == "ok" for c in judged if c["meta"]["judges"][0]["score"] == 3)
        assert all(c["dropped_by"] == "judge" for c in judged if c["meta"]["judges"][0]["score"] != 3)
        analysis = json.loads((tmp_path / "run" / "round_00001" / "analysis.json").read_text())
        assert analysis[0]["notes"]["failures"][0]["error_hypothesis"] == "Skips one."
    else:  # every committee member applied every strategy
        analysis = json.loads((tmp_path / "run" / "round_00001" / "analysis.json").read_text())
        tags = {(p["model"], p["strategy"]) for p in analysis[0]["notes"]["proposals"]}
        assert tags == {(m, s) for m in ("gen-a", "gen-b") for s in STRATEGIES}
        assert all(c["meta"]["strategy"] in STRATEGIES for c in made if c["generator"] == "proposals")
        # The one judge (the analyst) keeps exactly the candidates whose answer it reached.
        outcomes = {
            (c["meta"]["judges"][0]["answer"] == c["answer"], c["kept"] or c["dropped_by"] != "judge")
            for c in judged
        }
        assert outcomes == {(True, True), (False, False)}


def test_resume_restores_spending_and_exemplars(tmp_path, world_small, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    with FakeOpenAI(default=Endpoints()) as server:
        cfg = _config(server.url, tmp_path / "cache")
        cur = _curriculum(cfg, tmp_path / "run", world_small)
        before = cur.state_dict()
        cur.update(10, ScriptedPolicy())
        after = cur.state_dict()
        cur.close()
        # Resumed from a checkpoint taken after round 1: the run's spending carries on.
        resumed = Curriculum(cfg, tmp_path / "run", world_small["train"], world_small["probe"],
                             {"test": world_small["test"]}, 32, 0, fresh=False)  # fmt: skip
        resumed.load_state_dict(after)
        assert resumed.frontier.ledger.cost == cur.frontier.ledger.cost > 0
        # Resumed from before round 1: the round is restored from disk, with the same exemplars.
        again = Curriculum(cfg, tmp_path / "run", world_small["train"], world_small["probe"],
                           {"test": world_small["test"]}, 32, 0, fresh=False)  # fmt: skip
        again.load_state_dict(before)
        assert again.update(10, ScriptedPolicy()).status == "restored"
        assert again.exemplars == cur.exemplars and cur.exemplars


def test_a_failing_image_setting_keeps_the_variants_already_made(tmp_path, world_small, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    endpoints = Endpoints()

    def route(path, body):
        if path.endswith("/images/generations") and body.get("guidance_scale") == 7.0:
            return {"status": 500}
        return endpoints(path, body)

    with FakeOpenAI(default=route) as server:
        cur = _curriculum(_config(server.url, None), tmp_path / "run", world_small)
        cur.update(10, ScriptedPolicy())
        cur.close()
    summary = json.loads((tmp_path / "run" / "round_00001" / "round.json").read_text())
    assert summary["image_errors"] and all("HTTP 500" in e for e in summary["image_errors"])
    made = [c for c in _candidates(tmp_path / "run", 1) if c["meta"].get("image_generated")]
    assert made and all(c["meta"]["image_setting"] == {"guidance_scale": 3.5} for c in made)


def test_a_slow_endpoint_is_cut_off_at_the_round_time_limit(tmp_path, world_small, monkeypatch):
    import time

    monkeypatch.setenv("LL_TEST_KEY", KEY)
    endpoints = Endpoints()
    with FakeOpenAI(default=lambda path, body: {**endpoints(path, body), "delay": 0.6}) as server:
        cfg = _config(server.url, None, round_seconds=0.3, concurrency=1)
        cur = _curriculum(cfg, tmp_path / "run", world_small)
        t0 = time.perf_counter()
        result = cur.update(10, ScriptedPolicy())
        seconds = time.perf_counter() - t0
        cur.close()
    # The first request was in flight at the limit and finished; nothing else was sent.
    assert result.status == "ok" and server.calls == 1 and seconds < 5
    analysis = json.loads((tmp_path / "run" / "round_00001" / "analysis.json").read_text())
    assert all("round time limit of 0s passed" in w["notes"]["error"] for w in analysis[1:])


def test_a_long_retry_after_cannot_hold_a_round_past_its_bound(tmp_path, world_small, monkeypatch):
    import time

    monkeypatch.setenv("LL_TEST_KEY", KEY)
    # Every request is told to come back in 30 s. The round's bound is round_seconds + timeout x
    # (max_retries + 1) = 5 + 3 x 2 = 11 s of API work: no call waits for the server, so the round
    # ends in far less. (With 0.3 s and 0.5 s a loaded machine passed the round's time before the
    # first call, or timed the local request out before its 429 came back.)
    with FakeOpenAI(default=lambda path, body: {"status": 429, "retry_after": 30}) as server:
        cfg = _config(server.url, None, round_seconds=5.0, timeout=3.0, max_retries=1, concurrency=1)
        cur = _curriculum(cfg, tmp_path / "run", world_small)
        t0 = time.perf_counter()
        result = cur.update(10, ScriptedPolicy())
        seconds = time.perf_counter() - t0
        cur.close()
        asked = server.calls
    assert result.status == "failed" and "HTTP 429" in result.error and seconds < 10 and asked >= 1
    record = json.loads((tmp_path / "run" / "round_00001" / "round.json").read_text())
    assert "asks to wait 30.0s, past the call's time limit of 6.0s" in record["error"]
