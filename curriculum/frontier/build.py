"""The frontier parts of a curriculum, built from its config: analyst, judges, image model.

Every client shares one ledger, so the run and round budgets cover all endpoints together, and one
reply cache. Presets fill in what the config leaves out: ``lrf`` judges by score with the analyst
as its one judge, ``cads`` solves blind with the analyst as judge unless ``judges`` names a panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curriculum.analyze import OfflineAnalyzer
from curriculum.frontier.analyzer import FrontierAnalyzer
from curriculum.frontier.client import Endpoint, FrontierClient, Ledger
from curriculum.frontier.images import ImageMaker
from curriculum.frontier.judge import JudgePanel


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
    comes from the built-in world, so proposals may be world specs (of ``skills``; None: all)."""
    ledger = Ledger(fc.run_budget, fc.round_budget, fc.round_seconds)
    cache = Path(fc.cache).expanduser() if fc.cache else None

    def client(e: Any, image_price: float = 0.0) -> FrontierClient:
        endpoint = Endpoint(e.model, e.base_url, e.api_key_env, e.timeout, e.max_retries)
        return FrontierClient(endpoint, cache, fc.prices, image_price, ledger, fc.concurrency)

    analyst = client(fc)
    judges = [client(e) for e in fc.judges] or ([analyst] if fc.preset != "analyze" else [])
    panel = None
    if judges:
        mode = "score" if fc.preset == "lrf" else "answer"
        panel = JudgePanel(judges, fc.judge_agree, mode, fc.judge_scope, workers=fc.concurrency)
    images = None
    if fc.image_model is not None and panel is not None:
        images = ImageMaker(client(fc.image_model, fc.image_price), fc.image_settings,
                            fc.images_per_setting, fc.image_size)  # fmt: skip
    kinds = (
        ["same_image"] + (["rendered"] if rendered else []) + (["generated"] if images is not None else [])
    )
    analyzer = FrontierAnalyzer(
        analyst,
        grouper,
        fc.representatives,
        fc.preset,
        fc.prompt,
        committee=[client(e) for e in fc.committee] or None,
        kinds=kinds,
        rationales=fc.rationales,
        skills=skills,
        exemplars=fc.exemplars,
        workers=fc.concurrency,
    )
    return Frontier(analyzer, panel, images, ledger)
