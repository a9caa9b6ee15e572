"""The frontier arms of ``lessonloop compare`` and the simulated frontier it can run them against.

An arm named after a preset (``frontier`` for ``analyze``, ``lrf``, ``cads``) is the curriculum
with ``curriculum.analyzer: openai`` and that preset, every other setting the config's own, and
it adds as many examples as the targeted arm (the config's curriculum; the offline analyzer
unless the config says otherwise), as ``real`` does. Its endpoints are ``curriculum.frontier``'s;
with ``compare.simulator`` set they are the simulated frontier instead
(``curriculum.frontier.sim``), which compare starts in its own process for the runs, under the
key variable ``LESSONLOOP_SIM_KEY``, with the reply cache off (simulated replies must never answer
a real run) and the config's prices and budgets kept: what the arm would spend is counted as if
the models were real. Before anything trains, each frontier arm's run is checked as ``train``
checks it (key variables set, URLs that parse, prices where a budget needs them) and, without the
simulator, each endpoint's server is asked whether it answers, so an arm that cannot run is
refused in one line instead of failing after the other arms have trained.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict
from typing import Any

from curriculum.secrets import redact_url
from train.config import Config

PRESETS = {"frontier": "analyze", "lrf": "lrf", "cads": "cads"}
"""Frontier arms and the ``curriculum.frontier.preset`` each runs."""
KEY_ENV = "LESSONLOOP_SIM_KEY"
SIM_KEY = "sim"  # the simulator accepts any key


def arm_overrides(arm: str) -> list[str]:
    return [
        "curriculum.enabled=true",
        "curriculum.source=diagnosed",
        "curriculum.analyzer=openai",
        f"curriculum.frontier.preset={PRESETS[arm]}",
    ]


def simulator_overrides(cfg: Config, url: str) -> list[str]:
    """Overrides that send every endpoint of ``cfg``'s frontier (analyst, committee, judges, image
    model) to the simulator at ``url``, with the reply cache off."""
    fc = cfg.curriculum.frontier

    def point(endpoint: Any) -> dict[str, Any]:
        fields = {k: v for k, v in asdict(endpoint).items() if k in ("model", "timeout", "max_retries")}
        return {**fields, "base_url": url, "api_key_env": KEY_ENV}

    out = [
        f"curriculum.frontier.base_url={url}",
        f"curriculum.frontier.api_key_env={KEY_ENV}",
        "curriculum.frontier.cache=null",
    ]
    for name in ("committee", "judges"):
        if getattr(fc, name):
            out.append(f"curriculum.frontier.{name}={json.dumps([point(e) for e in getattr(fc, name)])}")
    if fc.image_model is not None:
        out.append(f"curriculum.frontier.image_model={json.dumps(point(fc.image_model))}")
    return out


def unreachable(cfg: Config) -> str | None:
    """The first endpoint of ``cfg``'s frontier whose server does not answer (a one-line reason),
    or None. Only endpoints with a ``base_url`` are asked (``GET <base_url>/models``, 5 s); any
    HTTP reply but 401 and 403 counts as an answer, since not every server lists its models."""
    fc = cfg.curriculum.frontier
    endpoints = [("curriculum.frontier", fc)]
    endpoints += [(f"curriculum.frontier.judges[{i}]", e) for i, e in enumerate(fc.judges)]
    if fc.preset == "cads":
        endpoints += [(f"curriculum.frontier.committee[{i}]", e) for i, e in enumerate(fc.committee)]
    if fc.image_model is not None:
        endpoints.append(("curriculum.frontier.image_model", fc.image_model))
    asked: dict[str, str | None] = {}
    for where, e in endpoints:
        if not e.base_url:
            continue
        if e.base_url not in asked:
            asked[e.base_url] = _ask(e.base_url.rstrip("/") + "/models", e.api_key_env)
        if asked[e.base_url] is not None:
            return f"{where}.base_url: {asked[e.base_url]}"
    return None


def _ask(url: str, key_env: str) -> str | None:
    shown = redact_url(url)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {os.environ.get(key_env, '')}"})
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return f"{shown} refused the key in {key_env} (HTTP {err.code})"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return (
            f"nothing answers at {shown} ({reason}); start the server (lessonloop-sim for the "
            "simulated frontier) or set compare.simulator"
        )
    return None
