"""Settings of the simulated frontier: how often it errs, how slow it is, how much it writes.

Every rate is a probability in [0, 1], drawn from the seed and the request (see ``teacher.py``), so
the same seed and the same requests get the same replies. Content mistakes are the model's:
a wrong answer in a proposal, a judge that misreads the item or votes without looking, a picture
drawn wrong. Transport faults are the endpoint's: a reply that breaks the schema, a refusal, a
5xx, a 429 with ``Retry-After``; they are drawn per attempt, so a retried request can succeed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

RATES = (
    "proposal_error",
    "judge_error",
    "judge_lazy",
    "correlation",
    "slip_share",
    "image_error",
    "off_schema",
    "refusal",
    "server_error",
    "rate_limit",
)


@dataclass
class SimConfig:
    seed: int = 0
    """Seeds every draw; with the same requests the replies are the same."""
    proposal_error: float = 0.0
    """Share of proposals whose answer is wrong (the model misread its own item)."""
    judge_error: float = 0.0
    """Share of judge votes on an item that misread it: a wrong answer (blind judges), or a score
    that follows the misreading (scoring judges)."""
    judge_lazy: float = 0.0
    """Share of judge votes cast without looking: a scoring judge gives 3, a blind judge guesses
    a plausible answer and says the picture shows what is needed."""
    correlation: float = 0.0
    """How shared the mistakes are: each model's mistake on an item is, with this probability,
    the one every model makes there (the same items misread, the same wrong answer); otherwise
    its own. 0: independent models; 1: one model in several names."""
    slip_share: float = 0.25
    """Share of wrong proposal answers that are slips: the rationale reasons to the right answer
    and the answer field states another (the rationale check can catch these, and so can the
    model judging its own item). The rest are misreadings, which the model keeps when it judges."""
    image_error: float = 0.0
    """Share of generated pictures that do not show what the description says (an object left
    out or recoloured, a bar at another height)."""
    off_schema: float = 0.0
    """Share of attempts answered with a reply that breaks the requested schema or is not JSON."""
    refusal: float = 0.0
    """Share of attempts answered with a refusal."""
    server_error: float = 0.0
    """Share of attempts answered with HTTP 500."""
    rate_limit: float = 0.0
    """Share of attempts answered with HTTP 429 and a ``Retry-After`` of ``retry_after`` seconds."""
    retry_after: float = 1.0
    """Seconds a 429 asks the client to wait."""
    rpm: int = 0
    """Requests per minute each model accepts (0: no limit); past it a 429 names the wait until a
    request leaves the window. Counted on the wall clock, so which call it hits is not seeded."""
    latency: float = 0.0
    """Median seconds before a reply starts (log-normal around it)."""
    latency_sigma: float = 0.5
    """Shape of the log-normal latency (0: always ``latency``)."""
    tokens_per_second: float = 0.0
    """Output speed: each completion token adds 1/this seconds (0: none)."""
    proposals: int = 4
    """Proposals per analysis request (the schema's maximum caps it)."""
    image_detail: str = "high"
    """How image inputs are counted as tokens: ``high`` (85 + 170 per 512-pixel tile, as OpenAI
    counts them) or ``low`` (85 each)."""

    def __post_init__(self) -> None:
        for name in RATES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"sim.{name} = {value!r}: must be a probability in [0, 1]")
        for name in ("retry_after", "latency", "latency_sigma", "tokens_per_second"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"sim.{name} = {value!r}: must be a finite number >= 0")
        if not isinstance(self.rpm, int) or self.rpm < 0:
            raise ValueError(f"sim.rpm = {self.rpm!r}: must be an integer >= 0 (0: no limit)")
        if not isinstance(self.proposals, int) or not 1 <= self.proposals <= 12:
            raise ValueError(f"sim.proposals = {self.proposals!r}: must be an integer in [1, 12]")
        if self.image_detail not in ("high", "low"):
            raise ValueError(f"sim.image_detail = {self.image_detail!r}: must be high or low")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Settings from a mapping, naming any key that is not a setting."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown simulator setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
