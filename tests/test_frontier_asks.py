"""A round asks the frontier for no more proposals than its budget can use.

Against the simulated frontier (12 proposals per request unless asked for fewer), a cads round of
budget 192 used to ask its committee for up to 12 proposals in each of 2 x 4 requests per group
(576 written for 48 taken); each request now asks for its group's share of the proposals the
budget leaves to the frontier, and the simulator, like a model that follows its instructions,
writes no more."""

import math

import pytest

from curriculum.budget import split_budget
from curriculum.frontier.analyzer import STRATEGIES, FrontierAnalyzer
from curriculum.frontier.client import Endpoint, FrontierClient
from curriculum.frontier.sim import SimConfig, SimServer
from curriculum.types import Failure
from tests.helpers import frontier_round
from train.config import EndpointConfig, FrontierConfig

KEY = "LL_ASK_KEY"


def _failures(world):
    failed = [ex for ex in world["probe"] if ex.skill not in ("colour", "shape")]
    wrong = {ex.id for ex in failed}
    return [Failure(ex, "0", 1) for ex in failed], [(ex, ex.id not in wrong) for ex in world["probe"]]


@pytest.mark.parametrize("preset", ["analyze", "lrf", "cads"])
def test_each_request_asks_for_its_share_and_the_simulator_writes_no_more(preset, world_small, monkeypatch):
    monkeypatch.setenv(KEY, "sim")
    failures, probe = _failures(world_small)
    with SimServer(SimConfig(proposals=12)) as sim:

        def client(model):
            return FrontierClient(Endpoint(model, base_url=sim.url, api_key_env=KEY, max_retries=0))

        committee = [client("gen-a"), client("gen-b")] if preset == "cads" else None
        analyzer = FrontierAnalyzer(client("analyst"), preset=preset, committee=committee)
        weaknesses = analyzer.analyze(failures, probe, proposals=20)
        unlimited = FrontierAnalyzer(client("analyst"), preset=preset, committee=committee)
        everything = unlimited.analyze(failures, probe)
    written = [len(w.notes["proposals"]) for w in weaknesses]
    slack = 0
    for w, n, need in zip(weaknesses, written, split_budget(weaknesses, 20), strict=True):
        requests = {"analyze": 1, "lrf": min(3, len(w.failure_ids)), "cads": 2 * len(STRATEGIES)}[preset]
        assert n <= requests * max(1, math.ceil(need / requests)), (w.id, n, need)
        slack += requests
    assert sum(written) <= 20 + slack  # rounding up: at most one more per request
    # Without a number the requests ask for as many as the schema allows, as before.
    assert sum(len(w.notes["proposals"]) for w in everything) > sum(written)


def test_a_cads_round_pays_for_the_proposals_it_takes(world_small, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY, "sim")
    with SimServer(SimConfig(proposals=12)) as sim:

        def endpoint(model):
            return EndpointConfig(model=model, base_url=sim.url, api_key_env=KEY, max_retries=0)

        fc = FrontierConfig(model="analyst", base_url=sim.url, api_key_env=KEY, max_retries=0, preset="cads",
                            committee=[endpoint("gen-a"), endpoint("gen-b")], cache=None)  # fmt: skip
        result = frontier_round(fc, world_small, tmp_path / "cur")
    assert result.status == "ok"
    written = sum(len(w.notes.get("proposals") or []) for w in result.weaknesses)
    used = sum(c.generator == "proposals" for c in result.candidates)
    # Half the budget goes to proposals (24); each of the 8 requests per group may round up by one.
    assert 0 < used <= 24 and written <= 24 + 8 * len(result.weaknesses)
