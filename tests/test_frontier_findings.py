"""What the simulated-frontier benchmark exposed in the frontier pipeline, fixed and held here:
the judge panel spent half its calls on answers the world's program or the user's data already
verified (and lost some of them to its own mistakes); a model judging its own proposals keeps
its own misreadings, and a config that makes it do so is warned about."""

import dataclasses
import logging

import pytest

from curriculum.analyze import OfflineAnalyzer
from curriculum.frontier.build import build_frontier
from curriculum.frontier.client import Endpoint, FrontierClient
from curriculum.frontier.judge import JudgePanel
from curriculum.frontier.sim import SimConfig, SimServer
from curriculum.types import Candidate
from train.config import EndpointConfig, FrontierConfig


def _candidates(world):
    """One candidate of each origin a round mixes, as its filters leave them before the panel."""
    probe = world["probe"]

    def made(i, generator, answer, source, **meta):
        c = Candidate(dataclasses.replace(probe[i], source=source, meta=meta), "w0", generator)
        c.verdicts["answer"] = answer
        return c

    return {
        "proposal, program-checked": made(0, "proposals", "ok", "synthetic", proposal="same_image"),
        "proposal, unverified": made(1, "proposals", "unverified", "synthetic", proposal="generated"),
        "proposal, a rendered spec": made(5, "proposals", "ok", "synthetic", proposal="rendered"),
        "world generator": made(2, "world", "ok", "synthetic"),
        "same picture, offline": made(3, "same_image", "ok", "synthetic"),
        "replay of a real item": made(4, "replay", "unverified", "real"),
    }


@pytest.mark.parametrize(
    "scope, judged",
    [
        ("all", {"proposal, program-checked", "proposal, unverified"}),
        ("unverified", {"proposal, unverified"}),
    ],
)
def test_the_panel_judges_the_frontiers_proposals_only(world_small, monkeypatch, scope, judged):
    monkeypatch.setenv("SIM_TEST_KEY", "any")
    cands = _candidates(world_small)
    with SimServer(SimConfig(seed=0)) as sim:
        judges = [
            FrontierClient(Endpoint(m, sim.url, "SIM_TEST_KEY", timeout=10, max_retries=0)) for m in "ab"
        ]
        JudgePanel(judges, agree=2, scope=scope)(list(cands.values()))
        calls = sim.stats()["served"]["chat"]
    assert {name for name, c in cands.items() if "judge" in c.verdicts} == judged
    assert calls == 2 * len(judged)
    assert all(c.dropped is None for name, c in cands.items() if name not in judged)


def _frontier(preset, judges=(), committee=()):
    def endpoint(model):
        return EndpointConfig(model=model, base_url="http://127.0.0.1:9/v1", api_key_env="SIM_TEST_KEY")

    return FrontierConfig(model="writer", base_url="http://127.0.0.1:9/v1", api_key_env="SIM_TEST_KEY",
                          preset=preset, judges=[endpoint(j) for j in judges],
                          committee=[endpoint(c) for c in committee], cache=None)  # fmt: skip


@pytest.mark.parametrize(
    "preset, judges, committee, warned",
    [
        ("lrf", (), (), True),  # the analyst scores its own proposals
        ("cads", (), (), True),  # no committee: the analyst writes and judges
        ("analyze", ("writer", "other"), (), True),
        ("lrf", ("other",), (), False),
        ("cads", (), ("gen-a", "gen-b"), False),  # the committee writes, the analyst judges
        ("cads", ("gen-a",), ("gen-a", "gen-b"), True),
        ("analyze", (), (), False),  # no panel at all
    ],
)
def test_a_model_judging_its_own_proposals_is_warned_about(
    monkeypatch, caplog, preset, judges, committee, warned
):
    monkeypatch.setenv("SIM_TEST_KEY", "any")
    with caplog.at_level(logging.WARNING, logger="curriculum.frontier.build"):
        build_frontier(_frontier(preset, judges, committee), OfflineAnalyzer())
    said = [r.getMessage() for r in caplog.records if "judging its own proposals" in r.getMessage()]
    assert bool(said) == warned


def test_calls_in_flight_hold_the_budget(world_small, monkeypatch):
    """Sixteen calls started at once on a budget left for about three: before, every one of them
    started (the budget saw only what was spent) and the round overspent by 38 %; now each holds
    its estimated cost while in flight, so the budget is passed by at most one call."""
    from concurrent.futures import ThreadPoolExecutor

    from curriculum.frontier.client import BudgetExceeded, FrontierError, Ledger
    from curriculum.frontier.judge import ANSWER_SCHEMA

    monkeypatch.setenv("SIM_TEST_KEY", "any")
    items = world_small["probe"][:17]
    with SimServer(SimConfig(seed=0, latency=0.3, latency_sigma=0.0)) as sim:
        ledger = Ledger()
        client = FrontierClient(Endpoint("m", sim.url, "SIM_TEST_KEY", timeout=10, max_retries=0),
                                prices={"m": [2.5, 10.0]}, ledger=ledger, concurrency=16)  # fmt: skip
        panel = JudgePanel([client])

        def ask(ex):
            try:
                return client.chat_json(
                    panel.messages(Candidate(ex, "w", "proposals")), ANSWER_SCHEMA, "judge_answer"
                )
            except FrontierError as err:
                return err

        ask(items[0])
        one = ledger.cost
        ledger.round_budget = one * 3.5
        ledger.start_round()
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(ask, items[1:]))
    refused = [r for r in replies if isinstance(r, BudgetExceeded)]
    assert len(refused) >= 11 and all(isinstance(r, dict) for r in replies if r not in refused)
    assert ledger.round_cost <= ledger.round_budget + 1.2 * one and ledger.held == 0.0
