"""What every part of ``benchmarks/frontier_sim.py`` shares: the simulated teacher at a given error,
the frontier config of each preset pointed at it, the fixed policy whose failures a round answers,
and one curriculum round with every candidate's answer checked against the truth."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from curriculum.engine import Curriculum
from curriculum.frontier.sim import SimConfig, SimServer
from curriculum.scoring import is_correct
from curriculum.types import Candidate, Example, image_hash
from curriculum.world.questions import answer_from_scene
from train.config import CurriculumConfig, EndpointConfig, FrontierConfig

KEY_ENV = "LESSONLOOP_SIM_KEY"
ANALYST, JUDGES, COMMITTEE, PAINTER = (
    "gpt-4o",
    ["judge-a", "judge-b", "judge-c"],
    ["gen-a", "gen-b"],
    "gpt-image-1",
)
PRICES = {ANALYST: [2.5, 10.0], **{j: [0.15, 0.6] for j in JUDGES}, **{c: [2.5, 10.0] for c in COMMITTEE}}
IMAGE_PRICE = 0.042
PRESETS = ("analyze", "lrf", "cads")
PROPOSALS = 12  # per analysis request: the most the schema allows, so rounds have many to measure


def teacher(error: float, **settings: Any) -> SimConfig:
    """The simulated frontier at teacher error ``error``: a proposal's answer and a judge's vote
    are each wrong at that rate."""
    return SimConfig(seed=0, proposal_error=error, judge_error=error, proposals=PROPOSALS, **settings)


class FixedPolicy:
    """A model that answers colour and shape questions right and everything else wrong."""

    def __init__(self, knows: tuple[str, ...] = ("colour", "shape")) -> None:
        self.knows = set(knows)

    def answer(self, examples: list[Example]) -> list[str]:
        return [ex.answer if ex.skill in self.knows else "0" for ex in examples]

    def sample(self, examples: list[Example], n: int) -> list[list[str]]:
        return [[a] * n for a in self.answer(examples)]


def frontier(url: str, preset: str, rationales: bool = False, concurrency: int = 8, scope: str = "all",
             cache: Path | None = None, judges: list[str] | None = None) -> FrontierConfig:  # fmt: skip
    """Each preset as its paper runs it: ``analyze`` and ``cads`` with a 2-of-3 blind panel (cads:
    a committee of two generators), ``lrf`` with its analyst as the one scoring judge (or
    ``judges``, when named). The reply cache is on (a folder of the run's own), as by default."""

    def endpoint(model: str) -> EndpointConfig:
        return EndpointConfig(model=model, base_url=url, api_key_env=KEY_ENV, timeout=60.0, max_retries=2)

    panel = JUDGES if judges is None and preset != "lrf" else (judges or [])
    return FrontierConfig(
        model=ANALYST, base_url=url, api_key_env=KEY_ENV, timeout=60.0, max_retries=2, preset=preset,
        judges=[endpoint(j) for j in panel], judge_agree=min(2, len(panel)), judge_scope=scope,
        committee=[endpoint(c) for c in COMMITTEE] if preset == "cads" else [],
        image_model=endpoint(PAINTER), image_size="512x512", images_per_setting=2, image_price=IMAGE_PRICE,
        rationales=rationales, prices=PRICES, cache=str(cache) if cache else None, concurrency=concurrency,
        round_seconds=0.0,
    )  # fmt: skip


def withheld(examples: list[Example]) -> list[Example]:
    """The same items without their scenes: data no program can check, as a user's own."""
    return [dataclasses.replace(ex, scene=None) for ex in examples]


class Truth:
    """The right answer to any candidate: from the scene of its picture (the world's, or the one
    the simulated image model drew), by the world's program; None when the question is ill posed."""

    def __init__(self, sim: SimServer, world: dict[str, list[Example]]) -> None:
        self.sim = sim
        self.scenes = {image_hash(ex.image): ex.scene for split in world.values() for ex in split}

    def right(self, c: Candidate) -> bool:
        ex = c.example
        scene = ex.scene or self.scenes.get(image_hash(ex.image)) or self.sim.teacher.drawn_scene(ex.image)
        got = answer_from_scene(scene, ex.question) if scene else None
        return got is not None and is_correct(ex.answer, got[1])


def one_round(sim: SimServer, world: dict[str, list[Example]], fc: FrontierConfig, root: Path, *,
              panel: bool = True, scened: bool = True, budget: int = 384) -> dict[str, Any]:  # fmt: skip
    """One curriculum round against the simulator, every candidate scored against the truth.
    ``panel`` False takes the judges away and lets unverified answers train; ``scened`` False
    withholds the scenes of the data, so no program checks an answer."""
    train, probe = world["train"], world["probe"]
    if not scened:
        train, probe = withheld(train), withheld(probe)
    cfg = CurriculumConfig(enabled=True, every=10, budget=budget, analyzer="openai", frontier=fc,
                           student_check="off", allow_unverified=not panel)  # fmt: skip
    cur = Curriculum(cfg, root, train, probe, {"test": world["test"]}, 64, 0, allow_unverified=not panel)
    if not panel:
        cur.frontier.judges = None  # lrf and cads name a judge by default: taken away here
    t0 = time.perf_counter()
    result = cur.update(10, FixedPolicy())
    seconds = time.perf_counter() - t0
    cur.close()
    truth, t = Truth(sim, world), Counter()
    caught: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    t["failed"] = result.status != "ok"
    m = result.metrics
    t["calls"], t["images"] = (
        int(m.get("curriculum/frontier_calls", 0)),
        int(m.get("curriculum/frontier_images", 0)),
    )
    t["written"] = sum(len(w.notes.get("proposals") or []) for w in result.weaknesses)
    for c in result.candidates:
        right, kept = truth.right(c), c.dropped is None
        t["added"] += kept
        t["added_right"] += kept and right
        if c.generator != "proposals":
            t["offline_judged"] += "judge" in c.verdicts
            t["offline_dropped_by_judge"] += c.dropped == "judge"
            continue
        t[f"kind_{c.example.meta.get('proposal', '?')}"] += 1
        t["proposals"] += 1
        t["right"] += right
        t["kept"] += kept
        t["kept_right"] += kept and right
        t["duplicates"] += c.dropped == "dedup"
        t["right_duplicates"] += right and c.dropped == "dedup"
        if not right and not kept:
            caught[c.dropped] += 1
        elif right and not kept:
            lost[c.dropped] += 1
    usd = m.get("curriculum/round_cost_usd", 0.0)
    return {
        "proposals_written": t["written"],
        "proposals": t["proposals"],
        "by_kind": {k.removeprefix("kind_"): v for k, v in t.items() if k.startswith("kind_")},
        "teacher_wrong": t["proposals"] - t["right"],
        "accepted": t["kept"],
        "accepted_wrong": t["kept"] - t["kept_right"],
        "precision": ratio(t["kept_right"], t["kept"]),
        "recall": ratio(t["kept_right"], t["right"]),
        "recall_of_distinct": ratio(t["kept_right"], t["right"] - t["right_duplicates"]),
        "duplicates": t["duplicates"],
        "pool_added": t["added"],
        "pool_precision": ratio(t["added_right"], t["added"]),
        "wrong_stopped_by": dict(caught),
        "right_dropped_by": dict(lost),
        "offline_judged": t["offline_judged"],
        "offline_dropped_by_judge": t["offline_dropped_by_judge"],
        "calls": t["calls"],
        "images": t["images"],
        "usd": round(usd, 4),
        "usd_per_accepted_proposal": round(usd / t["kept"], 5) if t["kept"] else None,
        "usd_per_added_example": round(usd / t["added"], 5) if t["added"] else None,
        "failed": bool(t["failed"]),
        "seconds": round(seconds, 1),
    }


def ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def run_one(config: SimConfig, world: dict[str, list[Example]], tmp: Path, preset: str, *, panel: bool = True,
            scened: bool = True, budget: int = 384, **options: Any) -> dict[str, Any]:  # fmt: skip
    """A fresh simulator and reply cache, one round; the row's settings and what it measured."""
    with SimServer(config) as sim, tempfile.TemporaryDirectory(dir=tmp) as cache:
        fc = frontier(sim.url, preset, cache=Path(cache), **options)
        return one_round(sim, world, fc, tmp / "round", panel=panel, scened=scened, budget=budget)
