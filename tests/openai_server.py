"""A scripted, OpenAI-compatible HTTP server for tests (standard library + PIL only).

Point the real ``openai`` client at it::

    with FakeOpenAI() as server:
        server.script(json_reply({"answer": 1}), {"status": 429, "retry_after": 0.1})
        client = openai.OpenAI(base_url=server.url, api_key="test-key")

Each incoming request (any endpoint) consumes one step from a FIFO queue; when the
queue is empty, ``default(path, body)`` supplies the step.  Step keys:

- ``content``: a chat completion whose message content is that text;
- ``status`` (+ optional ``retry_after`` seconds, ``message``): an error with an
  OpenAI-style JSON body and, if given, a ``Retry-After`` header;
- ``headers``: extra response headers, for any step (e.g. ``retry-after-ms``, an HTTP-date
  ``Retry-After``, ``x-should-retry``);
- ``no_usage``: a completion without its ``usage`` field, as some proxies answer;
- ``delay``: seconds to sleep before answering (combinable with any other key);
- ``malformed``: status 200, ``Content-Type: application/json``, body not JSON;
- ``empty_choices``: a valid completion with ``"choices": []``;
- ``refusal``: a completion whose message has ``content: null`` and that refusal;
- ``images``: for ``/v1/images/generations``, that many PNGs as ``b64_json``, distinct within
  and across requests
  (``bad_images``: that many more items whose data is not an image).
"""

from __future__ import annotations

import base64
import collections
import io
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = dict[str, Any]

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240)]


def json_reply(obj: Any) -> Step:
    """A step whose chat completion content is ``obj`` serialised as JSON."""
    return {"content": json.dumps(obj)}


def png_bytes(index: int, size: int = 8) -> bytes:
    """A small valid PNG, with a different colour for each index."""
    from PIL import Image

    colour = _COLOURS[index % len(_COLOURS)]
    if index >= len(_COLOURS):  # keep colours distinct past the palette
        colour = tuple((c + 7 * (index // len(_COLOURS))) % 256 for c in colour)
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _tokens(text: str) -> int:
    """A deterministic token count: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


def _out_of_script(path: str, body: Any) -> Step:
    return {"status": 500, "message": f"FakeOpenAI script ran out (unexpected request to {path})"}


class FakeOpenAI:
    """A threaded HTTP server on 127.0.0.1 that answers OpenAI API calls from a script."""

    def __init__(self, default: Callable[[str, Any], Step] | None = None):
        self.default: Callable[[str, Any], Step] = default or _out_of_script
        self.requests: list[dict[str, Any]] = []
        self._queue: collections.deque[Step] = collections.deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeOpenAI", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not running; use start() or a with block")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *steps: Step) -> FakeOpenAI:
        """Append steps to the queue; each request consumes one, in order."""
        for step in steps:
            if not isinstance(step, dict):
                raise TypeError(f"a step must be a dict, got {type(step).__name__}")
        with self._lock:
            self._queue.extend(dict(s) for s in steps)
        return self

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def pending(self) -> int:
        """Steps scripted but not yet consumed."""
        with self._lock:
            return len(self._queue)

    def _take(self, record: dict[str, Any]) -> tuple[Step | None, int]:
        with self._lock:
            self.requests.append(record)
            self._seq += 1
            return (self._queue.popleft() if self._queue else None), self._seq


def _make_handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?", 1)[0]
            record = {
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": body,
            }
            step, seq = server._take(record)
            try:
                if step is None:
                    step = server.default(path, body)
                status, headers, payload = _respond(step, path, body, raw, seq)
                headers = {**headers, **{str(k): str(v) for k, v in step.get("headers", {}).items()}}
            except Exception as exc:  # a bad step should be a visible 500, not a hang
                status, headers, payload = _error(500, f"FakeOpenAI step failed: {exc!r}", "server_error")
            if step and step.get("delay"):
                time.sleep(float(step["delay"]))
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. timed out) before the answer

    return Handler


def _json(status: int, obj: Any, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", **(extra or {})}
    return status, headers, json.dumps(obj).encode()


def _error(status: int, message: str, type_: str, extra: dict[str, str] | None = None):
    return _json(status, {"error": {"message": message, "type": type_, "param": None, "code": None}}, extra)


def _respond(step: Step, path: str, body: Any, raw: bytes, seq: int) -> tuple[int, dict[str, str], bytes]:
    request = body if isinstance(body, dict) else {}
    model = request.get("model", "fake-model")
    created = int(time.time())

    if "status" in step and step["status"] != 200:
        status = int(step["status"])
        extra = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else None
        kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "authentication_error"}
        message = step.get("message", f"FakeOpenAI scripted error {status}")
        return _error(status, message, kind.get(status, "server_error"), extra)

    if step.get("malformed"):
        return 200, {"Content-Type": "application/json"}, b'{"id": "chatcmpl-broken", "choices": [<not json'

    if "images" in step:
        data = [
            {"b64_json": base64.b64encode(png_bytes(7 * seq + i)).decode("ascii")}
            for i in range(int(step["images"]))
        ]
        data += [{"b64_json": base64.b64encode(b"not an image").decode()}] * int(step.get("bad_images", 0))
        return _json(200, {"created": created, "data": data})

    content = step.get("content")
    refusal = step.get("refusal")
    prompt_tokens = _tokens(json.dumps(request.get("messages", request), sort_keys=True))
    completion_tokens = _tokens(content or refusal or "")
    choices = []
    if not step.get("empty_choices"):
        message = {
            "role": "assistant",
            "content": None if refusal is not None else (content or ""),
            "refusal": refusal,
        }
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]
    completion = {
        "id": f"chatcmpl-fake{seq:06d}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_fakeopenai",
    }
    if step.get("no_usage"):
        del completion["usage"]
    return _json(200, completion)
