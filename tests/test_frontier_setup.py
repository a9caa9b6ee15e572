"""What building the frontier refuses before training starts: a missing key variable, a
malformed price, an unpriced endpoint under a budget, a URL the client cannot parse."""

import logging
import math

import pytest

from curriculum.analyze import OfflineAnalyzer
from curriculum.frontier.build import FrontierSetupError, build_frontier
from curriculum.frontier.client import Endpoint, FrontierClient, Ledger
from train.config import EndpointConfig, FrontierConfig

URL = "http://127.0.0.1:9/v1"  # nothing is called: building makes no request
ENVS = ("LL_ANALYST_KEY", "LL_GEN_KEY", "LL_JUDGE_KEY", "LL_PAINTER_KEY")
PRICES = {"analyst": [2.5, 10.0], "gen-a": [1.0, 2.0], "judge-a": [1.0, 4.0]}


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for name in ENVS:
        monkeypatch.setenv(name, "test-key")


def _config(**kw):
    """A cads frontier with one endpoint of every role, each with its own key variable."""

    def endpoint(model, env, url=URL):
        return EndpointConfig(model=model, base_url=url, api_key_env=env)

    options = dict(
        model="analyst", base_url=URL, api_key_env="LL_ANALYST_KEY", preset="cads", cache=None,
        committee=[endpoint("gen-a", "LL_GEN_KEY")], judges=[endpoint("judge-a", "LL_JUDGE_KEY")],
        image_model=endpoint("painter", "LL_PAINTER_KEY"), image_price=0.04, prices=dict(PRICES),
        run_budget=5.0,
    )  # fmt: skip
    options.update(kw)
    return FrontierConfig(**options)


def _build(fc):
    return build_frontier(fc, OfflineAnalyzer())


def test_a_complete_config_builds_every_role():
    frontier = _build(_config())
    assert [c.endpoint.model for c in frontier.analyzer.committee] == ["gen-a"]
    assert [j.endpoint.model for j in frontier.judges.judges] == ["judge-a"]
    assert frontier.images.client.endpoint.model == "painter"


ROLES = {  # role -> (its config key, its model, its key variable, the config that leaves it unpriced)
    "analyst": ("curriculum.frontier", "analyst", "LL_ANALYST_KEY", {"prices": {"gen-a": [1, 2], "judge-a": [1, 4]}}),
    "committee": ("curriculum.frontier.committee[0]", "gen-a", "LL_GEN_KEY", {"prices": {"analyst": [1, 2], "judge-a": [1, 4]}}),
    "judges": ("curriculum.frontier.judges[0]", "judge-a", "LL_JUDGE_KEY", {"prices": {"analyst": [1, 2], "gen-a": [1, 2]}}),
    "image_model": ("curriculum.frontier.image_model", "painter", "LL_PAINTER_KEY", {"image_price": None}),
}  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
def test_an_unset_key_variable_is_refused_naming_endpoint_model_and_variable(monkeypatch, role):
    where, model, env, _ = ROLES[role]
    monkeypatch.delenv(env)
    with pytest.raises(FrontierSetupError) as info:
        _build(_config())
    message = str(info.value)
    assert message.startswith(f"{where} (model {model!r}")
    assert f"environment variable {env} is not set" in message and "accepts any value" in message
    assert "\n" not in message and all(other not in message for other in ENVS if other != env)


def test_an_empty_key_variable_counts_as_unset_and_every_culprit_is_named(monkeypatch):
    monkeypatch.setenv("LL_JUDGE_KEY", "")
    monkeypatch.delenv("LL_PAINTER_KEY")
    with pytest.raises(FrontierSetupError, match="LL_JUDGE_KEY is not set.*; .*LL_PAINTER_KEY is not set"):
        _build(_config())


def test_the_analyst_as_default_judge_is_checked_once(monkeypatch):
    monkeypatch.delenv("LL_ANALYST_KEY")
    with pytest.raises(FrontierSetupError) as info:
        _build(_config(preset="lrf", judges=[], committee=[]))
    assert str(info.value).count("LL_ANALYST_KEY is not set") == 1


def test_endpoints_that_are_never_called_are_not_checked(monkeypatch):
    # The committee serves cads only; without a panel no image is generated.
    monkeypatch.delenv("LL_GEN_KEY")
    monkeypatch.delenv("LL_PAINTER_KEY")
    fc = _config(preset="analyze", judges=[], prices={"analyst": [1, 2]}, image_model=None)
    fc.image_model = EndpointConfig(
        model="painter", base_url=URL, api_key_env="LL_PAINTER_KEY"
    )  # past the config's check
    frontier = _build(fc)
    assert frontier.images is None and frontier.judges is None


