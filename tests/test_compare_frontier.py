"""``lessonloop compare`` with frontier arms (``frontier``, ``lrf``, ``cads``): each adds as many
examples as the targeted arm, calls the simulated frontier when ``compare.simulator`` is set, and
an arm that cannot run is refused before anything trains."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.frontier.sim import SimConfig, SimServer
from train.compare import Compare
from train.compare_frontier import KEY_ENV
from train.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
KEY = "LL_COMPARE_KEY"


def _overrides(tmp_path, url=None, simulator=None, arms="[base,targeted,real,lrf,cads]"):
    at = {"api_key_env": KEY, **({"base_url": url} if url else {})}
    judges = [{"model": "judge-a", **at}, {"model": "judge-b", **at}]
    out = [
        f"run.output_dir={tmp_path}", "run.name=c", "model.build_tiny=qwen2_5_vl",
        f"model.name_or_path={tmp_path / 'no-model-yet'}", "train.steps=6", "curriculum.every=2",
        "curriculum.budget=16", f"compare.arms={arms}", "compare.seeds=[0]", "curriculum.frontier.model=analyst",
        f"curriculum.frontier.api_key_env={KEY}", f"curriculum.frontier.judges={json.dumps(judges)}",
        f"curriculum.frontier.committee={json.dumps([{'model': 'gen-a', **at}])}", "curriculum.frontier.cache=null",
    ]  # fmt: skip
    if url is not None:
        out.append(f"curriculum.frontier.base_url={url}")
    if simulator is not None:
        out.append(f"compare.simulator={json.dumps(simulator)}")
    return out


def _compare(overrides):
    return Compare(load_config(None, overrides), None, overrides)


def test_a_frontier_arm_adds_what_targeted_added_and_calls_the_simulator(tmp_path):
    overrides = _overrides(tmp_path, simulator={"proposal_error": 0.2})
    cmp = _compare(overrides)
    cmp.sim_url = "http://127.0.0.1:8765/v1"
    job = cmp.job("cads", 0, [5, 3], [{}])
    cfg = load_config(None, [*overrides, *job.overrides])
    cc, fc = cfg.curriculum, cfg.curriculum.frontier
    assert cc.enabled and cc.analyzer == "openai" and cc.source == "diagnosed" and fc.preset == "cads"
    assert cc.quota == [5, 3] and cc.budget == 48  # the targeted arm's count, oversampled candidates
    endpoints = [fc, *fc.judges, *fc.committee]
    assert all(e.base_url == cmp.sim_url and e.api_key_env == KEY_ENV for e in endpoints)
    assert [e.model for e in endpoints] == ["analyst", "judge-a", "judge-b", "gen-a"] and fc.cache is None
    assert cmp.environment(1, None)[KEY_ENV]
    # The offline arms keep the config's analyzer; without the simulator the endpoints are the config's.
    assert load_config(None, [*overrides, *cmp.job("targeted", 0).overrides]).curriculum.analyzer == "offline"
    plain = _overrides(tmp_path, url="http://judge-host:8000/v1")
    lrf = load_config(None, [*plain, *_compare(plain).job("lrf", 0, [4]).overrides]).curriculum.frontier
    assert lrf.preset == "lrf" and lrf.base_url == "http://judge-host:8000/v1" and lrf.api_key_env == KEY


def test_frontier_arms_need_the_targeted_arm(tmp_path):
    assert "add targeted" in _compare(_overrides(tmp_path, simulator={}, arms="[base,lrf]")).check()


def test_a_frontier_arm_nothing_answers_for_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY, "sk-test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    reason = _compare(_overrides(tmp_path, url=f"http://127.0.0.1:{port}/v1")).check()
    assert reason.startswith(
        "compare.arms: arm lrf cannot run: curriculum.frontier.base_url: nothing answers"
    )
    assert "\n" not in reason and f":{port}" in reason


def test_a_frontier_arm_without_its_key_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY, raising=False)
    with SimServer() as sim:
        reason = _compare(_overrides(tmp_path, url=sim.url)).check()
    assert reason.startswith("compare.arms: arm lrf cannot run: curriculum.frontier") and KEY in reason


def test_a_running_simulator_or_the_one_compare_starts_passes_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY, "sim")
    with SimServer() as sim:
        assert _compare(_overrides(tmp_path, url=sim.url)).check() is None
    monkeypatch.delenv(KEY, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert _compare(_overrides(tmp_path, simulator={"judge_error": 0.1})).check() is None


def test_a_server_that_refuses_the_key_is_named(tmp_path, monkeypatch):
    from tests.openai_server import FakeOpenAI

    monkeypatch.setenv(KEY, "sk-wrong")
    with FakeOpenAI(default=lambda path, body: {"status": 401, "message": "bad key"}) as server:
        reason = _compare(_overrides(tmp_path, url=server.url)).check()
    assert reason is not None and "refused the key in LL_COMPARE_KEY (HTTP 401)" in reason


@pytest.mark.parametrize("bad", ["{proposal_eror: 0.1}", "{judge_error: 2}", "[0.1]"])
def test_simulator_settings_are_checked_where_they_are_declared(bad):
    with pytest.raises(ConfigError, match=r"compare\.simulator"):
        load_config(None, [f"compare.simulator={bad}"])
    assert SimConfig.from_dict(load_config(None, ["compare.simulator={proposals: 12}"]).compare.simulator)


@pytest.mark.slow
def test_compare_runs_a_frontier_arm_against_the_simulator(tmp_path):
    overrides = _overrides(tmp_path, simulator={"proposals": 4}, arms="[targeted,lrf]") + [
        "data.world.image_size=32", "data.world.train_size=240", "data.world.probe_size=40",
        "data.world.test_size=54", "train.cpu=true", "train.batch_size=8", "train.steps=4",
        "train.save_model=false", "eval.batch_size=27", "eval.max_new_tokens=3", "eval.every=0",
        "curriculum.budget=12", "curriculum.frontier.concurrency=4", "curriculum.frontier.prices={analyst: [2.5, 10]}",
        "compare.parallel=2",
    ]  # fmt: skip
    code = f"import sys; sys.path[0] = {str(ROOT)!r}; from train.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code, "compare", *overrides], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "c" / "compare.json").read_text())
    arms = result["arms"]
    assert arms["lrf"]["added"]["mean"] == arms["targeted"]["added"]["mean"] > 0
    assert arms["lrf"]["api_cost_usd"]["mean"] > 0 == arms["targeted"]["api_cost_usd"]["mean"]
    served = json.loads((tmp_path / "c" / "simulator.json").read_text())
    assert served["teacher"]["analysis"] > 0 and served["teacher"]["judge"] > 0
