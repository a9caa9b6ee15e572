"""The baselines a curriculum is compared with (``curriculum.source`` other than ``diagnosed``):
what a round aims at, which generators make it, and how many of each kind it keeps.

A baseline analyses no failure. Its weaknesses are fixed targets that share out the round's
budget (in proportion to their rates) and tell the generators what to make:

- ``uniform``: every skill alike. The built-in world renders each from a uniform spec
  (generator ``world``); external data draws items of each skill from its reserve
  (``skill_real``), over the skills the reserve holds.
- ``real``: the data as a whole: new items of its own distribution (``real``).
- ``hard_real``: train items at random, for the student check to keep the hard ones (``hard_real``).
- ``rebalanced``: the round's skill mix (``round_mix``: ``curriculum.skill_quota``, the rest of
  ``curriculum.quota`` as items of any skill). One weakness per skill, its rate the skill's
  count so the budget follows the mix, and its cap (``notes["quota"]``) that count, so the
  round keeps exactly the mix (``cap_by_weakness``) when enough survive; the examples of every
  weakness are sampled alike in training (``notes["weight"]``: 1).

The world's baselines make new items; those of external data draw from ``data.hf.reserve``
(train items never trained on), so ``world`` tells which.
"""

from __future__ import annotations

import random
from typing import Any

from curriculum.types import Candidate, Weakness

REBALANCED_REST = "rebalanced"
"""The id of a rebalanced round's weakness for examples of no particular skill."""


def baseline_generators(source: str, world: bool) -> dict[str, float]:
    """The generator shares of a baseline round (``world``: the built-in world's data)."""
    if source == "hard_real":
        return {"hard_real": 1.0}
    if source == "real":
        return {"real": 1.0}
    if source == "uniform" and world:
        return {"world": 1.0}
    if source in ("uniform", "rebalanced"):
        return {"skill_real": 1.0}
    raise ValueError(f"curriculum.source {source!r} is not a baseline")


def _target(wid: str, skill: str | None, rate: float, note: str, **extra: Any) -> Weakness:
    return Weakness(wid, skill, {}, rate, rate, 0, 0, [], note, **extra)


def baseline_weaknesses(
    source: str,
    skills: list[str] | None = None,
    *,
    data_skills: list[str] | None = None,
    mix: dict[str | None, int] | None = None,
) -> list[Weakness]:
    """What a baseline round aims at (module docstring). ``skills``: the built-in world's skills of
    the run (None: all); ``data_skills``: external data's skills (those its reserve holds), None
    for the world; ``mix``: a ``rebalanced`` round's examples per skill (``round_mix``)."""
    if source == "uniform":
        if data_skills is not None:
            return [_target(f"uniform/{s}", s, 1.0, "uniform over the data's skills: no failure analysis")
                    for s in data_skills]  # fmt: skip
        from curriculum.world import world_skills

        return [
            _target(
                f"uniform/{s}", s, 1.0, "uniform spec: no failure analysis", spec={"skill": s, "params": {}}
            )
            for s in world_skills(skills)
        ]
    if source == "rebalanced":
        out = []
        for skill, count in sorted((mix or {}).items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
            if count > 0:
                wid, note = (f"rebalanced/{skill}", "the targeted arm's count of this skill")
                if skill is None:
                    wid, note = REBALANCED_REST, "the targeted arm's examples of no skill: the data's own mix"
                out.append(_target(wid, skill, float(count), note, notes={"quota": count, "weight": 1.0}))
        return out
    return [_target(source, None, 1.0, f"{source}: no failure analysis")]


def round_mix(skill_quota: list[dict[str, int]], quota: list[int], k: int) -> dict[str | None, int]:
    """Round ``k``'s examples per skill for ``rebalanced``: the k-th entry of ``skill_quota``, and
    under None what the round's ``quota`` keeps beyond it (examples of no particular skill)."""
    mix: dict[str | None, int] = dict(skill_quota[k - 1]) if k <= len(skill_quota) else {}
    if quota:
        rest = (quota[k - 1] if k <= len(quota) else 0) - sum(mix.values())
        if rest > 0:
            mix[None] = rest
    return {s: n for s, n in mix.items() if n > 0}


def cap_by_weakness(k: int, candidates: list[Candidate], weaknesses: list[Weakness], seed: int) -> None:
    """Keep at most ``notes["quota"]`` survivors of each weakness that names one (a random subset,
    the same whenever round ``k`` runs); the others are dropped by ``quota``."""
    caps = {w.id: int(w.notes["quota"]) for w in weaknesses if "quota" in w.notes}
    for wid, cap in caps.items():
        kept = [c for c in candidates if c.dropped is None and c.weakness == wid]
        random.Random(f"{seed}|quota|{k}|{wid}").shuffle(kept)
        for c in kept[cap:]:
            c.drop("quota", f"round {k} keeps {cap} of {wid} (curriculum.skill_quota)")
