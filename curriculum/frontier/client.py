"""One call to a frontier model, made safe to put inside a training run.

``FrontierClient.chat_json`` sends a chat request whose reply must validate as a pydantic model
(``curriculum.frontier.schema``, sent as a strict structured-output schema) to any
OpenAI-compatible endpoint through the official ``openai`` client, and returns the parsed,
validated object, or raises ``FrontierError`` with a one-line reason: the endpoint is down or
slow (after retries with backoff on 429, 5xx and timeouts), the reply is empty, a refusal, not
JSON, too long, or off-schema. Around each call:

- an on-disk cache keyed by the request (model, endpoint, messages, schema, sampling), so a resumed
  or repeated run does not pay twice; only replies that passed the checks are cached;
- a ledger of tokens and cost (a price table per model, USD per million tokens) with hard budgets
  per run and per round: a call that would start over budget raises ``BudgetExceeded``; calls in
  flight count at an estimate of their cost, so concurrent calls cannot all start on the same
  remaining dollars (``benchmarks/frontier_sim.py``, part ``budget``);
- a concurrency limit shared by every thread that uses the client;
- a time limit: the attempts and every wait between them (backoff, or the server's
  ``Retry-After``) end within ``timeout x (max_retries + 1)`` of the call's start, whatever the
  server asks. The retries are made here, not inside the ``openai`` client, because its waits
  (up to two minutes per ``Retry-After``) would not count, and a round could be held past
  its documented bound (no call starts after the round's deadline, so a round ends within that
  much after it).

``FrontierClient.images`` does the same for the images API (``/images/generations``): the PNG
bytes of each variant come back decoded and checked, the cost is the endpoint's price per image.

The API key is read from the environment variable the endpoint names when the first call is made
(only the ``openai`` client holds it); it is never written to the cache or put in an error message.
Credentials inside ``base_url`` are redacted from every ``FrontierError`` message and from the
endpoint's repr, and the cache key is derived from the redacted URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel

from curriculum.frontier import schema as replies
from curriculum.frontier.ledger import BudgetExceeded, FrontierError, Ledger, check_limit
from curriculum.frontier.retry import backoff, retry_after, retryable
from curriculum.secrets import redact_logger, redact_url

__all__ = ["BudgetExceeded", "Endpoint", "FrontierClient", "FrontierError", "Ledger", "token_price"]

log = logging.getLogger(__name__)
# Loggers of the HTTP stack under the openai client; httpx logs each request's full URL (a
# credential in ``base_url`` included) at INFO, which a training run shows.
HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "openai._base_client")


@dataclass
class Endpoint:
    model: str
    base_url: str | None = None  # None: the official OpenAI endpoint
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0  # seconds per attempt
    max_retries: int = 3

    @property
    def time_limit(self) -> float:
        """Seconds one call may take, every attempt and every wait between them included."""
        return self.timeout * (self.max_retries + 1)

    @property
    def shown_url(self) -> str | None:
        """``base_url`` with any credential in it replaced by ``***``: the form to print."""
        return redact_url(self.base_url) if self.base_url else self.base_url

    def __repr__(self) -> str:
        return (
            f"Endpoint(model={self.model!r}, base_url={self.shown_url!r}, api_key_env={self.api_key_env!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r})"
        )


IMAGE_TOKENS = 765  # a picture's input tokens in a cost estimate: 85 + 170 x 4 tiles (up to 1024 px)
FIRST_REPLY_TOKENS = 1000  # a reply's tokens in a cost estimate before the endpoint has answered


def token_price(prices: Mapping[str, Any], model: str) -> tuple[float, float] | None:
    """``model``'s [input, output] price in USD per million tokens, None when ``prices`` has no
    entry for it. A malformed entry (not two finite non-negative numbers) raises ValueError
    naming it: read after a call, it would fail the call and leave it uncharged."""
    if model not in prices:
        return None
    entry = prices[model]
    if (
        not isinstance(entry, (list, tuple))
        or len(entry) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in entry)
        or not all(math.isfinite(x) and x >= 0 for x in entry)
    ):
        raise ValueError(
            f"prices[{model!r}] = {entry!r}: must be two finite non-negative numbers "
            "(USD per million input and output tokens)"
        )
    return float(entry[0]), float(entry[1])


class FrontierClient:
    def __init__(
        self,
        endpoint: Endpoint,
        cache_dir: str | Path | None = None,
        prices: dict[str, list[float]] | None = None,
        image_price: float | None = None,
        ledger: Ledger | None = None,
        concurrency: int = 4,
        max_reply_chars: int = 50_000,
    ) -> None:
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.prices = prices or {}
        # USD per generated image; None: unknown (charged as 0, refused under a budget at set-up).
        self.image_price = None if image_price is None else check_limit("image_price", image_price)
        self.ledger = ledger or Ledger()
        self.max_reply_chars = max_reply_chars
        self._slots = threading.Semaphore(max(1, concurrency))
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._warned_usage = False
        self._longest_reply: int | None = None  # completion tokens of the longest reply so far

    @property
    def prices(self) -> dict[str, list[float]]:
        """USD per million [input, output] tokens, per model name."""
        return self._prices

    @prices.setter
    def prices(self, prices: dict[str, list[float]]) -> None:
        # This endpoint's entry is checked when set, not after a call it would fail uncharged.
        self._price = token_price(prices, self.endpoint.model) or (0.0, 0.0)
        self._prices = prices

    def _openai(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import openai

                key = os.environ.get(self.endpoint.api_key_env)
                if not key:
                    raise FrontierError(f"environment variable {self.endpoint.api_key_env} is not set")
                for name in HTTP_LOGGERS:
                    redact_logger(name)
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=self.endpoint.base_url,
                    timeout=self.endpoint.timeout,
                    max_retries=0,  # retried in ``_call``, where every wait counts
                )
            return self._client

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD of a call's tokens; 0 for a model without a price (``build_frontier`` refuses
        that when a budget is set, and warns otherwise)."""
        price_in, price_out = self._price
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6

    def _key(self, request: dict[str, Any]) -> str:
        """The cache key of ``request``: a hash of the endpoint's redacted URL and the request.
        Credentials do not change the reply, so they stay out of the key (no file is named
        after a hash of a secret, and a new password does not empty the cache)."""
        ident = {"base_url": self.endpoint.shown_url, **request}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    def chat_json(
        self,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        name: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The model's reply to ``messages`` as a JSON object that validates as ``schema`` (a
        pydantic model, sent as a strict structured-output schema)."""
        request: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "response_format": replies.response_format(schema, name),
        }
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        key = self._key(request)
        cached = self._read_cache(key)
        if cached is not None and not replies.errors(cached, schema):
            self.ledger.hit()
            return cached

        def settle(response: Any) -> None:
            usage = getattr(response, "usage", None)
            if usage is None and not self._warned_usage:
                self._warned_usage = True  # once per endpoint: every reply of such a server lacks it
                log.warning("%s: the reply carries no token usage, so its cost is not counted and no "
                            "budget sees it", self.endpoint.model)  # fmt: skip
            p = int(getattr(usage, "prompt_tokens", 0) or 0)
            c = int(getattr(usage, "completion_tokens", 0) or 0)
            self._longest_reply = max(self._longest_reply or 0, c)
            self.ledger.charge(p, c, self.cost_of(p, c))

        send = lambda api, timeout: api.chat.completions.create(**request, timeout=timeout)  # noqa: E731
        response = self._call(send, self._estimate(messages, max_tokens), settle)
        value = self._parse(response, schema)
        self._write_cache(key, value)
        return value

    def images(self, prompt: str, n: int, size: str, extra: dict[str, Any] | None = None) -> list[bytes]:
        """``n`` generated images for ``prompt`` as image file bytes.

        ``extra`` holds endpoint-specific fields sent in the request body (a guidance scale, a
        seed; ``response_format: b64_json`` for models that answer with URLs by default). Only
        base64 image data is read: an item without it, or that does not decode, is skipped.
        """
        request: dict[str, Any] = {
            "model": self.endpoint.model,
            "prompt": prompt,
            "n": n,
            "size": size,
            "extra_body": extra or {},
        }
        key = self._key({"images": request})
        cached = self._read_cache(key)
        if cached is not None:
            self.ledger.hit()
            return [base64.b64decode(b) for b in cached["images"]]

        def settle(response: Any) -> None:
            got = len(getattr(response, "data", None) or [])
            self.ledger.charge(0, 0, (self.image_price or 0.0) * got, images=got)

        send = lambda api, timeout: api.images.generate(**request, timeout=timeout)  # noqa: E731
        response = self._call(send, (self.image_price or 0.0) * n, settle)
        data = list(getattr(response, "data", None) or [])
        out = []
        for item in data:
            try:
                raw = base64.b64decode(getattr(item, "b64_json", None) or "", validate=True)
                with Image.open(io.BytesIO(raw)) as img:
                    img.verify()
            except Exception:
                continue  # an unreadable image is skipped; the caller counts what came back
            out.append(raw)
        if not out:
            raise FrontierError(f"{self.endpoint.model}: no usable image in the reply")
        self._write_cache(key, {"images": [base64.b64encode(b).decode() for b in out]})
        return out

    def _estimate(self, messages: list[dict[str, Any]], max_tokens: int | None) -> float:
        """USD a chat call will likely cost, held against the budgets while it is in flight: its
        text at four characters a token, each picture at ``IMAGE_TOKENS``, and a reply as long as
        ``max_tokens`` or the longest this endpoint has given (``FIRST_REPLY_TOKENS`` before any)."""
        chars = images = 0
        for message in messages:
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            for part in parts:
                if part.get("type") == "image_url":
                    images += 1
                else:
                    chars += len(str(part.get("text", "")))
        reply = max_tokens or self._longest_reply or FIRST_REPLY_TOKENS
        return self.cost_of(chars // 4 + IMAGE_TOKENS * images, reply)

    def _call(self, send: Callable[[Any, float], Any], estimate: float, settle: Callable[[Any], None]) -> Any:
        """``send(api, timeout)`` once a slot is free and the budgets let it start, its
        ``estimate`` (USD) held against them until ``settle(response)`` has charged it."""
        with self._slots:
            self.ledger.reserve(estimate)  # once a slot is free: a call that waited sees the latest spending
            try:
                response = self._attempts(send)
                settle(response)
                return response
            finally:
                self.ledger.release(estimate)

    def _attempts(self, send: Callable[[Any, float], Any]) -> Any:
        """``send(api, timeout)`` through the openai client, retried on 408, 409, 429, 5xx,
        timeouts and lost connections, within the endpoint's time limit; every failure becomes a
        FrontierError. A wait the time limit cannot hold (a long ``Retry-After``) ends the call at
        once: waiting less and asking again early would only be refused again."""
        import openai

        e, model = self.endpoint, self.endpoint.model
        stop_at = time.monotonic() + e.time_limit
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None  # the server's, when it names one
            try:
                return send(self._openai(), min(e.timeout, max(stop_at - time.monotonic(), 1e-3)))
            except openai.APIStatusError as err:
                failure, retry = f"HTTP {err.status_code}", retryable(err.response)
                wait = retry_after(err.response.headers)
            except openai.APITimeoutError:
                failure, retry = "timed out", True
            except openai.APIConnectionError:
                failure, retry = "endpoint unreachable", True
            except (openai.APIError, ValueError) as err:  # e.g. a body that is not JSON
                raise FrontierError(f"{model}: unusable response ({type(err).__name__})") from None
            except FrontierError:
                raise
            except Exception as err:  # anything else the client raises costs this call, not the round
                raise FrontierError(f"{model}: unexpected {self._describe(err)}") from None
            tried = f" after {attempt} attempts" if attempt > 1 else ""
            if not retry or attempt > e.max_retries:
                raise FrontierError(f"{model}: {failure}{tried}")
            asked = wait is not None
            if wait is None:
                wait = backoff(attempt)
            left = stop_at - time.monotonic()
            if wait >= left:
                because = f"the server asks to wait {wait:.1f}s" if asked else f"a {wait:.1f}s backoff"
                raise FrontierError(
                    f"{model}: {failure}{tried}; {because}, past the call's time limit of "
                    f"{e.time_limit:.1f}s ({max(left, 0.0):.1f}s left)"
                )
            time.sleep(wait)

    def _describe(self, err: Exception) -> str:
        """``Type: message`` of an unexpected error, without the message when the endpoint's URL
        holds a credential: a client that cannot parse such a URL quotes pieces of it (a password
        cut at an unescaped "/" shows up as an invalid port) that no URL redaction can find."""
        if self.endpoint.base_url and self.endpoint.shown_url != self.endpoint.base_url:
            return f"{type(err).__name__} (message withheld: the endpoint URL holds a credential)"
        return f"{type(err).__name__}: {str(err)[:200]}"

    def _parse(self, response: Any, schema: type[BaseModel]) -> dict[str, Any]:
        model = self.endpoint.model
        if not getattr(response, "choices", None):
            raise FrontierError(f"{model}: the reply has no choices")
        message = response.choices[0].message
        if getattr(message, "refusal", None):
            raise FrontierError(f"{model}: refused: {str(message.refusal)[:200]}")
        content = message.content
        if not content:
            raise FrontierError(f"{model}: empty reply")
        if len(content) > self.max_reply_chars:
            raise FrontierError(f"{model}: reply longer than {self.max_reply_chars} characters")
        try:
            value = json.loads(content)
        except json.JSONDecodeError as err:
            raise FrontierError(f"{model}: reply is not JSON ({err.msg} at {err.pos})") from None
        except (ValueError, RecursionError) as err:  # a number too long to convert, nesting too deep
            raise FrontierError(f"{model}: reply cannot be read: {type(err).__name__}") from None
        if problems := replies.errors(value, schema):  # the call fails, its caller counts it
            log.warning("%s", failure := FrontierError(f"{model}: reply breaks the schema: "
                                                       f"{'; '.join(problems[:3])} ({len(problems)} in all)"))  # fmt: skip
            raise failure
        return replies.validated(value, schema)

    def _read_cache(self, key: str) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / key[:2] / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is a miss, and the next good reply replaces it

    def _write_cache(self, key: str, value: dict[str, Any]) -> None:
        if self.cache_dir is None:
            return
        folder = self.cache_dir / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"  # runs may share the cache
        tmp.write_text(json.dumps(value))
        os.replace(tmp, folder / f"{key}.json")
