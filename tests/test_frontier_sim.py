"""The simulated frontier: it reads world pictures back exactly, answers as the world's program
does when it makes no deliberate error, errs at the rates it is given, fits every schema the
pipeline asks for, and gives the same replies to the same requests."""

import json
import math

import pytest

from curriculum.frontier.analyzer import FrontierAnalyzer
from curriculum.frontier.client import Endpoint, FrontierClient
from curriculum.frontier.judge import ANSWER_SCHEMA, SCORE_SCHEMA, JudgePanel
from curriculum.frontier.schema import errors as schema_errors
from curriculum.frontier.schema import json_schema
from curriculum.frontier.sim import SimConfig, SimServer, read_scene
from curriculum.frontier.sim.__main__ import KEY_ENV, dry_run_config
from curriculum.frontier.sim.describe import describe, parse
from curriculum.frontier.sim.knowledge import solve
from curriculum.types import Candidate, Example, Failure, Weakness
from curriculum.world import Spec, generate, skill_names
from curriculum.world.questions import answer_from_scene


@pytest.fixture(scope="module")
def items():
    """12 items of every skill at 64 pixels, skills in turn; the simulator reads each picture once
    (its cache), whichever test shows it first."""
    made = _examples(64, 12, seed=11)
    return [made[i * 12 + j] for j in range(12) for i in range(9)]


def _body(model, messages, schema, name):
    """A chat request as ``FrontierClient.chat_json`` sends it."""
    return {"model": model, "messages": messages, "temperature": 0.0,
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema(schema), "strict": True}}}  # fmt: skip


def _content(server, body):
    status, _, reply, _ = server.chat(body)
    assert status == 200, reply
    return reply["choices"][0]["message"]


def _judge_body(example, mode="answer", model="judge-a"):
    panel = JudgePanel([FrontierClient(Endpoint(model))], mode=mode)
    candidate = Candidate(example, "w", "proposals")
    return _body(model, panel.messages(candidate), panel._schema(candidate), f"judge_{mode}")


def _analysis_body(analyzer, failures, strategy=None, model="analyst"):
    weakness = Weakness("count/all", "count", {}, 0.5, 0.4, 8, 4, [f.example.id for f in failures], "d")
    return _body(model, analyzer.messages(weakness, failures, strategy=strategy), analyzer.schema,
                 f"{analyzer.preset}_reply")  # fmt: skip


def _examples(size, per_skill, seed=11):
    return [
        ex for skill in skill_names() for ex in generate(Spec(skill, {}, per_skill), seed, image_size=size)
    ]


def _read_back(examples):
    """How many examples' answers, computed on the scene read from the pixels, differ from the
    program's on the true scene."""
    wrong = [ex.id for ex in examples if answer_from_scene(read_scene(ex.image), ex.question)
             != answer_from_scene(ex.scene, ex.question)]  # fmt: skip
    return wrong


def test_pictures_are_read_back_exactly_on_every_skill(items):
    examples = items + _examples(128, 2, seed=5)
    assert _read_back(examples) == []
    # Overlapping objects of one colour merge into one region and are told apart.
    crowded = generate(Spec("count", {"overlap": True, "num_objects": 9}, 6), 4, image_size=64)
    assert [len(read_scene(ex.image)["objects"]) for ex in crowded] == [9] * 6
    # Generated pictures are large: read at 128 pixels, charts at their own size.
    big = generate(Spec("bar_value", {}, 2), 1, image_size=1024) + generate(
        Spec("spatial", {}, 2), 1, image_size=1024
    )
    assert _read_back(big) == []


@pytest.mark.slow
def test_thousands_of_pictures_are_read_back_exactly():
    examples = _examples(64, 250, seed=21) + _examples(128, 60, seed=22)
    assert len(examples) == 9 * 310 and _read_back(examples) == []


def test_pictures_the_world_did_not_draw_are_not_read():
    from PIL import Image

    noise = Image.effect_noise((64, 64), 80).convert("RGB")
    assert read_scene(noise) is None and read_scene(Image.new("RGB", (64, 32))) is None


