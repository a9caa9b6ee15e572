"""The frontier parts of a curriculum, built from its config: analyst, judges, image model.

Every client shares one ledger, so the run and round budgets cover all endpoints together, and one
reply cache. Presets fill in what the config leaves out: ``lrf`` judges by score with the analyst
as its one judge, ``cads`` solves blind with the analyst as judge unless ``judges`` names a panel.

Building also checks, before training starts, what would otherwise only show as one failed or
uncounted round after another: every endpoint the frontier will call has its key variable set
and a URL the client can parse, every price entry is two finite non-negative numbers, and, when
a budget is set, every endpoint has a price (a model without one would cost nothing against it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from curriculum.analyze import OfflineAnalyzer
from curriculum.frontier.analyzer import FrontierAnalyzer
from curriculum.frontier.client import Endpoint, FrontierClient, Ledger, token_price
from curriculum.frontier.images import ImageMaker
from curriculum.frontier.judge import JudgePanel

log = logging.getLogger(__name__)
PREFIX = "curriculum.frontier"  # where the config that ``build_frontier`` reads sits


class FrontierSetupError(ValueError):
    """A frontier config that cannot work as written, refused when the frontier is built; the
    message names every culprit, in one line."""


@dataclass
class Frontier:
    analyzer: FrontierAnalyzer
    judges: JudgePanel | None
    images: ImageMaker | None
    ledger: Ledger


def build_frontier(
    fc: Any, grouper: OfflineAnalyzer, rendered: bool = True, skills: list[str] | None = None
) -> Frontier:
    """``fc``: a ``train.config.FrontierConfig`` (read by attribute only). ``rendered``: the data
    comes from the built-in world, so proposals may be world specs (of ``skills``; None: all).
    Raises ``FrontierSetupError`` for a config that cannot work (see ``check_endpoints``)."""
    try:
        for model in fc.prices:
            token_price(fc.prices, model)
        ledger = Ledger(fc.run_budget, fc.round_budget, fc.round_seconds)
        cache = Path(fc.cache).expanduser() if fc.cache else None

        def client(e: Any, image_price: float | None = None) -> FrontierClient:
            endpoint = Endpoint(e.model, e.base_url, e.api_key_env, e.timeout, e.max_retries)
            return FrontierClient(endpoint, cache, fc.prices, image_price, ledger, fc.concurrency)

        analyst = client(fc)
        judges = [client(e) for e in fc.judges] or ([analyst] if fc.preset != "analyze" else [])
        committee = [client(e) for e in fc.committee] if fc.preset == "cads" else []
        panel = None
        if judges:
            mode = "score" if fc.preset == "lrf" else "answer"
            panel = JudgePanel(judges, fc.judge_agree, mode, fc.judge_scope, workers=fc.concurrency)
        images = None
        if fc.image_model is not None and panel is not None:
            images = ImageMaker(client(fc.image_model, fc.image_price), fc.image_settings,
                                fc.images_per_setting, fc.image_size)  # fmt: skip
    except ValueError as err:
        raise FrontierSetupError(f"{PREFIX}.{err}") from None  # each names its field
    used = [(PREFIX, analyst)]
    used += [(f"{PREFIX}.committee[{i}]", c) for i, c in enumerate(committee)]
    used += [(f"{PREFIX}.judges[{i}]", c) for i, c in enumerate(judges) if c is not analyst]
    if images is not None:
        used.append((f"{PREFIX}.image_model", images.client))
    check_endpoints(used, budget=bool(fc.run_budget or fc.round_budget))
    if panel is not None:
        warn_self_judging(committee or [analyst], judges)
    kinds = (
        ["same_image"] + (["rendered"] if rendered else []) + (["generated"] if images is not None else [])
    )
    analyzer = FrontierAnalyzer(
        analyst,
        grouper,
        fc.representatives,
        fc.preset,
        fc.prompt,
        committee=committee or None,
        kinds=kinds,
        rationales=fc.rationales,
        skills=skills,
        exemplars=fc.exemplars,
        workers=fc.concurrency,
    )
    return Frontier(analyzer, panel, images, ledger)


def warn_self_judging(writers: list[FrontierClient], judges: list[FrontierClient]) -> None:
    """Warn when a model judges the proposals it writes (``lrf`` and ``cads`` name the analyst as
    their judge unless ``judges`` is set): a model that misreads a picture misreads it again when
    it checks its own answer, so its vote stops slips but not its misreadings. Against the
    simulated frontier (``benchmarks/frontier_sim.py``, part ``lrf_judge``, teacher error 0.2) the lrf
    preset's accepted proposals were 0.92 right on the world and 0.75 without scenes when its
    analyst judged itself, 1.00 and 0.87 with another judge."""
    names = {(c.endpoint.model, c.endpoint.shown_url) for c in writers}
    same = sorted({j.endpoint.model for j in judges if (j.endpoint.model, j.endpoint.shown_url) in names})
    if same:
        log.warning(
            "%s: the judge panel includes the model that writes the proposals (%s); a model judging "
            "its own proposals repeats its own misreadings. Name judges of another model in %s.judges",
            PREFIX, ", ".join(same), PREFIX,
        )  # fmt: skip


def check_endpoints(used: list[tuple[str, FrontierClient]], budget: bool) -> None:
    """Refuse (``FrontierSetupError``, one line naming each culprit) endpoints that would fail
    every call or escape the budget: key variable unset, URL the client cannot parse, and, with
    ``budget``, no price (a token price in ``prices``; ``image_price`` for the image model, where
    null means unknown and 0 free). Without a budget, unpriced endpoints are named in one warning: their
    cost is not counted. ``used``: (config key, client) of every endpoint the frontier will call."""
    problems, unpriced = [], []
    for where, c in used:
        e = c.endpoint
        at = f" at {e.shown_url}" if e.base_url else ""
        if not os.environ.get(e.api_key_env):
            problems.append(
                f"{where} (model {e.model!r}{at}): environment variable {e.api_key_env} is not set; "
                f"export it (a local server without authentication accepts any value, "
                f"e.g. {e.api_key_env}=none)"
            )
        if e.base_url and not _parses(e.base_url):
            problems.append(
                f"{where} (model {e.model!r}): base_url {e.shown_url!r} is not an http(s) URL with a "
                "host and a numeric port (escape '/', '?', '#' and '@' inside a password)"
            )
        if where.endswith(".image_model"):
            if c.image_price is None:
                unpriced.append((where, e.model, f"{PREFIX}.image_price", "USD per image; 0 if free"))
        elif token_price(c.prices, e.model) is None:
            unpriced.append((where, e.model, f"{PREFIX}.prices[{e.model!r}]",
                             "[input, output] USD per million tokens; [0, 0] if the server charges nothing"))  # fmt: skip
    if budget:
        problems += [
            f"{where} (model {model!r}) has no price while a budget is set, so it would spend nothing "
            f"against the budget: set {key} ({unit})"
            for where, model, key, unit in unpriced
        ]
    if problems:
        raise FrontierSetupError("; ".join(problems))
    if unpriced:
        names = ", ".join(f"{where} (model {model!r}, {key} unset)" for where, model, key, _ in unpriced)
        log.warning("no price for %s: what they spend is not counted (no budget is set)", names)


def _parses(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
