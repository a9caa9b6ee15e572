"""One call to a frontier model, made safe to put inside a training run.

``FrontierClient.chat_json`` sends a chat request with a JSON schema (structured outputs) to any
OpenAI-compatible endpoint through the official ``openai`` client, and returns the parsed,
schema-checked object, or raises ``FrontierError`` with a one-line reason: the endpoint is down or
slow (after the client's retries with backoff on 429, 5xx and timeouts), the reply is empty, a
refusal, not JSON, too long, or off-schema. Around each call:

- an on-disk cache keyed by the request (model, endpoint, messages, schema, sampling), so a resumed
  or repeated run does not pay twice; only replies that passed the checks are cached;
- a ledger of tokens and cost (a price table per model, USD per million tokens) with hard budgets
  per run and per round: a call that would start over budget raises ``BudgetExceeded``;
- a concurrency limit shared by every thread that uses the client.

``FrontierClient.images`` does the same for the images API (``/images/generations``): the PNG
bytes of each variant come back decoded and checked, the cost is the endpoint's price per image.

The API key is read from the environment variable the endpoint names, at call time, and is never
stored on the object, written to the cache, or put in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.frontier.schema import errors as schema_errors


class FrontierError(RuntimeError):
    """A call that produced no usable answer; the message says why in one line."""


class BudgetExceeded(FrontierError):
    """The run's or the round's spending limit is reached."""


@dataclass
class Endpoint:
    model: str
    base_url: str | None = None  # None: the official OpenAI endpoint
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 3


FIELDS = ("calls", "cached", "images", "prompt_tokens", "completion_tokens", "cost")


class Ledger:
    """Tokens, images and cost spent, for the run and for the current round, with hard limits
    (0: none): a spending budget per run and per round, and a deadline per round in seconds after
    which no new call starts. Thread-safe; the run totals go into checkpoints."""

    def __init__(
        self, run_budget: float = 0.0, round_budget: float = 0.0, round_seconds: float = 0.0
    ) -> None:
        self.run_budget, self.round_budget, self.round_seconds = run_budget, round_budget, round_seconds
        self.totals = dict.fromkeys(FIELDS, 0.0)
        self.round = dict.fromkeys(FIELDS, 0.0)
        self._deadline: float | None = None
        self._lock = threading.Lock()

    @property
    def cost(self) -> float:
        return self.totals["cost"]

    @property
    def round_cost(self) -> float:
        return self.round["cost"]

    @property
    def images(self) -> int:
        return int(self.totals["images"])

    def start_round(self) -> None:
        with self._lock:
            self.round = dict.fromkeys(FIELDS, 0.0)
            self._deadline = time.monotonic() + self.round_seconds if self.round_seconds else None

    def check(self) -> None:
        with self._lock:
            if self.run_budget and self.totals["cost"] >= self.run_budget:
                raise BudgetExceeded(
                    f"run budget of ${self.run_budget:.2f} spent (${self.totals['cost']:.4f})"
                )
            if self.round_budget and self.round["cost"] >= self.round_budget:
                raise BudgetExceeded(
                    f"round budget of ${self.round_budget:.2f} spent (${self.round['cost']:.4f})"
                )
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise BudgetExceeded(f"round time limit of {self.round_seconds:.0f}s passed")

    def _add(self, **amounts: float) -> None:
        with self._lock:
            for key, value in amounts.items():
                self.totals[key] += value
                self.round[key] += value

    def charge(self, prompt_tokens: int, completion_tokens: int, cost: float, images: int = 0) -> None:
        self._add(
            calls=1,
            images=images,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
        )

    def hit(self) -> None:
        self._add(cached=1)

    @staticmethod
    def _view(counts: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 6) if k == "cost" else int(v) for k, v in counts.items()}

    def to_dict(self) -> dict[str, float]:
        """The run totals."""
        with self._lock:
            return self._view(self.totals)

    def round_dict(self) -> dict[str, float]:
        with self._lock:
            return self._view(self.round)

    def state_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self.totals)

    def load_state_dict(self, state: dict[str, float]) -> None:
        with self._lock:
            self.totals = {k: float(state.get(k, 0.0)) for k in FIELDS}


class FrontierClient:
    def __init__(
        self,
        endpoint: Endpoint,
        cache_dir: str | Path | None = None,
        prices: dict[str, list[float]] | None = None,
        image_price: float = 0.0,
        ledger: Ledger | None = None,
        concurrency: int = 4,
        max_reply_chars: int = 50_000,
    ) -> None:
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.prices = prices or {}
        self.image_price = image_price
        self.ledger = ledger or Ledger()
        self.max_reply_chars = max_reply_chars
        self._slots = threading.Semaphore(max(1, concurrency))
        self._client: Any = None
        self._client_lock = threading.Lock()

    def _openai(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import openai

                key = os.environ.get(self.endpoint.api_key_env)
                if not key:
                    raise FrontierError(f"environment variable {self.endpoint.api_key_env} is not set")
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=self.endpoint.base_url,
                    timeout=self.endpoint.timeout,
                    max_retries=self.endpoint.max_retries,
                )
            return self._client

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self.prices.get(self.endpoint.model, [0.0, 0.0])
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6

    def _key(self, request: dict[str, Any]) -> str:
        ident = {"base_url": self.endpoint.base_url, **request}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    def chat_json(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        name: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The model's reply to ``messages`` as a JSON object that conforms to ``schema``."""
        request: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            },
        }
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        key = self._key(request)
        cached = self._read_cache(key)
        if cached is not None:
            self.ledger.hit()
            return cached
        response = self._call(lambda api: api.chat.completions.create(**request))
        usage = getattr(response, "usage", None)
        p = int(getattr(usage, "prompt_tokens", 0) or 0)
        c = int(getattr(usage, "completion_tokens", 0) or 0)
        self.ledger.charge(p, c, self.cost_of(p, c))
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
        response = self._call(lambda api: api.images.generate(**request))
        data = list(getattr(response, "data", None) or [])
        self.ledger.charge(0, 0, self.image_price * len(data), images=len(data))
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

    def _call(self, send: Any) -> Any:
        """One request through the openai client, every failure turned into a FrontierError."""
        import openai

        model = self.endpoint.model
        with self._slots:
            self.ledger.check()  # once a slot is free: a call that waited sees the latest spending
            try:
                return send(self._openai())
            except openai.APITimeoutError:
                raise FrontierError(f"{model}: timed out after retries") from None
            except openai.APIStatusError as err:
                raise FrontierError(f"{model}: HTTP {err.status_code} after retries") from None
            except openai.APIConnectionError:
                raise FrontierError(f"{model}: endpoint unreachable") from None
            except (openai.APIError, ValueError) as err:  # e.g. a body that is not JSON
                raise FrontierError(f"{model}: unusable response ({type(err).__name__})") from None
            except FrontierError:
                raise
            except Exception as err:  # anything else the client raises costs this call, not the round
                raise FrontierError(f"{model}: unexpected {type(err).__name__}: {str(err)[:200]}") from None

    def _parse(self, response: Any, schema: dict[str, Any]) -> dict[str, Any]:
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
        problems = schema_errors(value, schema)
        if problems:
            raise FrontierError(f"{model}: reply breaks the schema: {'; '.join(problems[:3])}")
        return value

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