def test_without_errors_the_judges_answer_as_the_program_on_every_skill(items):
    server = SimServer(SimConfig(seed=0))
    items = items
    assert {ex.skill for ex in items} == set(skill_names())
    for ex in items:
        reply = json.loads(_content(server, _judge_body(ex))["content"])
        assert reply["answer"] == ex.answer, (ex.question, reply)
        wrong = Example(ex.id, ex.image, ex.question, "7" if ex.answer != "7" else "8", scene=ex.scene)
        assert json.loads(_content(server, _judge_body(wrong, "score"))["content"])["score"] == 1
        assert json.loads(_content(server, _judge_body(ex, "score"))["content"])["score"] == 3


def test_without_errors_every_proposal_is_right_and_every_reply_fits_its_schema(items):
    server = SimServer(SimConfig(seed=0, proposals=12))
    failures = [Failure(ex, "0", 1) for ex in items[:24]]
    kinds = ("same_image", "rendered", "generated")
    checked = 0
    for preset in ("analyze", "lrf", "cads"):
        for rationales in (False, True):
            analyzer = FrontierAnalyzer(
                FrontierClient(Endpoint("a")), preset=preset, kinds=kinds, rationales=rationales
            )
            for i in range(0, len(failures), 3):
                shown = failures[i : i + (1 if preset == "lrf" else 3)]
                body = _analysis_body(analyzer, shown, "logic_reversal" if preset == "cads" else None)
                reply = json.loads(_content(server, body)["content"])
                assert schema_errors(reply, analyzer.schema) == []
                for p in reply["proposals"]:
                    if p["kind"] == "same_image":
                        scene = shown[p["item"]].example.scene
                    elif p["kind"] == "generated":
                        scene = parse(p["image_prompt"])
                    else:
                        continue
                    assert answer_from_scene(scene, p["question"])[1] == p["answer"]
                    if rationales:
                        assert p["rationale"].endswith(f"Answer: {p['answer']}")
                    checked += 1
    assert checked > 100
    for mode, example in (("answer", items[0]), ("score", items[1])):
        body = _judge_body(example, mode)
        assert (
            schema_errors(
                json.loads(_content(server, body)["content"]),
                ANSWER_SCHEMA if mode == "answer" else SCORE_SCHEMA,
            )
            == []
        )