@pytest.mark.parametrize("budget", ["run_budget", "round_budget"])
@pytest.mark.parametrize("role", ROLES)
def test_an_unpriced_endpoint_is_refused_under_a_budget(role, budget):
    where, model, _, unpriced = ROLES[role]
    fc = _config(**{"run_budget": 0.0, budget: 1.0, **unpriced})
    with pytest.raises(FrontierSetupError) as info:
        _build(fc)
    message = str(info.value)
    assert message.startswith(f"{where} (model {model!r})")
    assert "has no price while a budget is set" in message and "\n" not in message
    assert ("image_price" if role == "image_model" else f"prices[{model!r}]") in message


def test_without_a_budget_one_warning_names_every_unpriced_endpoint(caplog):
    fc = _config(run_budget=0.0, prices={"analyst": [2.5, 10.0]}, image_price=None)
    with caplog.at_level(logging.WARNING, logger="curriculum.frontier.build"):
        frontier = _build(fc)
    (record,) = [r for r in caplog.records if r.name == "curriculum.frontier.build"]
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "not counted" in message
    assert all(f"model {m!r}" in message for m in ("gen-a", "judge-a", "painter"))
    assert "'analyst'" not in message
    assert frontier.ledger.run_budget == 0


def test_a_fully_priced_config_warns_about_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="curriculum.frontier.build"):
        _build(_config(run_budget=0.0))
    assert not [r for r in caplog.records if r.name == "curriculum.frontier.build"]


@pytest.mark.parametrize(
    "entry",
    [
        [1.0],
        [1.0, 2.0, 3.0],
        [-1.0, 2.0],
        [math.nan, 1.0],
        [1.0, math.inf],
        ["1", 2.0],
        [True, 1.0],
        5.0,
        None,
    ],
)
def test_a_malformed_price_entry_is_refused_naming_it(entry):
    # Even for a model no endpoint uses: the table is checked as a whole. Set past the config's
    # own check of the same rule, as a config object handed to the frontier in code may be.
    fc = _config()
    fc.prices = {**PRICES, "gpt-unused": entry}
    with pytest.raises(FrontierSetupError) as info:
        _build(fc)
    assert str(info.value) == (
        f"curriculum.frontier.prices['gpt-unused'] = {entry!r}: must be two finite non-negative "
        "numbers (USD per million input and output tokens)"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_price", -0.01), ("image_price", math.nan), ("run_budget", math.nan), ("round_budget", -1.0),
     ("round_seconds", math.inf)],
)  # fmt: skip
def test_a_limit_or_image_price_that_cannot_bind_is_refused(field, value):
    fc = _config()
    setattr(fc, field, value)  # past any config-level check: the frontier refuses it by itself
    with pytest.raises(FrontierSetupError, match=rf"^curriculum\.frontier\.{field} = {value!r}: must be"):
        _build(fc)


def test_a_client_refuses_a_malformed_price_for_its_model_before_any_call():
    with pytest.raises(ValueError, match=r"prices\['m'\] = \[1\.0\]"):
        FrontierClient(Endpoint("m", base_url=URL), prices={"m": [1.0]})
    with pytest.raises(ValueError, match="run_budget"):
        Ledger(run_budget=math.nan)


def test_a_url_the_client_cannot_parse_is_refused_without_its_password():
    broken = "http://user:Qx7pw/rest-of-it@127.0.0.1:9/v1"
    fc = _config(judges=[EndpointConfig(model="judge-a", base_url=broken, api_key_env="LL_JUDGE_KEY")])
    with pytest.raises(FrontierSetupError, match=r"judges\[0\].*base_url .* is not an http\(s\) URL") as info:
        _build(fc)
    assert "Qx7pw" not in str(info.value) and "rest-of-it" not in str(info.value)


def test_a_credential_in_a_url_is_redacted_in_the_error(monkeypatch):
    monkeypatch.delenv("LL_JUDGE_KEY")
    url = "https://lessonloop:pw-Zq9x4Lm2@judge-host:8000/v1"
    fc = _config(judges=[EndpointConfig(model="judge-a", base_url=url, api_key_env="LL_JUDGE_KEY")])
    with pytest.raises(FrontierSetupError) as info:
        _build(fc)
    assert "at https://***@judge-host:8000/v1" in str(info.value) and "pw-Zq9x4Lm2" not in str(info.value)


def test_prices_set_on_a_client_are_checked_and_used():
    client = FrontierClient(Endpoint("m", base_url=URL), prices={"m": [1.0, 2.0]})
    assert client.cost_of(1_000_000, 1_000_000) == 3.0
    client.prices = {"m": [10.0, 0.0]}
    assert client.cost_of(1_000_000, 1_000_000) == 10.0
    with pytest.raises(ValueError, match=r"prices\['m'\] = \[-1\.0, 0\.0\]"):
        client.prices = {"m": [-1.0, 0.0]}
    assert client.cost_of(1_000_000, 0) == 10.0  # the refused table did not replace the last one
