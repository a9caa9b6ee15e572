"""The frontier client against a local OpenAI-compatible server: replies, faults, cache, budget, key."""

import logging
import time
from typing import Annotated, Literal

import pytest
from pydantic import Field

from curriculum.frontier.client import (
    BudgetExceeded,
    Endpoint,
    FrontierClient,
    FrontierError,
    Ledger,
)
from curriculum.frontier.retry import backoff, retry_after
from curriculum.frontier.schema import Reply, errors, json_schema, text
from tests.openai_server import FakeOpenAI, json_reply


class SCHEMA(Reply):  # noqa: N801 (a reply model, named as the tests use it)
    diagnosis: text(200)
    error_type: Literal["perception", "counting", "reasoning"]
    proposals: Annotated[list[str], Field(max_length=3)]


GOOD = {"diagnosis": "undercounts crowded scenes", "error_type": "counting", "proposals": ["more objects"]}
KEY = "sk-test-3f9a1c"
MESSAGES = [{"role": "user", "content": "diagnose"}]


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def _client(server, tmp_path, monkeypatch, **kw):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    endpoint = Endpoint("judge-1", base_url=server.url, api_key_env="LL_TEST_KEY", timeout=kw.pop("timeout", 5.0),
                        max_retries=kw.pop("max_retries", 2))  # fmt: skip
    return FrontierClient(endpoint, cache_dir=tmp_path / "cache", prices={"judge-1": [1000.0, 2000.0]}, **kw)


def test_a_reply_is_parsed_checked_charged_and_cached(server, tmp_path, monkeypatch):
    client = _client(server, tmp_path, monkeypatch)
    server.script(json_reply(GOOD))
    assert client.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    body = server.requests[0]["json"]
    assert body["model"] == "judge-1" and body["response_format"]["json_schema"]["schema"] == json_schema(
        SCHEMA
    )
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    spent = client.ledger.to_dict()
    assert spent["calls"] == 1 and spent["prompt_tokens"] > 0 and spent["cost"] > 0
    # The same request again: answered from the cache, no call, no charge.
    again = _client(server, tmp_path, monkeypatch)
    assert again.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    assert server.calls == 1 and again.ledger.to_dict()["cached"] == 1 and again.ledger.cost == 0


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([{"status": 500}] * 3, "HTTP 500 after 3 attempts"),
        ([{"status": 429, "retry_after": 0.05}] * 3, "HTTP 429 after 3 attempts"),
        ([{"status": 401}], "HTTP 401(?! after)"),  # not worth another attempt
        ([{"delay": 1.0, "content": "{}"}], "timed out"),
        ([{"malformed": True}], "unusable response"),
        ([{"empty_choices": True}], "no choices"),
        ([{"refusal": "I can't help with that"}], "refused"),
        ([{"content": "not json at all"}], "not JSON"),
        ([json_reply({**GOOD, "error_type": "vibes"})], "breaks the schema: $.error_type"),
        ([json_reply({"diagnosis": "x"})], "missing required key 'error_type'"),
    ],
)
def test_faults_become_one_line_errors_and_are_not_cached(server, tmp_path, monkeypatch, steps, reason):
    timeout = 0.3 if any("delay" in s for s in steps) else 5.0
    client = _client(server, tmp_path, monkeypatch, timeout=timeout, max_retries=0 if timeout < 1 else 2)
    server.script(*steps)
    with pytest.raises(FrontierError, match=reason.replace("$", r"\$")) as info:
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert "\n" not in str(info.value) and KEY not in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_retries_recover_from_a_429_then_succeed(server, tmp_path, monkeypatch):
    client = _client(server, tmp_path, monkeypatch)
    server.script({"status": 429, "retry_after": 0.05}, json_reply(GOOD))
    assert client.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD and server.calls == 2


