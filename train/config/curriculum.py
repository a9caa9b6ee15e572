"""Config section ``curriculum``: rounds, generators, filters, the pool's mix and the frontier."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from train.config.fields import Section, require

GENERATORS = ("proposals", "world", "same_image", "replay")
"""The generators whose shares ``curriculum.generators`` sets."""


@dataclass
class MixConfig(Section):
    SECTION = "curriculum.mix"

    ratio: float = 0.3
    """Share of each batch drawn from the curriculum pool (once it has examples)."""
    ratio_end: float | None = None
    """If set, the share moves linearly from ``ratio`` to this value over ``ramp_steps``."""
    ramp_steps: int = 0
    """Steps of the linear move from ``ratio`` to ``ratio_end``."""

    def check(self) -> None:
        require(0.0 <= self.ratio <= 1.0, "ratio", "must lie in [0, 1]")
        require(self.ratio_end is None or 0.0 <= self.ratio_end <= 1.0, "ratio_end", "must lie in [0, 1]")
        require(self.ramp_steps >= 0, "ramp_steps", "must be >= 0")
        require(self.ratio_end is None or self.ramp_steps > 0, "ramp_steps",
                "must be positive when ratio_end is set (the ratio moves over these steps)")  # fmt: skip


@dataclass
class EndpointConfig(Section):
    SECTION = "endpoint"

    model: str = ""
    """Model name the endpoint serves."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (Azure, vLLM, SGLang, a gateway); null: OpenAI itself."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (the key itself never goes in a config)."""
    timeout: float = 60.0
    """Seconds per attempt before it counts as timed out; every attempt and every wait between
    them (backoff, a server's Retry-After) ends within ``timeout`` x (``max_retries`` + 1)."""
    max_retries: int = 3
    """Retries with backoff on 429, 5xx and timeouts."""

    def check(self) -> None:
        require(bool(self.model.strip()), "model", "must name the model the endpoint serves")
        require(self.base_url is None or self.base_url.startswith(("http://", "https://")), "base_url",
                "must be an http:// or https:// URL")  # fmt: skip
        require(bool(self.api_key_env.strip()), "api_key_env", "must name an environment variable")
        require(self.timeout > 0, "timeout", "must be positive")
        require(self.max_retries >= 0, "max_retries", "must be >= 0")


@dataclass
class FrontierConfig(EndpointConfig):
    """The analyst's endpoint (the fields of ``EndpointConfig``) and everything else frontier."""

    SECTION = "curriculum.frontier"

    model: str = "gpt-4o"
    """The analyst: model name the endpoint serves."""
    preset: Literal["analyze", "lrf", "cads"] = "analyze"
    """How failures become proposals: ``analyze`` (one diagnosis and proposals per failure group),
    ``lrf`` (each failure described, its error hypothesised, pairs proposed on the failed or a
    generated image; one judge scores triples 1-3, only 3s kept), ``cads`` (a committee of
    generator models applies four strategies to each group; a judge committee solves each
    candidate blind and the consensus keeps it)."""
    prompt: str | None = None
    """Analysis prompt template (``curriculum/frontier/prompts/<name>.md``); null: the preset's."""
    committee: list[EndpointConfig] = field(default_factory=list)
    """``cads``: the generator models (empty: the analyst alone)."""
    judges: list[EndpointConfig] = field(default_factory=list)
    """The judge panel; empty: no judges with ``analyze``, the analyst as the one judge with
    ``lrf`` and ``cads``."""
    judge_agree: int = 0
    """Judges that must agree with a candidate (``lrf``: score it 3) to keep it; 0: a majority."""
    judge_scope: Literal["all", "unverified"] = "all"
    """Candidates the panel judges: ``all``, or only those whose answer no program verified."""
    image_model: EndpointConfig | None = None
    """Image-generation endpoint (the images API) for ``generated`` proposals; null: none are
    asked for. Generated images are judged, so a panel must exist (a preset's or ``judges``)."""
    image_size: str = "1024x1024"
    """Size requested from the image endpoint."""
    image_settings: list[dict[str, str | int | float]] = field(default_factory=lambda: [{}])
    """Extra request fields per variant setting (e.g. ``{guidance_scale: 3.5}`` on a diffusion
    server, ``{response_format: b64_json}`` for models that answer with URLs)."""
    images_per_setting: int = 2
    """Images generated per setting: each description yields settings x this many variants."""
    image_price: float | None = None
    """USD per generated image, for cost accounting (0: a free server); null: unknown, which a
    run with a budget refuses."""
    exemplars: int = 4
    """Accepted examples of the last round that the student still failed, shown in each request
    of the next round (0: none)."""
    rationales: bool = False
    """Ask proposals and judges for reasoning; keep a candidate's rationale only when its final
    answer matches the verified answer (STaR), and train on rationale then answer."""
    concurrency: int = 4
    """Requests in flight at once, per stage of a round (analysis, images, judging)."""
    run_budget: float = 0.0
    """Hard spending limit for the run in USD, over every endpoint (0: none); once spent, calls
    not yet started are refused (those in flight, at most ``concurrency``, still finish)."""
    round_budget: float = 0.0
    """Hard spending limit per round in USD (0: none)."""
    round_seconds: float = 900.0
    """Time limit of a round's API work: no new call starts after it (0: none). A round then
    ends within ``timeout`` x (``max_retries`` + 1) more, so a slow endpoint cannot stall training."""
    prices: dict[str, list[float]] = field(default_factory=dict)
    """USD per million [input, output] tokens, per model name, for cost accounting. With a budget
    every endpoint's model needs one (``[0, 0]`` for a free server); without, unpriced calls are
    named in a warning and counted at $0."""
    cache: str | None = "~/.cache/lessonloop/frontier"
    """Folder of replies kept on disk and keyed by the request, so a resumed or repeated run does
    not pay twice; null: no cache."""
    representatives: int = 3
    """Failed items shown per failure group."""

    def check(self) -> None:
        super().check()
        panel = len(self.judges) or (self.preset != "analyze")
        require(0 <= self.judge_agree <= panel, "judge_agree", "must lie between 0 and the number of judges")
        require(self.image_model is None or bool(self.judges) or self.preset != "analyze", "image_model",
                "needs a judge panel: set curriculum.frontier.judges")  # fmt: skip
        require(self.image_size == "auto" or re.fullmatch(r"\d+x\d+", self.image_size) is not None,
                "image_size", "must be WIDTHxHEIGHT (e.g. 1024x1024) or auto")  # fmt: skip
        require(bool(self.image_settings), "image_settings", "must hold at least one setting ({} for none)")
        require(self.images_per_setting >= 1, "images_per_setting", "must be >= 1")
        require(self.image_price is None or self.image_price >= 0, "image_price", "must be >= 0")
        require(self.exemplars >= 0, "exemplars", "must be >= 0")
        require(self.concurrency >= 1, "concurrency", "must be >= 1")
        require(self.run_budget >= 0, "run_budget", "must be >= 0 (0: none)")
        require(self.round_budget >= 0, "round_budget", "must be >= 0 (0: none)")
        require(self.round_seconds >= 0, "round_seconds", "must be >= 0 (0: none)")
        require(self.representatives >= 1, "representatives", "must be >= 1")
        for model, price in self.prices.items():
            require(len(price) == 2 and all(math.isfinite(p) and p >= 0 for p in price), f"prices.{model}",
                    f"must be [input, output] USD per million tokens, two numbers >= 0, got {price}")  # fmt: skip


@dataclass
class CurriculumConfig(Section):
    SECTION = "curriculum"

    enabled: bool = False
    """Run curriculum rounds during training."""
    mode: Literal["sync", "async"] = "sync"
    """``sync`` pauses training for each round; ``async`` analyses and generates in a background
    thread while training goes on, and injects the round ``max_staleness`` steps later."""
    every: int = 100
    """Steps between rounds (the first round runs at step ``every``)."""
    source: Literal["diagnosed", "uniform", "real", "hard_real", "rebalanced"] = "diagnosed"
    """Where a round's examples come from: ``diagnosed`` (the curriculum: failures analysed into
    weaknesses, generators aimed at each); the baselines it is compared with: ``uniform`` (every
    skill alike, no failure analysis: the world generator with uniform specs, or on external data
    reserve items drawn evenly over the skill column's skills), ``real`` (new items of the real
    data's own distribution, no student check), ``hard_real`` (train items the student check
    keeps), ``rebalanced`` (new real items in the skill mix of ``skill_quota``, no student check).
    On external data (``data.source: hf``) ``uniform``, ``real`` and ``rebalanced`` draw from
    ``data.hf.reserve``, and ``uniform`` and ``rebalanced`` need ``data.hf.skill_column``."""
    quota: list[int] = field(default_factory=list)
    """Most examples kept per round, the k-th entry for round k and 0 past the end (a random
    subset of the survivors); empty: no limit. ``lessonloop compare`` sets it from the targeted
    arm so that every arm adds as many examples."""
    skill_quota: list[dict[str, int]] = field(default_factory=list)
    """``source: rebalanced``: examples per skill for each round, the k-th mapping for round k
    (nothing past the end). A round adds that many new real items of each skill (the world's
    natural distribution of that skill, or reserve items with that skill), and the rest of its
    ``quota`` from the data's own distribution. ``lessonloop compare`` sets it to what the targeted
    arm kept of each skill, round by round."""
    max_staleness: int = 20
    """``async``: steps between a round's probe evaluation and the injection of its examples;
    the loop waits at that step if the worker is not done. A fixed lag keeps runs reproducible."""
    snapshot: bool = True
    """``async``: the probe and the student check also run in the background thread, on a frozen
    copy of the model taken at the round's step (one more copy of the weights while the round is in
    flight), so training does not wait for the model's answers either. Applies where the round
    draws nothing at random (greedy probe, ``student_check`` not ``band``), in a single process
    without DeepSpeed; elsewhere, or when false, they run in the loop at the probe and injection
    steps."""
    probe_max: int = 0
    """Probe items evaluated per round (0: the whole probe split)."""
    probe_samples: int = 0
    """Sampled answers per probe item (0: one greedy answer). With samples, an item fails when its
    pass rate is at most ``failure_pass_rate`` (GRPO: all of its rollouts fail)."""
    failure_pass_rate: float | Literal["prior"] = 0.0
    """With ``probe_samples``: the pass rate at or below which a probe item counts as failed.
    ``prior``: per skill, the share of its most common answer in the train data (what answering
    blind scores): an item fails when the student does no better than that. With ``0`` an item
    of a yes/no skill almost never fails (every one of its samples would have to miss)."""
    max_failures: int = 64
    """Failures analysed per round: new ones first, then a random sample of repeated ones."""
    analyzer: Literal["offline", "openai"] = "offline"
    """Who diagnoses the failures: ``offline`` groups them by skill, parameters and confusion;
    ``openai`` also sends each group to the model of ``curriculum.frontier``."""
    max_weaknesses: int = 6
    """Weaknesses kept per round, strongest first."""
    spread_skills: bool = False
    """Offline analyzer: keep the strongest weakness of every failing skill before a second one
    of any skill (strongest first otherwise), so that no skill's slices take every place."""
    budget: int = 192
    """Candidates generated per round, shared among weaknesses in proportion to their failure rate."""
    generators: dict[str, float] = field(
        default_factory=lambda: {"proposals": 0.5, "world": 0.3, "same_image": 0.125, "replay": 0.075}
    )
    """Share of each weakness's budget per generator (``proposals`` from a frontier analyzer,
    ``world``, ``same_image``, ``replay``); a generator that cannot serve a weakness (the offline
    analyzer makes no proposals) passes its share to the others."""
    student_check: Literal["fails", "band", "off"] = "fails"
    """Keep candidates the current model still gets wrong (``fails``), whose sampled pass rate
    lies in ``band`` (``band``), or all of them (``off``)."""
    band: list[float] = field(default_factory=lambda: [0.0, 0.5])
    """Pass-rate band [low, high] for ``student_check: band``."""
    band_samples: int = 4
    """Sampled answers per candidate for ``student_check: band``."""
    near_duplicate: float = 0.8
    """Word-bigram Jaccard similarity at and above which two questions are near-duplicates."""
    eval_sets: list[str] = field(default_factory=list)
    """Extra evaluation sets to keep out of training (JSON/JSONL files with a ``question`` field
    and optionally an ``image`` path): no pool example may match one of their items."""
    allow_unverified: bool = False
    """Let examples whose answer no program computed and no judge panel accepted train (answers a
    frontier model wrote about data without a scene). Off: they are dropped, and a frontier
    analyzer on such data needs ``curriculum.frontier.judges`` (or the ``lrf`` / ``cads`` preset)."""
    pool_cap: int = 2000
    """Most live examples in the pool; the oldest retire first."""
    retire_check: int = 64
    """Pool examples re-asked per round; those the model now answers correctly retire (mastered)."""
    mix: MixConfig = field(default_factory=MixConfig)
    frontier: FrontierConfig = field(default_factory=FrontierConfig)

    def check(self) -> None:
        require(self.every > 0, "every", "must be positive")
        require(self.max_staleness >= 0, "max_staleness", "must be >= 0")
        require(self.mode == "sync" or self.max_staleness < self.every, "max_staleness",
                "must be below curriculum.every (one round in flight at a time)")  # fmt: skip
        require(all(q >= 0 for q in self.quota), "quota", "entries must be >= 0")
        require(all(n >= 0 for mix in self.skill_quota for n in mix.values()), "skill_quota",
                "counts must be >= 0")  # fmt: skip
        require(self.source != "rebalanced" or bool(self.skill_quota), "skill_quota",
                "must name each round's examples per skill with curriculum.source: rebalanced")  # fmt: skip
        for k, mix in enumerate(self.skill_quota, 1):
            cap = self.quota[k - 1] if k <= len(self.quota) else 0
            require(not self.quota or sum(mix.values()) <= cap, "skill_quota",
                    f"round {k} asks for {sum(mix.values())} examples, more than curriculum.quota keeps ({cap})")  # fmt: skip
        require(self.probe_max >= 0, "probe_max", "must be >= 0 (0: the whole probe split)")
        require(self.probe_samples >= 0, "probe_samples", "must be >= 0")
        require(self.failure_pass_rate == "prior" or 0.0 <= self.failure_pass_rate < 1.0,  # type: ignore[operator]
                "failure_pass_rate", "must lie in [0, 1) or be 'prior'")  # fmt: skip
        require(self.max_failures >= 1, "max_failures", "must be >= 1")
        require(self.max_weaknesses >= 1, "max_weaknesses", "must be >= 1")
        require(self.budget >= 0, "budget", "must be >= 0")
        require(set(self.generators) <= set(GENERATORS), "generators",
                f"keys must be among {', '.join(GENERATORS)}")  # fmt: skip
        require(all(math.isfinite(v) and v >= 0 for v in self.generators.values())
                and sum(self.generators.values()) > 0, "generators",
                "shares must be >= 0 with a positive sum")  # fmt: skip
        require(len(self.band) == 2 and 0.0 <= self.band[0] <= self.band[1] <= 1.0, "band",
                "must be [low, high] with 0 <= low <= high <= 1")  # fmt: skip
        require(self.band_samples >= 1, "band_samples", "must be >= 1")
        require(0.0 < self.near_duplicate <= 1.0, "near_duplicate",
                "must lie in (0, 1]: a Jaccard similarity (above 1 nothing would ever match)")  # fmt: skip
        require(self.pool_cap >= 0, "pool_cap", "must be >= 0 (0: no cap)")
        require(self.retire_check >= 0, "retire_check", "must be >= 0")
