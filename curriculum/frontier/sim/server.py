"""The simulated frontier as a local OpenAI-compatible HTTP server (standard library only).

Endpoints, under any prefix (``http://host:port/v1`` is what clients are given):

- ``POST .../chat/completions``: a chat completion whose content is the ``Teacher``'s JSON reply
  to the request, with token usage counted as a real model's (text by length, pictures by tiles);
- ``POST .../images/generations``: ``n`` PNG pictures as ``b64_json``;
- ``GET .../models``: the models it has been asked for (it plays any model name);
- ``GET .../sim/stats``: what it served: requests, faults and mistakes by kind, tokens by model.

Before answering, each attempt may fail as real endpoints do (``SimConfig``: a 429 with
``Retry-After``, a 500, a refusal, a reply that breaks the schema) and waits its latency. Faults and
latency are drawn from the seed, the request's hash and how many times that same request came
before, so a retry is a new draw and a rerun of the same requests meets the same faults.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import random
import threading
import time
from collections import Counter, defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from curriculum.frontier.sim.config import SimConfig
from curriculum.frontier.sim.request import parse_chat, prompt_tokens, tokens_of_text
from curriculum.frontier.sim.teacher import Teacher

REFUSAL = "I'm sorry, but I can't help with that request."


class SimServer:
    """A threaded server on ``host``:``port`` (0: any free port) playing the frontier."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.teacher = Teacher(self.config)
        self.host, self.port = host, port
        self.counts: Counter[str] = Counter()
        self.tokens: dict[str, Counter[str]] = defaultdict(Counter)
        self._seen: Counter[str] = Counter()
        self._window: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimServer:
        if self._httpd is None:
            httpd = ThreadingHTTPServer((self.host, self.port), _handler(self))
            httpd.daemon_threads = True
            httpd.block_on_close = False
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="frontier-sim", daemon=True)  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the command line's way)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running; call start() or use a with block")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stats(self) -> dict[str, Any]:
        """What it served: request and fault counts, the model's mistakes, tokens by model."""
        with self._lock:
            return {
                "served": dict(self.counts),
                "teacher": dict(self.teacher.counts),
                "tokens": {model: dict(c) for model, c in self.tokens.items()},
            }

    # ------------------------------------------------------------------ one request

    def attempt(self, body: Any) -> tuple[str, int]:
        """The request's hash and how many times the same request came before this one."""
        key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
        return key, n

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def fault(self, model: str, key: str, attempt: int) -> tuple[int, dict[str, str], Any] | None:
        """The failure this attempt meets, as (status, headers, body), or None."""
        c = self.config
        if c.rpm:
            wait = self._over_rpm(model)
            if wait is not None:
                self.count("rpm_limited")
                return (
                    429,
                    {"Retry-After": f"{wait:.3f}"},
                    _error("rate limit: requests per minute", "rate_limit_exceeded"),
                )
        rng = random.Random(f"{c.seed}|fault|{key}|{attempt}")
        if rng.random() < c.rate_limit:
            self.count("rate_limited")
            return (
                429,
                {"Retry-After": f"{c.retry_after:g}"},
                _error("rate limit reached", "rate_limit_exceeded"),
            )
        if rng.random() < c.server_error:
            self.count("server_errors")
            return 500, {}, _error("the server had an error", "server_error")
        return None

    def _over_rpm(self, model: str) -> float | None:
        """Seconds until ``model`` may take another request this minute, or None (and counted)."""
        now = time.monotonic()
        with self._lock:
            window = self._window[model]
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= self.config.rpm:
                return 60.0 - (now - window[0])
            window.append(now)
        return None

    def latency(self, key: str, attempt: int, completion_tokens: int) -> float:
        c = self.config
        if not c.latency and not c.tokens_per_second:
            return 0.0
        rng = random.Random(f"{c.seed}|latency|{key}|{attempt}")
        base = c.latency * math.exp(c.latency_sigma * rng.gauss(0.0, 1.0)) if c.latency else 0.0
        return base + (completion_tokens / c.tokens_per_second if c.tokens_per_second else 0.0)

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any, float]:
        """(status, headers, JSON body, seconds to wait before sending) for a chat completion."""
        model = str(body.get("model", "sim"))
        key, attempt = self.attempt(body)
        self.count("chat")
        failed = self.fault(model, key, attempt)
        if failed is not None:
            return (*failed, self.latency(key, attempt, 0))
        request = parse_chat(body)
        value = self.teacher.reply(request, key)
        content: str | None = json.dumps(value)
        refusal = None
        rng = random.Random(f"{self.config.seed}|content|{key}|{attempt}")
        if rng.random() < self.config.refusal:
            self.count("refusals")
            content, refusal = None, REFUSAL
        elif rng.random() < self.config.off_schema:
            self.count("off_schema")
            content = _break(value, request.schema, rng)
        p = prompt_tokens(body, request.images, self.config.image_detail)
        completion = tokens_of_text(content or refusal or "")
        with self._lock:
            self.tokens[model].update(prompt_tokens=p, completion_tokens=completion, calls=1)
        message = {"role": "assistant", "content": content, "refusal": refusal}
        reply = {
            "id": f"chatcmpl-sim-{key[:12]}-{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": completion, "total_tokens": p + completion},
        }
        return 200, {}, reply, self.latency(key, attempt, completion)

    def images(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any, float]:
        """(status, headers, JSON body, seconds to wait) for an image generation request."""
        model = str(body.get("model", "sim-image"))
        key, attempt = self.attempt(body)
        self.count("images")
        failed = self.fault(model, key, attempt)
        if failed is not None:
            return (*failed, self.latency(key, attempt, 0))
        extra = {k: v for k, v in body.items() if k not in ("model", "prompt", "n", "size")}
        pictures = self.teacher.draw(str(body.get("prompt", "")), int(body.get("n") or 1),
                                     str(body.get("size") or "1024x1024"), extra, key)  # fmt: skip
        data = []
        for image in pictures:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            data.append({"b64_json": base64.b64encode(buf.getvalue()).decode("ascii")})
        with self._lock:
            self.tokens[model].update(images=len(data), calls=1)
        return 200, {}, {"created": int(time.time()), "data": data}, self.latency(key, attempt, 0)

    def models(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(self.tokens)
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "frontier-sim"} for m in names],
        }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _break(value: dict[str, Any], schema: dict[str, Any], rng: random.Random) -> str:
    """A reply that the schema check (or the JSON parser) refuses: a required key left out, a key
    the schema does not allow, a text past its length, or JSON cut short."""
    required = [k for k in schema.get("required", []) if k in value]
    ways = ["cut", "extra"] + (["missing"] if required else [])
    long_keys = [k for k, p in schema.get("properties", {}).items() if p.get("maxLength") and k in value]
    ways += ["long"] if long_keys else []
    way = rng.choice(ways)
    if way == "missing":
        broken = {k: v for k, v in value.items() if k != rng.choice(required)}
    elif way == "extra":
        broken = {**value, "note": "Here is the analysis you asked for."}
    elif way == "long":
        key = rng.choice(long_keys)
        broken = {**value, key: "x" * (schema["properties"][key]["maxLength"] + 1)}
    else:
        text = json.dumps(value)
        return text[: max(1, len(text) // 2)]
    return json.dumps(broken)


def _handler(server: SimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet; and request headers (the client's key) are never logged

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.endswith("/sim/stats"):
                self._send(200, {}, server.stats())
            elif path.endswith("/models"):
                self._send(200, {}, server.models())
            else:
                self._send(404, {}, _error(f"no such endpoint: GET {path}", "not_found"))

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body is not a JSON object")
            except ValueError as err:
                self._send(400, {}, _error(f"invalid request body: {err}", "invalid_request_error"))
                return
            try:
                if path.endswith("/chat/completions"):
                    status, headers, reply, wait = server.chat(body)
                elif path.endswith("/images/generations"):
                    status, headers, reply, wait = server.images(body)
                else:
                    status, headers, reply, wait = (
                        404,
                        {},
                        _error(f"no such endpoint: POST {path}", "not_found"),
                        0.0,
                    )
            except Exception as err:  # a bug must answer 500, not hang the client
                status, headers, reply, wait = (
                    500,
                    {},
                    _error(f"simulator error: {err!r}", "server_error"),
                    0.0,
                )
            if wait > 0:
                time.sleep(wait)
            self._send(status, headers, reply)

        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timed out) before the reply

    return Handler