def test_budget_stops_calls_before_they_are_made(server, tmp_path, monkeypatch):
    # A call starts only if its estimate fits in what is left (the first: 1000 reply tokens at
    # 2000 USD per million, 2.0 USD); one that would pass the budget is never sent.
    ledger = Ledger(run_budget=2.5)
    client = _client(server, tmp_path, monkeypatch, ledger=ledger)
    server.script(json_reply(GOOD))
    client.chat_json(MESSAGES, SCHEMA, "analysis")
    with pytest.raises(BudgetExceeded, match="run budget"):
        client.chat_json([{"role": "user", "content": "another"}], SCHEMA, "analysis", max_tokens=2000)
    assert server.calls == 1
    round_ledger = Ledger(round_budget=2.5)
    client = _client(server, tmp_path / "b", monkeypatch, ledger=round_ledger)
    server.script(json_reply(GOOD), json_reply(GOOD))
    client.chat_json(MESSAGES, SCHEMA, "analysis")
    with pytest.raises(BudgetExceeded, match="round budget"):
        client.chat_json([{"role": "user", "content": "another"}], SCHEMA, "analysis", max_tokens=2000)
    round_ledger.start_round()
    client.chat_json([{"role": "user", "content": "another"}], SCHEMA, "analysis")


def test_the_key_is_required_and_never_written(server, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    client = FrontierClient(Endpoint("m", base_url=server.url, api_key_env="NO_SUCH_KEY_VAR"))
    with pytest.raises(FrontierError, match="NO_SUCH_KEY_VAR is not set"):
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    client = _client(server, tmp_path, monkeypatch)
    server.script(json_reply(GOOD))
    client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert KEY not in repr(client.__dict__)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="ignore")


def test_reply_models_name_every_problem_by_its_json_path():
    assert errors(GOOD, SCHEMA) == []
    bad = {"diagnosis": "d" * 201, "error_type": "counting", "proposals": ["a", 3, "c", "d"], "extra": 1}
    found = errors(bad, SCHEMA)
    assert any(e.startswith("$.diagnosis: String should have at most 200 characters") for e in found)
    assert any(e.startswith("$.proposals: List should have at most 3 items") for e in found)
    assert errors({**GOOD, "proposals": ["a", 3]}, SCHEMA) == [
        "$.proposals[1]: Input should be a valid string"
    ]
    assert "$: unexpected key 'extra'" in found
    assert errors({"diagnosis": "x"}, SCHEMA) == [
        "$: missing required key 'error_type'", "$: missing required key 'proposals'"
    ]  # fmt: skip


class _Strict(Reply):
    score: Annotated[int, Field(ge=1, le=3)]
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}$", min_length=2)]


def test_no_coercion_and_every_declared_constraint_holds():
    """What the hand-written checker let through: keywords it did not know (a pattern, a minimum
    length) and values of another type that read as the right one (a boolean or a numeric string
    as an integer)."""
    assert errors({"score": 2, "code": "AB"}, _Strict) == []
    for score in (True, "2", 2.0, 4):
        assert [e for e in errors({"score": score, "code": "AB"}, _Strict) if e.startswith("$.score")], score
    for code in ("ab", "A", "ABC"):
        assert [e for e in errors({"score": 2, "code": code}, _Strict) if e.startswith("$.code")], code


def test_the_schema_sent_is_strict_and_plain():
    """Every object of the schema the request carries requires every property and allows no other
    (strict structured outputs), nested models written out in place (no ``$ref``)."""
    from curriculum.frontier.analyzer import reply_schema
    from curriculum.frontier.judge import IMAGE_SCHEMA

    def objects(node):
        if isinstance(node, dict):
            assert "$ref" not in node and "$defs" not in node
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    for model in (reply_schema("lrf", ["same_image", "generated"], True), IMAGE_SCHEMA, SCHEMA):
        found = list(objects(json_schema(model)))
        assert found
        for node in found:
            assert node["additionalProperties"] is False and sorted(node["required"]) == sorted(
                node["properties"]
            )


def test_an_off_schema_reply_is_a_logged_failure_of_that_call_only(server, tmp_path, monkeypatch, caplog):
    client = _client(server, tmp_path, monkeypatch)
    server.script(json_reply({**GOOD, "proposals": [1]}), json_reply(GOOD))
    with caplog.at_level(logging.WARNING, logger="curriculum.frontier.client"):
        with pytest.raises(FrontierError, match=r"breaks the schema: \$\.proposals\[0\]"):
            client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert "breaks the schema" in caplog.text
    assert client.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD  # the next call is unharmed
    assert client.ledger.to_dict()["calls"] == 2  # the failed call was paid for, and counted


