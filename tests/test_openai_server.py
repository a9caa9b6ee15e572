"""The scripted OpenAI server, exercised through the real ``openai`` client."""

import base64
import io
import json
import time

import openai
import pytest
from PIL import Image

from tests.openai_server import FakeOpenAI, json_reply

MESSAGES = [{"role": "user", "content": "Describe the image as JSON."}]


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def make_client(server, max_retries=0, timeout=5.0):
    return openai.OpenAI(base_url=server.url, api_key="test-key", max_retries=max_retries, timeout=timeout)


def chat(client, model="gpt-test"):
    return client.chat.completions.create(model=model, messages=MESSAGES)


def test_json_reply_round_trips_and_request_is_recorded(server):
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    server.script(json_reply({"colour": "red", "count": 3}))
    resp = chat(make_client(server), model="gpt-4o-mini")

    assert json.loads(resp.choices[0].message.content) == {"colour": "red", "count": 3}
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.refusal is None
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gpt-4o-mini" and resp.object == "chat.completion" and resp.id
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

    assert server.calls == 1
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer test-key"
    assert req["json"]["model"] == "gpt-4o-mini"
    assert req["json"]["messages"] == MESSAGES


def test_usage_is_deterministic(server):
    server.script({"content": "abc"}, {"content": "abc"}, {"content": "abc" * 10})
    client = make_client(server)
    a, b, c = (chat(client).usage for _ in range(3))
    assert a == b
    assert c.completion_tokens > a.completion_tokens and c.prompt_tokens == a.prompt_tokens


def test_429_with_retry_after_then_success(server):
    server.script({"status": 429, "retry_after": 0.1}, {"content": "ok"})
    resp = chat(make_client(server, max_retries=2))
    assert resp.choices[0].message.content == "ok"
    assert server.calls == 2


def test_extra_headers_and_a_reply_without_usage(server):
    server.script(
        {"status": 429, "headers": {"retry-after-ms": "250", "x-should-retry": "false"}},
        {"content": "ok", "no_usage": True, "headers": {"x-request-id": "req-1"}},
    )
    client = make_client(server, max_retries=2)
    with pytest.raises(openai.RateLimitError) as info:  # x-should-retry: false, so no retry
        chat(client)
    assert info.value.response.headers["retry-after-ms"] == "250" and server.calls == 1
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.headers["x-request-id"] == "req-1" and raw.parse().usage is None


def test_429_without_retries_raises_rate_limit_error(server):
    server.script({"status": 429, "retry_after": 0.1})
    with pytest.raises(openai.RateLimitError) as info:
        chat(make_client(server, max_retries=0))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "0.1"
    assert info.value.body["type"] == "rate_limit_exceeded"


def test_500_then_success(server):
    server.script({"status": 500}, {"content": "recovered"})
    resp = chat(make_client(server, max_retries=2))
    assert resp.choices[0].message.content == "recovered"
    assert server.calls == 2


def test_delay_past_timeout_raises_api_timeout_error(server):
    server.script({"delay": 1.0, "content": "too late"})
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(make_client(server, max_retries=0, timeout=0.2))
    assert time.monotonic() - start < 0.9
    assert server.calls == 1


def test_malformed_body_raises_json_decode_error(server):
    server.script({"malformed": True})
    with pytest.raises(json.JSONDecodeError):
        chat(make_client(server))


def test_empty_choices(server):
    server.script({"empty_choices": True})
    resp = chat(make_client(server))
    assert resp.choices == []
    assert resp.usage is not None


def test_refusal(server):
    server.script({"refusal": "I can't help with that"})
    message = chat(make_client(server)).choices[0].message
    assert message.refusal == "I can't help with that"
    assert message.content is None


def test_images_are_distinct_decodable_pngs(server):
    server.script({"images": 2})
    resp = make_client(server).images.generate(
        model="gpt-image-1", prompt="a red square", n=2, response_format="b64_json"
    )
    assert server.requests[0]["path"] == "/v1/images/generations"
    assert server.requests[0]["json"]["n"] == 2
    raw = [base64.b64decode(item.b64_json) for item in resp.data]
    assert len(raw) == 2 and raw[0] != raw[1]
    for blob in raw:
        img = Image.open(io.BytesIO(blob))
        assert img.format == "PNG"
        img.load()


def test_unscripted_call_is_a_visible_500(server):
    with pytest.raises(openai.InternalServerError, match="script ran out"):
        chat(make_client(server))


def test_custom_default_and_fifo_order(server):
    server.default = lambda path, body: {"content": f"default for {body['model']}"}
    server.script({"content": "first"}, {"content": "second"})
    client = make_client(server)
    got = [chat(client, model="m").choices[0].message.content for _ in range(3)]
    assert got == ["first", "second", "default for m"]
    assert server.calls == 3 and server.pending == 0


def test_stop_is_fast_and_idempotent():
    s = FakeOpenAI().start()
    s.script({"content": "x"})
    chat(make_client(s))
    start = time.monotonic()
    s.stop()
    s.stop()
    assert time.monotonic() - start < 1.0
