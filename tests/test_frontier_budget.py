"""A budget is a hard limit: a call starts only if its estimate fits in what is left, and one that
fits once the calls in flight are charged waits for them.

Against the simulated frontier (benchmarks/frontier_sim.py, part ``budget``) a round with a
0.05 USD budget spent 0.119 at concurrency 4 and 16: a pair of pictures (0.084 USD) started with
0.015 USD left, since a call only had to find the budget not yet spent. Refused at once instead of
waiting, calls left half the budget unspent at concurrency 4 (0.024 of 0.05)."""

import threading
import time

import pytest

from curriculum.frontier.client import BudgetExceeded, Ledger
from curriculum.frontier.sim import SimConfig, SimServer
from tests.helpers import frontier_round
from train.config import EndpointConfig, FrontierConfig

KEY = "LL_BUDGET_KEY"


def test_a_call_whose_estimate_passes_what_is_left_does_not_start():
    ledger = Ledger(round_budget=0.05)
    ledger.start_round()
    ledger.charge(100, 10, 0.035)
    with pytest.raises(
        BudgetExceeded, match=r"round budget of \$0.05 spent \(\$0.0350 and \$0.0840 for this call"
    ):
        ledger.reserve(0.084)
    ledger.reserve(0.01)  # fits: held until released
    with pytest.raises(BudgetExceeded, match=r"\$0.0100 in flight"):  # would not fit with nothing in flight
        ledger.reserve(0.02)
    run = Ledger(run_budget=0.1)
    run.charge(100, 10, 0.035)
    run.start_round()  # a new round: the run budget still counts what was spent
    with pytest.raises(BudgetExceeded, match="run budget"):
        run.reserve(0.07)
    run.reserve(0.06)


def test_a_call_that_fits_once_the_calls_in_flight_are_charged_waits_for_them():
    ledger = Ledger(round_budget=0.05)
    ledger.start_round()
    ledger.reserve(0.03)  # a call in flight
    started = []

    def second():
        ledger.reserve(0.03)  # 0.03 + 0.03 held would pass 0.05; alone it fits
        started.append(time.monotonic())

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    assert not started  # it waits while the first holds its estimate
    ledger.charge(100, 10, 0.01)  # the first cost less than estimated
    released = time.monotonic()
    ledger.release(0.03)
    waiter.join(timeout=5)
    assert started and started[0] >= released and ledger.held == pytest.approx(0.03)
    # A deadline ends the wait: no call starts after the round's time is up.
    timed = Ledger(round_budget=0.05, round_seconds=0.2)
    timed.start_round()
    timed.reserve(0.03)
    with pytest.raises(BudgetExceeded, match="round time limit"):
        timed.reserve(0.03)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_round_with_pictures_spends_no_more_than_its_budget(
    concurrency, world_small, tmp_path, monkeypatch
):
    monkeypatch.setenv(KEY, "sim")
    with SimServer(SimConfig(latency=0.05)) as sim:

        def endpoint(model):
            return EndpointConfig(model=model, base_url=sim.url, api_key_env=KEY, max_retries=0)

        fc = FrontierConfig(
            model="analyst", base_url=sim.url, api_key_env=KEY, max_retries=0, judges=[endpoint("judge")],
            image_model=endpoint("painter"), image_price=0.042, image_size="256x256", cache=None,
            prices={"analyst": [2.5, 10.0], "judge": [0.15, 0.6]}, concurrency=concurrency, round_budget=0.03,
        )  # fmt: skip
        result = frontier_round(fc, world_small, tmp_path / "cur")
    spent = result.metrics.get("curriculum/round_cost_usd", 0.0)
    assert 0 < spent <= 0.03, spent


def test_a_call_that_fits_exactly_starts_once_the_calls_in_flight_are_over():
    """Estimates held and released as floats do not come back to exactly zero (here 1e-17): a call
    must not wait for calls in flight when there are none."""
    ledger = Ledger(round_budget=0.08, round_seconds=2)
    ledger.start_round()
    for estimate in (0.012346, 0.013507, 0.011055, 0.019062):
        ledger.reserve(estimate)
        ledger.release(estimate)
    ledger.charge(0, 0, 0.06, images=3)
    start = time.monotonic()
    ledger.reserve(0.02)  # 0.06 + 0.02 fits the 0.08 budget exactly
    assert time.monotonic() - start < 0.5 and ledger.in_flight == 1


def test_a_call_no_round_can_fit_is_refused_at_once_even_with_calls_in_flight():
    ledger = Ledger(run_budget=0.095, round_budget=0.05)
    ledger.charge(0, 0, 0.03)  # an earlier round
    ledger.start_round()
    ledger.charge(0, 0, 0.04)
    ledger.reserve(0.01)  # in flight
    start = time.monotonic()
    with pytest.raises(BudgetExceeded, match="round budget"):
        ledger.reserve(0.02)  # the round could never fit it, whatever the calls in flight do
    assert time.monotonic() - start < 0.5
