"""When a failed request is worth another attempt, and how long to wait before it.

The same policy as the ``openai`` client's (408, 409, 429 and 5xx are retried unless the server's
``x-should-retry`` header says otherwise; the server's ``retry-after-ms`` / ``Retry-After`` wait,
else exponential backoff with jitter), taken out of it so that ``FrontierClient`` can count every
wait against the call's time limit.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

RETRY_STATUS = (408, 409, 429)  # and every 5xx
BACKOFF_START, BACKOFF_MAX = 0.5, 8.0  # seconds, doubled per retry
_JITTER = random.Random()  # its own generator: retries must not move the seeded global one


def retryable(response: Any) -> bool:
    """Whether an error response (with ``status_code`` and ``headers``) is worth another attempt."""
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRY_STATUS or response.status_code >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait before the next attempt (``retry-after-ms``, then
    ``retry-after`` as seconds or as an HTTP date); None when it names no usable wait."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
        if not math.isnan(seconds):
            return max(seconds, 0.0)  # a date already past: no wait; infinity: never
    return None


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) when the server names
    no wait: 0.5 s doubled per attempt, at most 8 s, less up to a quarter at random."""
    return min(BACKOFF_START * 2.0 ** (attempt - 1), BACKOFF_MAX) * (1 - 0.25 * _JITTER.random())
