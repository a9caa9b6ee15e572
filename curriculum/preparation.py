"""How a round is prepared from its probe: mining, analysis, generation and the model-free
filters, then the quota on the survivors of the student check. ``Curriculum`` (curriculum.engine)
takes these from ``RoundPreparation``; they read its settings (``cfg``, ``seed``, ``skills``,
``data_skills``, ``world_data``), its parts (``analyzer``, ``generators``, ``frontier``,
``answer_check``, ``decontaminate``, ``rationales``, ``verified_only``, ``allow_unverified``), the
live ``pool`` and what earlier rounds left (``seen``, ``exemplars``). Preparation changes none of
these but the frontier ledger's round, so it may run in the worker thread while training goes on.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from typing import Any

from curriculum.baselines import baseline_generators, baseline_weaknesses, cap_by_weakness, round_mix
from curriculum.budget import make_candidates, take_image_errors
from curriculum.filters import Dedup, RationaleCheck, VerifiedOnly
from curriculum.mining import mine
from curriculum.rounds import Prepared
from curriculum.types import Candidate, Example, Failure, Weakness


class RoundPreparation:
    """The model-free stages of a round (see the module's docstring for what they read)."""

    cfg: Any
    seed: int

    def _prepare(
        self,
        k: int,
        step: int,
        probe: list[Example],
        predictions: list[str],
        correct: list[bool],
        probe_s: float,
    ) -> Prepared:
        """Mining, analysis, generation and the model-free filters (rank 0; maybe in a thread)."""
        timings = {"probe_s": probe_s}
        accuracy = sum(correct) / max(1, len(correct))
        by_skill: dict[str, list[bool]] = {}
        for ex, ok in zip(probe, correct, strict=True):
            by_skill.setdefault(ex.skill or "all", []).append(ok)
        skills = {s: sum(v) / len(v) for s, v in by_skill.items()}
        try:
            t = time.perf_counter()
            rng = random.Random(f"{self.seed}|mine|{k}")
            failures = mine(probe, predictions, correct, self.seen, k, self.cfg.max_failures, rng)
            timings["mine_s"] = time.perf_counter() - t
            t = time.perf_counter()
            if self._ledger is not None:
                self._ledger.start_round()
            if self.cfg.source == "diagnosed":
                frontier = getattr(self.analyzer, "name", None) == "openai"
                asked = {"proposals": self._proposal_share()} if frontier else {}
                weaknesses = self.analyzer.analyze(
                    failures, list(zip(probe, correct, strict=True)), exemplars=self.exemplars, **asked
                )
            else:
                mix = round_mix(self.cfg.skill_quota, self.cfg.quota, k)  # rebalanced: the round's skills
                weaknesses = baseline_weaknesses(
                    self.cfg.source, self.skills, data_skills=self.data_skills, mix=mix
                )
            timings["analyse_s"] = time.perf_counter() - t
            t = time.perf_counter()
            candidates = self._generate(k, weaknesses, failures)
            image_errors = take_image_errors(self.generators)
            timings["generate_s"] = time.perf_counter() - t
            t = time.perf_counter()
            # Duplicates are judged against the live pool (a retired example may come back).
            dedup = Dedup(self.cfg.near_duplicate)
            for ex in self.pool.examples:
                dedup.add(ex)
            for check in self._filters(dedup):
                check(candidates)
            timings["filter_s"] = time.perf_counter() - t
        except Exception:
            errors = take_image_errors(self.generators)
            return Prepared(k, step, accuracy, [], [], [], timings, skills, traceback.format_exc(), errors)
        return Prepared(
            k, step, accuracy, failures, weaknesses, candidates, timings, skills, None, image_errors
        )

    def _filters(self, dedup: Dedup) -> list[Any]:
        """The model-free filters of a round, in order (the student check comes after, on all ranks)."""
        checks: list[Any] = [self.answer_check, dedup, self.decontaminate]
        if self.frontier is not None and self.frontier.judges is not None:
            checks.append(self.frontier.judges)
        if self.rationales:
            checks.append(RationaleCheck())
        # Last: it records how each survivor's answer was checked, the judges' verdict included.
        checks.append(VerifiedOnly(allow_unverified=self.allow_unverified and not self.verified_only))
        return checks

    def _proposal_share(self) -> int:
        """Candidates a round's budget leaves to the frontier's proposals (``curriculum.generators``),
        rounded up: the most proposals the frontier is asked for in a round."""
        shares = {g: v for g, v in self.cfg.generators.items() if v > 0}
        return math.ceil(self.cfg.budget * shares.get("proposals", 0.0) / sum(shares.values()))

    def _generate(self, k: int, weaknesses: list[Weakness], failures: list[Failure]) -> list[Candidate]:
        diagnosed = self.cfg.source == "diagnosed"
        shares = self.cfg.generators if diagnosed else baseline_generators(self.cfg.source, self.world_data)
        return make_candidates(k, weaknesses, failures, self.generators, shares, self.cfg.budget, self.seed,
                               self.rationales)  # fmt: skip

    def _quota(self, k: int, candidates: list[Candidate], weaknesses: list[Weakness]) -> None:
        """``curriculum.quota``: keep at most the round's quota of the survivors, a random subset
        (and first at most its own quota of each weakness that names one: ``rebalanced``'s skills)."""
        cap_by_weakness(k, candidates, weaknesses, self.seed)
        if not self.cfg.quota:
            return
        cap = self.cfg.quota[k - 1] if k <= len(self.cfg.quota) else 0
        kept = [c for c in candidates if c.dropped is None]
        random.Random(f"{self.seed}|quota|{k}").shuffle(kept)
        for c in kept[cap:]:
            c.drop("quota", f"round {k} keeps {cap} (curriculum.quota)")