def test_images_are_decoded_checked_charged_and_cached(server, tmp_path, monkeypatch):
    client = _client(server, tmp_path, monkeypatch, image_price=0.04)
    server.script({"images": 2, "bad_images": 1})
    first = client.images("a red circle left of a blue square", 3, "256x256", {"guidance_scale": 3.5})
    again = client.images("a red circle left of a blue square", 3, "256x256", {"guidance_scale": 3.5})
    assert len(first) == 2 and first == again and server.calls == 1  # the bad one is skipped; cached
    body = server.requests[0]["json"]
    assert (
        body["n"] == 3
        and body["guidance_scale"] == 3.5
        and server.requests[0]["path"].endswith("/images/generations")
    )
    assert client.ledger.images == 3 and abs(client.ledger.cost - 0.12) < 1e-9
    server.script({"images": 0, "bad_images": 2})
    with pytest.raises(FrontierError, match="no usable image"):
        client.images("another prompt", 2, "256x256")


# ---------------------------------------------------------------- time limits, secrets in URLs

URL_SECRET = "pw-Zq9x4Lm2"


def _credentialed(url, secret=URL_SECRET):
    return url.replace("http://", f"http://lessonloop:{secret}@", 1)


def test_a_long_retry_after_cannot_hold_a_call_past_its_time_limit(server, tmp_path, monkeypatch):
    # timeout x (max_retries + 1) = 1 s for the whole call, waits included: a server asking for
    # 4 s is not waited for (nor asked again early), the call ends at once with the reason.
    client = _client(server, tmp_path, monkeypatch, timeout=0.5, max_retries=1)
    server.script({"status": 429, "retry_after": 4}, json_reply(GOOD))
    start = time.monotonic()
    with pytest.raises(FrontierError, match=r"HTTP 429.*asks to wait 4\.0s.*time limit") as info:
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert time.monotonic() - start < 1.0 and server.calls == 1
    assert "\n" not in str(info.value)


def test_waits_between_attempts_count_within_the_call_time_limit(server, tmp_path, monkeypatch):
    # 0.4 s x 3 attempts = 1.2 s in all. Two 429s ask for 0.45 s each (both honoured: they fit),
    # which leaves 0.3 s for the third attempt: a reply that takes 0.35 s comes too late.
    client = _client(server, tmp_path, monkeypatch, timeout=0.4, max_retries=2)
    server.script({"status": 429, "retry_after": 0.45}, {"status": 429, "retry_after": 0.45},
                  {**json_reply(GOOD), "delay": 0.35})  # fmt: skip
    start = time.monotonic()
    with pytest.raises(FrontierError, match="timed out after 3 attempts"):
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    seconds = time.monotonic() - start
    assert 0.9 <= seconds < 1.2 + 0.3 and server.calls == 3  # the server's waits were kept


def test_a_retry_after_within_the_limit_is_waited_for(server, tmp_path, monkeypatch):
    client = _client(server, tmp_path, monkeypatch, timeout=2.0, max_retries=1)
    server.script({"status": 429, "retry_after": 0.3}, json_reply(GOOD))
    start = time.monotonic()
    assert client.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    assert time.monotonic() - start >= 0.3 and server.calls == 2


def test_a_credential_in_the_url_reaches_no_cache_key_file_or_repr(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)

    def client(secret):
        endpoint = Endpoint("judge-1", base_url=_credentialed(server.url, secret), api_key_env="LL_TEST_KEY")
        return FrontierClient(endpoint, cache_dir=tmp_path / "cache", prices={"judge-1": [1.0, 2.0]})

    server.script(json_reply(GOOD))
    assert client(URL_SECRET).chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    # The same endpoint with another password: the same request is the same cache entry (the
    # key does not depend on the secret, so no file name or content is derived from it).
    rotated = client("pw-other-Kd83")
    assert rotated.chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    assert server.calls == 1 and rotated.ledger.to_dict()["cached"] == 1
    assert URL_SECRET not in repr(client(URL_SECRET).endpoint)
    assert "http://***@127.0.0.1:" in repr(client(URL_SECRET).endpoint)
    for path in tmp_path.rglob("*"):
        assert URL_SECRET not in str(path)
        if path.is_file():
            assert URL_SECRET not in path.read_text(errors="ignore")


