"""benchmarks/frontier_sim.py runs end to end at toy size and reports what its README numbers need."""

import json

import pytest

from tests.helpers import benchmark


def _script(name: str):
    return benchmark(name)


@pytest.mark.slow
def test_the_simulated_frontier_benchmark_runs_at_toy_size(tmp_path):
    out = tmp_path / "sim.json"
    argv = ["--out", str(out), "--quick", "--errors", "0.2", "--parts", "filters,budget"]
    assert _script("frontier_sim").main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["filters"]
    assert {(r["preset"], r["judges"]) for r in rows} == {
        (p, j) for p in ("analyze", "lrf", "cads") for j in (True, False)
    }
    for r in rows:
        assert r["proposals"] > 0 and not r["failed"] and r["accepted"] <= r["proposals"]
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["calls"] > 0
        assert r["accepted_wrong"] == round(r["accepted"] * (1 - r["precision"]))
    # Without judges nothing is judged; with them the panel (or lrf's analyst) costs calls.
    calls = {(r["preset"], r["judges"]): r["calls"] for r in rows}
    assert all(calls[(p, True)] > calls[(p, False)] for p in ("analyze", "lrf", "cads"))
    assert [b["concurrency"] for b in result["budget"]] == [1, 4, 16]
    assert all(b["spent_usd"] <= b["round_budget_usd"] for b in result["budget"])  # a budget binds
    assert "machine" in result["environment"] and result["args"]["quick"]
    # --update runs some parts again and keeps the others, each run's settings recorded.
    assert _script("frontier_sim").main(["--out", str(out), "--quick", "--parts", "budget", "--update"]) == 0
    again = json.loads(out.read_text())
    assert again["filters"] == rows
    assert [sorted(r["parts"]) for r in again["runs"]] == [["budget", "filters"], ["budget"]]
