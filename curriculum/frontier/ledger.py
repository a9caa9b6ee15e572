"""What frontier calls may spend: the ledger of tokens, images and cost with its hard budgets,
and the errors a call ends with (``curriculum.frontier.client`` makes the calls)."""

from __future__ import annotations

import math
import threading
import time

from curriculum.secrets import redact_text

FIELDS = ("calls", "cached", "images", "prompt_tokens", "completion_tokens", "cost")


class FrontierError(RuntimeError):
    """A call that produced no usable answer; the message says why in one line. The message is
    redacted (``curriculum.secrets.redact_text``) whoever builds it, since it ends up in round
    records and logs."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(str(message)))


class BudgetExceeded(FrontierError):
    """The run's or the round's spending limit is reached."""


def check_limit(name: str, value: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0  # fmt: skip
    if not ok:
        raise ValueError(f"{name} = {value!r}: must be a finite number >= 0 (0: no limit)")
    return float(value)


class Ledger:
    """Tokens, images and cost spent, for the run and for the current round, with hard limits
    (0: none): a spending budget per run and per round, and a deadline per round in seconds after
    which no new call starts. Thread-safe; the run totals go into checkpoints."""

    def __init__(
        self, run_budget: float = 0.0, round_budget: float = 0.0, round_seconds: float = 0.0
    ) -> None:
        # A NaN limit would never bind and a negative one would refuse every call: both refused.
        run_budget, round_budget = (
            check_limit("run_budget", run_budget),
            check_limit("round_budget", round_budget),
        )
        round_seconds = check_limit("round_seconds", round_seconds)
        self.run_budget, self.round_budget, self.round_seconds = run_budget, round_budget, round_seconds
        self.totals = dict.fromkeys(FIELDS, 0.0)
        self.round = dict.fromkeys(FIELDS, 0.0)
        self.held = 0.0  # USD: the estimated cost of the calls in flight
        self.in_flight = 0  # how many: the sum of floats above may not come back to exactly 0
        self._deadline: float | None = None
        self._lock = threading.Condition()  # a lock that calls waiting for the budget wait on

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

    def reserve(self, estimate: float) -> None:
        """Let a call start, its estimate held against the budgets until ``release``; raise
        ``BudgetExceeded`` if what is spent plus its estimate would pass a budget, or the round's time
        is up. A call that fits only once the calls in flight are charged waits for them."""
        with self._lock:
            while True:
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise BudgetExceeded(f"round time limit of {self.round_seconds:.0f}s passed")
                need = (f", ${self.held:.4f} in flight" if self.held else "") + f" and ${estimate:.4f} for this call"  # fmt: skip
                over = [(name, limit, spent) for name, limit, spent in (("run", self.run_budget, self.totals["cost"]),
                        ("round", self.round_budget, self.round["cost"])) if limit and spent + self.held + estimate > limit]  # fmt: skip
                if not over:
                    break
                never = [o for o in over if o[2] + estimate > o[1]]  # would not fit with nothing in flight
                if never or not self.in_flight:
                    name, limit, spent = (never or over)[0]
                    raise BudgetExceeded(f"{name} budget of ${limit:.2f} spent (${spent:.4f}{need})")
                self._lock.wait(timeout=1.0)
            self.held += estimate
            self.in_flight += 1

    def release(self, estimate: float) -> None:
        """A call is over (charged or failed): its estimate no longer holds the budget."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            self.held = max(0.0, self.held - estimate) if self.in_flight else 0.0
            self._lock.notify_all()

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