def test_errors_never_carry_a_credential_of_the_url(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    # An unescaped "/" in the password: the client cannot even parse the URL, and its own error
    # quotes the password's first part as a port.
    broken = _credentialed(server.url, "Qx7pw/rest-of-it")
    client = FrontierClient(Endpoint("m", base_url=broken, api_key_env="LL_TEST_KEY", max_retries=0))
    with pytest.raises(FrontierError) as info:
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert "Qx7pw" not in str(info.value) and "rest-of-it" not in str(info.value)
    # Any message a FrontierError is given is redacted, whoever builds it.
    err = FrontierError(f"judge at {_credentialed(server.url)}?token=abc failed")
    assert URL_SECRET not in str(err) and "abc" not in str(err) and "lessonloop:" not in str(err)


def test_the_http_stack_logs_no_credential_of_the_url(server, tmp_path, monkeypatch, caplog):
    # httpx logs every request's URL at INFO, the level a training run shows.
    monkeypatch.setenv("LL_TEST_KEY", KEY)
    endpoint = Endpoint("judge-1", base_url=_credentialed(server.url), api_key_env="LL_TEST_KEY")
    server.script(json_reply(GOOD))
    with caplog.at_level(logging.DEBUG):
        assert FrontierClient(endpoint).chat_json(MESSAGES, SCHEMA, "analysis") == GOOD
    logged = [r.getMessage() for r in caplog.records]
    assert any("http://***@127.0.0.1:" in m for m in logged)  # the request was logged, redacted
    assert not [m for m in logged if URL_SECRET in m or KEY in m]


def test_retry_after_reads_milliseconds_seconds_and_dates():
    from email.utils import formatdate

    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert 3.0 < retry_after({"retry-after": formatdate(time.time() + 5, usegmt=True)}) <= 5.0
    assert retry_after({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert retry_after({"retry-after": "inf"}) == float("inf")
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    waits = [backoff(n) for n in (1, 2, 3, 4, 5, 9)]
    assert 0.375 <= waits[0] <= 0.5 and 0.75 <= waits[1] <= 1.0 and 6.0 <= waits[-1] <= 8.0


def test_the_server_can_name_its_wait_in_milliseconds_or_refuse_a_retry(server, tmp_path, monkeypatch):
    client = _client(server, tmp_path, monkeypatch, timeout=0.5, max_retries=1)
    server.script({"status": 429, "headers": {"retry-after-ms": "4000"}})
    with pytest.raises(FrontierError, match=r"asks to wait 4\.0s"):
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    server.script({"status": 503, "headers": {"x-should-retry": "false"}})
    with pytest.raises(FrontierError, match=r"HTTP 503(?! after)"):
        client.chat_json(MESSAGES, SCHEMA, "analysis")
    assert server.calls == 2  # one attempt each


def test_a_reply_without_usage_is_named_in_one_warning(server, tmp_path, monkeypatch, caplog):
    client = _client(server, tmp_path, monkeypatch)
    server.script({**json_reply(GOOD), "no_usage": True}, {**json_reply(GOOD), "no_usage": True})
    with caplog.at_level(logging.WARNING, logger="curriculum.frontier.client"):
        client.chat_json(MESSAGES, SCHEMA, "analysis")
        client.chat_json([{"role": "user", "content": "again"}], SCHEMA, "analysis")
    (record,) = [r for r in caplog.records if r.name == "curriculum.frontier.client"]
    assert "judge-1: the reply carries no token usage" in record.getMessage()
    assert client.ledger.to_dict()["calls"] == 2 and client.ledger.cost == 0


@pytest.mark.parametrize("content", ["[" * 20_000 + "]" * 20_000, '{"answer": ' + "7" * 5000 + "}"])
def test_a_reply_json_cannot_hold_is_a_failed_call_not_a_crash(content):
    from types import SimpleNamespace

    from curriculum.frontier.judge import AnswerVerdict

    reply = SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=content, refusal=None))])
    client = FrontierClient(Endpoint("m"), max_reply_chars=100_000)
    with pytest.raises(FrontierError, match="reply cannot be read"):
        client._parse(reply, AnswerVerdict)