def _within(k, n, p, sigmas=4.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_mistakes_happen_at_the_configured_rates(items):
    server = SimServer(SimConfig(seed=1, judge_error=0.3, judge_lazy=0.1))
    wrong = sum(
        json.loads(_content(server, _judge_body(ex))["content"])["answer"] != ex.answer for ex in items
    )
    counts = server.teacher.counts
    lazy, misread = counts["judge_lazy"], counts["judge_misread"]
    assert _within(lazy, len(items), 0.1) and _within(misread, len(items) - lazy, 0.3)
    # A vote is wrong when it misreads the item, or guesses without looking and misses.
    assert misread <= wrong <= misread + lazy
    server = SimServer(SimConfig(seed=2, proposal_error=0.25, proposals=12))
    analyzer = FrontierAnalyzer(FrontierClient(Endpoint("a")), kinds=("same_image",))
    failures = [Failure(ex, "0", 1) for ex in items]
    wrong = total = 0
    for i in range(0, len(failures), 3):
        for p in json.loads(_content(server, _analysis_body(analyzer, failures[i : i + 3]))["content"])[
            "proposals"
        ]:
            truth = answer_from_scene(failures[i + p["item"]].example.scene, p["question"])[1]
            wrong, total = wrong + (p["answer"] != truth), total + 1
    assert total > 150 and _within(wrong, total, 0.25)


@pytest.mark.parametrize("correlation", [0.0, 1.0])
def test_judges_err_together_only_when_correlated(correlation, items):
    server = SimServer(SimConfig(seed=3, judge_error=0.3, correlation=correlation))
    both = either = 0
    for ex in items:
        a, b = (json.loads(_content(server, _judge_body(ex, model=m))["content"])["answer"] != ex.answer
                for m in ("judge-a", "judge-b"))  # fmt: skip
        both, either = both + (a and b), either + (a or b)
    n = len(items)
    if correlation:
        assert both == either and _within(both, n, 0.3)
    else:
        assert _within(both, n, 0.09) and _within(either, n, 1 - 0.7**2)


def test_endpoint_faults_happen_at_their_rates_and_a_retry_is_a_new_draw(items):
    config = SimConfig(seed=4, rate_limit=0.1, server_error=0.1, refusal=0.1, off_schema=0.2, retry_after=2.5)
    server = SimServer(config)
    body = _judge_body(items[0])
    schema = ANSWER_SCHEMA
    seen = {"429": 0, "500": 0, "refused": 0, "broken": 0, "ok": 0}
    n = 500
    for _ in range(n):  # the same request again and again: each attempt draws anew
        status, headers, reply, _ = server.chat(body)
        if status == 429:
            seen["429"] += 1
            assert headers["Retry-After"] == "2.5"
        elif status == 500:
            seen["500"] += 1
        elif reply["choices"][0]["message"]["refusal"]:
            seen["refused"] += 1
        else:
            content = reply["choices"][0]["message"]["content"]
            try:
                broken = bool(schema_errors(json.loads(content), schema))
            except json.JSONDecodeError:
                broken = True
            seen["broken" if broken else "ok"] += 1
    assert _within(seen["429"], n, 0.1) and _within(seen["500"], n, 0.9 * 0.1)
    served = n - seen["429"] - seen["500"]
    assert _within(seen["refused"], served, 0.1) and _within(seen["broken"], served - seen["refused"], 0.2)


def test_latency_is_a_seeded_log_normal_and_tokens_are_counted_like_a_real_model(items):
    server = SimServer(SimConfig(seed=5, latency=2.0, latency_sigma=0.5))
    waits = sorted(server.latency(f"k{i}", 0, 0) for i in range(2000))
    assert 1.85 < waits[1000] < 2.15 and waits[0] < 1.0 < 4.0 < waits[-1]
    again = SimServer(SimConfig(seed=5, latency=2.0, latency_sigma=0.5))
    assert server.latency("k7", 0, 0) == again.latency("k7", 0, 0) != server.latency("k7", 1, 0)
    status, _, reply, _ = server.chat(_judge_body(items[0]))
    usage = reply["usage"]  # one 64-pixel picture is one tile: 255 tokens, plus the prompt's text
    assert 255 + 100 < usage["prompt_tokens"] < 255 + 600 and 5 < usage["completion_tokens"] < 200


def test_the_same_requests_get_the_same_replies(items):
    failures = [Failure(ex, "0", 1) for ex in items[:6]]
    analyzer = FrontierAnalyzer(
        FrontierClient(Endpoint("a")), kinds=("same_image", "rendered", "generated"), rationales=True
    )
    bodies = [_analysis_body(analyzer, failures[i : i + 3]) for i in (0, 3)] + [_judge_body(items[7])]
    config = dict(proposal_error=0.3, judge_error=0.3, judge_lazy=0.2, off_schema=0.3, refusal=0.1)

    def replies(seed):
        server = SimServer(SimConfig(seed=seed, **config))
        return [json.dumps(server.chat(b)[2]["choices"][0]["message"]) for b in bodies for _ in range(3)]

    assert replies(7) == replies(7) != replies(8)


def test_generated_pictures_show_their_description_and_variants_differ():
    from curriculum.types import image_hash

    scene, question, answer = next(
        (ex.scene, ex.question, ex.answer) for ex in generate(Spec("spatial", {"distractors": 3}, 1), 2)
    )
    server = SimServer(SimConfig(seed=6))
    status, _, reply, _ = server.images(
        {"model": "painter", "prompt": describe(scene), "n": 3, "size": "512x512"}
    )
    assert status == 200 and len(reply["data"]) == 3
    from curriculum.frontier.sim.request import image_from_url

    pictures = [image_from_url("data:image/png;base64," + d["b64_json"]) for d in reply["data"]]
    assert len({image_hash(p) for p in pictures}) == 3 and all(p.size == (512, 512) for p in pictures)
    assert all(solve(read_scene(p), question) == ("spatial", answer) for p in pictures)
    assert all(server.teacher.drawn_scene(p) is not None for p in pictures)
    # Drawn wrong: the picture lacks an object or shows one in another colour.
    spoiling = SimServer(SimConfig(seed=6, image_error=1.0))
    _, _, reply, _ = spoiling.images(
        {"model": "painter", "prompt": describe(scene), "n": 10, "size": "256x256"}
    )
    content = sorted((o["colour"], o["shape"]) for o in scene["objects"])
    for d in reply["data"]:
        seen = read_scene(image_from_url("data:image/png;base64," + d["b64_json"]))
        assert sorted((o["colour"], o["shape"]) for o in seen["objects"]) != content


def test_a_dry_run_config_sends_every_endpoint_to_the_simulator():
    import yaml

    raw = yaml.safe_load(open("configs/frontier_qwen2_5_vl_3b.yaml"))
    out = dry_run_config(raw, "http://127.0.0.1:9/v1")
    f = out["curriculum"]["frontier"]
    endpoints = [f, *f["judges"], f["image_model"]]
    assert all(e["base_url"] == "http://127.0.0.1:9/v1" and e["api_key_env"] == KEY_ENV for e in endpoints)
    assert f["cache"] is None and f["prices"] == raw["curriculum"]["frontier"]["prices"]
    assert f["run_budget"] == raw["curriculum"]["frontier"]["run_budget"]


def test_the_real_client_is_served_with_retries_and_charged_for_its_tokens(items, monkeypatch):
    from curriculum.frontier.judge import ANSWER_SCHEMA

    monkeypatch.setenv("SIM_TEST_KEY", "anything")
    with SimServer(SimConfig(seed=0, rate_limit=0.5, retry_after=0.01)) as sim:
        client = FrontierClient(Endpoint("judge-a", sim.url, "SIM_TEST_KEY", timeout=10, max_retries=8),
                                prices={"judge-a": [1.0, 4.0]})  # fmt: skip
        panel = JudgePanel([client])
        for ex in items[:8]:
            reply = client.chat_json(panel.messages(Candidate(ex, "w", "g")), ANSWER_SCHEMA, "judge_answer")
            assert reply["answer"] == ex.answer
        stats = sim.stats()
    assert stats["served"]["rate_limited"] > 0 and client.ledger.totals["calls"] == 8
    tokens = stats["tokens"]["judge-a"]
    expected = (tokens["prompt_tokens"] * 1.0 + tokens["completion_tokens"] * 4.0) / 1e6
    assert client.ledger.cost == pytest.approx(expected)


def test_a_model_judging_its_own_proposals_keeps_its_misreadings_not_its_slips(items):
    # Proposals wrong 40 % of the time, half of them slips; the judge's own error rate is that of
    # the proposer's misreadings, so it misreads exactly what it misread when proposing.
    server = SimServer(SimConfig(seed=3, proposal_error=0.4, slip_share=0.5, judge_error=0.2, proposals=6))
    analyzer = FrontierAnalyzer(
        FrontierClient(Endpoint("a")), preset="lrf", kinds=("same_image",), rationales=True
    )
    scores = {"misread": [], "slip": [], "right": []}
    for ex in items[:60]:
        for p in json.loads(_content(server, _analysis_body(analyzer, [Failure(ex, "0", 1)]))["content"])[
            "proposals"
        ]:
            truth = answer_from_scene(ex.scene, p["question"])[1]
            kind = (
                "right"
                if p["answer"] == truth
                else "slip"
                if p["rationale"].endswith(f"Answer: {truth}")
                else "misread"
            )
            proposed = Example("c", ex.image, p["question"], p["answer"], scene=ex.scene)
            vote = json.loads(_content(server, _judge_body(proposed, "score", model="analyst"))["content"])
            scores[kind].append(vote["score"])
    n = sum(len(v) for v in scores.values())
    assert _within(len(scores["misread"]), n, 0.2) and _within(len(scores["slip"]), n, 0.2)
    assert set(scores["misread"]) == {3} and set(scores["slip"]) == {1} and set(scores["right"]) == {3}


def test_rationales_change_nothing_else_in_what_is_proposed(items):
    """Proposals are drawn from what the model is shown, so a run with rationales and one without
    get the same proposals and the same mistakes: the two are compared pair by pair."""
    server = SimServer(SimConfig(seed=2, proposal_error=0.3))
    failures = [Failure(ex, "0", 1) for ex in items[:3]]
    kinds = ("same_image", "rendered", "generated")
    replies = []
    for rationales in (False, True):
        analyzer = FrontierAnalyzer(FrontierClient(Endpoint("a")), kinds=kinds, rationales=rationales)
        proposals = json.loads(_content(server, _analysis_body(analyzer, failures))["content"])["proposals"]
        replies.append([{k: v for k, v in p.items() if k != "rationale"} for p in proposals])
    assert replies[0] == replies[1] and len(replies[0]) == 4
