"""The curriculum: rounds of probe, mine, analyse, generate, filter, pool, seen by the loop.

The training loop touches it at three points: ``due(step)``; ``update(step, policy)`` (a whole
round in ``sync`` mode; in ``async`` mode the probe evaluation, after which analysis, generation
and the model-free filters run in a background thread) and, in ``async`` mode, ``poll(step,
policy)``, which at ``max_staleness`` steps after the probe joins the worker (waiting if it is not
done), runs the student check and commits; and ``state_dict()`` in every checkpoint. Whatever
changed the pool is returned as a ``RoundResult``; the loop hands the pool to its mixer.

Distributed runs: every rank calls the policy with the same examples (sharded generation); rank 0
alone analyses, generates and writes; the candidates are broadcast, every rank keeps the same
ones, and the other ranks read the committed round back from disk, so all pools are identical.

A round that raises (an analyzer outage, a bad generation spec) is recorded with its error, adds
nothing, and training goes on. A committed round is never recomputed: a resumed run that reaches
a round already on disk loads it, so a crash loses no accepted example and doubles none.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import traceback
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curriculum.analyze import Analyzer, OfflineAnalyzer
from curriculum.filters import AnswerCheck, Decontaminate, Dedup, RationaleCheck, StudentCheck, VerifiedOnly
from curriculum.generators import (
    Generator,
    HardRealGenerator,
    ProposalGenerator,
    RealGenerator,
    ReplayGenerator,
    SameImageGenerator,
    WorldGenerator,
)
from curriculum.mining import mine
from curriculum.pool import Pool
from curriculum.records import write_round
from curriculum.scoring import is_correct
from curriculum.types import Candidate, Example, Failure, Policy, Weakness

log = logging.getLogger("lessonloop")


@dataclass
class RoundResult:
    round: int
    step: int
    status: str  # "ok", "failed", "restored"
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    failures: list[Failure] = field(default_factory=list)  # an ok round's, with their images
    weaknesses: list[Weakness] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # kept and dropped, with images


@dataclass
class _Work:
    """What rank 0 prepares for the model-dependent end of a round (broadcast to all ranks)."""

    round: int
    step: int
    probe_accuracy: float
    failures: list[Failure]
    weaknesses: list[Weakness]
    candidates: list[Candidate]
    timings: dict[str, float]
    probe_skills: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    image_errors: list[str] = field(default_factory=list)


# The baselines of ``curriculum.source``: which generator makes their candidates.
BASELINE_GENERATORS = {"uniform": {"world": 1.0}, "real": {"real": 1.0}, "hard_real": {"hard_real": 1.0}}


def baseline_weaknesses(source: str, skills: list[str] | None = None) -> list[Weakness]:
    """What a baseline round aims at instead of diagnosed weaknesses: every skill of the built-in
    world (or of ``skills``) with its parameters left free (``uniform``), or the data as a whole
    (``real``, ``hard_real``). Equal rates, so the budget is split evenly."""
    if source == "uniform":
        from curriculum.world import world_skills

        return [
            Weakness(f"uniform/{s}", s, {}, 1.0, 1.0, 0, 0, [], "uniform spec: no failure analysis",
                     spec={"skill": s, "params": {}})
            for s in world_skills(skills)
        ]  # fmt: skip
    return [Weakness(source, None, {}, 1.0, 1.0, 0, 0, [], f"{source}: no failure analysis")]


def split_budget(weaknesses: list[Weakness], budget: int) -> list[int]:
    """Each weakness's share of the budget, in proportion to its failure rate (largest remainder)."""
    total = sum(w.failure_rate for w in weaknesses)
    if not weaknesses or total <= 0 or budget <= 0:
        return [0] * len(weaknesses)
    exact = [budget * w.failure_rate / total for w in weaknesses]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: shares[i] - exact[i])[: budget - sum(shares)]:
        shares[i] += 1
    return shares


class Curriculum:
    def __init__(
        self,
        cfg: Any,
        root: Path,
        train: list[Example],
        probe: list[Example],
        eval_sets: dict[str, list[Example]],
        image_size: int,
        seed: int,
        *,
        analyzer: Analyzer | None = None,
        generators: list[Generator] | None = None,
        accelerator: Any = None,
        fresh: bool = True,
        verified_only: bool = False,
        skills: list[str] | None = None,
    ) -> None:
        """``skills``: the built-in world's skills this run uses (None: all); generators make
        examples of these only."""
        self.cfg = cfg
        self.skills = skills
        self.root = Path(root)
        self.probe = probe
        self.seed = seed
        self.accelerator = accelerator
        self.is_main = accelerator is None or accelerator.is_main_process
        offline = OfflineAnalyzer(max_weaknesses=cfg.max_weaknesses)
        self.frontier = None
        if analyzer is None and cfg.analyzer == "openai":
            from curriculum.frontier.build import build_frontier

            world_data = any(ex.scene is not None for ex in train[:100])
            self.frontier = build_frontier(cfg.frontier, offline, rendered=world_data, skills=skills)
        self.analyzer = analyzer or (self.frontier.analyzer if self.frontier else offline)
        self.generators = generators or [
            # First: only frontier weaknesses carry proposals.
            ProposalGenerator(image_size, self.frontier.images if self.frontier else None, skills),
            WorldGenerator(image_size),
            SameImageGenerator(skills),
            ReplayGenerator(train),
            RealGenerator(image_size, skills),
            HardRealGenerator(train),
        ]
        if fresh and self.is_main and self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        self._barrier()
        self.pool = Pool(self.root / "pool", cap=cfg.pool_cap)
        self.answer_check = AnswerCheck()
        self.verified_only = verified_only  # GRPO: only answers a reward can trust
        self.rationales = self.frontier is not None and cfg.frontier.rationales
        self.decontaminate = Decontaminate(eval_sets, probe, cfg.near_duplicate)
        self.seen: set[str] = set()
        self.history: list[dict[str, Any]] = []
        self.exemplars: list[dict[str, Any]] = []  # last round's accepted examples the student failed
        self._executor: ThreadPoolExecutor | None = None
        self._pending: tuple[int, int, float, float, Future | None] | None = None
        self._redo: tuple[int, int] | None = None

    # ------------------------------------------------------------------ the loop's interface

    def due(self, step: int) -> bool:
        return step > 0 and step % self.cfg.every == 0

    def update(self, step: int, policy: Policy) -> RoundResult | None:
        """Run the round of this step (sync), or start it (async: returns None)."""
        k = step // self.cfg.every
        if k <= self.pool.version:
            return None  # already part of the restored pool
        if self.pool.has_round(k):
            return self._restore(k, step)
        return self._start(k, step, policy)

    def _start(self, k: int, step: int, policy: Policy) -> RoundResult | None:
        t0 = time.perf_counter()
        try:
            probe, predictions, correct = self._probe(k, policy)
        except Exception as err:  # the model could not be asked: record, skip the round
            return self._record_failure(k, step, err, {"probe_s": time.perf_counter() - t0})
        probe_s = time.perf_counter() - t0
        if self.cfg.mode == "sync":
            work = self._on_main(lambda: self._prepare(k, step, probe, predictions, correct, probe_s))
            return self._finish(work, policy, blocked_s=time.perf_counter() - t0)
        future = None
        if self.is_main:
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="curriculum")
            future = self._executor.submit(self._prepare, k, step, probe, predictions, correct, probe_s)
        self._pending = (k, step, probe_s, time.perf_counter() - t0, future)
        return None

    def poll(self, step: int, policy: Policy) -> RoundResult | None:
        """Async: at ``max_staleness`` steps after a round's probe, finish and inject it."""
        if self._redo is not None:  # resumed while a round was in flight: start it again now
            k, start = self._redo
            self._redo = None
            if self.pool.has_round(k):
                return self._restore(k, start)
            failed = self._start(k, start, policy)
            if failed is not None:
                return failed
        if self._pending is None or step < self._pending[1] + self.cfg.max_staleness:
            return None
        k, start, probe_s, blocked_before, future = self._pending
        self._pending = None
        t0 = time.perf_counter()
        work = self._on_main(lambda: future.result())  # type: ignore[union-attr]
        wait_s = time.perf_counter() - t0
        work.timings["wait_s"] = wait_s
        return self._finish(work, policy, blocked_s=blocked_before + wait_s, inject_step=step)

    @property
    def _ledger(self) -> Any:
        """The spending ledger of the frontier endpoints (None when nothing calls an API)."""
        if self.frontier is not None:
            return self.frontier.ledger
        return getattr(getattr(self.analyzer, "client", None), "ledger", None)

    def pool_view(self) -> tuple[list[Example], list[float]]:
        """The live pool examples and their sampling weights, for the mixer."""
        examples = self.pool.examples
        return examples, [self.pool.weights[ex.id] for ex in examples]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def state_dict(self) -> dict[str, Any]:
        pending = list(self._pending[:2]) if self._pending else list(self._redo) if self._redo else None
        return {
            "version": self.pool.version,
            "seen": sorted(self.seen),
            "history": list(self.history),
            "pending": pending,
            "exemplars": list(self.exemplars),
            "spent": self._ledger.state_dict() if self._ledger is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool = Pool(self.root / "pool", self.cfg.pool_cap, upto=state["version"])
        self.seen = set(state["seen"])
        self.history = list(state["history"])
        self.exemplars = list(state.get("exemplars", []))
        if self._ledger is not None and state.get("spent"):
            self._ledger.load_state_dict(state["spent"])
        self._redo = tuple(state["pending"]) if state.get("pending") else None  # type: ignore[assignment]

    # ------------------------------------------------------------------ the round's stages

    def _probe(self, k: int, policy: Policy) -> tuple[list[Example], list[str], list[bool]]:
        items = self.probe
        if self.cfg.probe_max and len(items) > self.cfg.probe_max:
            items = random.Random(f"{self.seed}|probe|{k}").sample(items, self.cfg.probe_max)
        if not self.cfg.probe_samples:
            predictions = policy.answer(items)
            return (
                items,
                predictions,
                [is_correct(p, ex.answer) for p, ex in zip(predictions, items, strict=True)],
            )
        # Sampled: an item fails when its pass rate is at most the threshold (GRPO: all rollouts fail).
        samples = policy.sample(items, self.cfg.probe_samples)
        marks = [[is_correct(p, ex.answer) for p in ps] for ps, ex in zip(samples, items, strict=True)]
        rates = [sum(m) / len(m) for m in marks]
        # The recorded prediction is a wrong sample when there is one.
        predictions = [
            next((p for p, ok in zip(ps, m, strict=True) if not ok), ps[0])
            for ps, m in zip(samples, marks, strict=True)
        ]
        return items, predictions, [r > self.cfg.failure_pass_rate for r in rates]

    def _prepare(
        self,
        k: int,
        step: int,
        probe: list[Example],
        predictions: list[str],
        correct: list[bool],
        probe_s: float,
    ) -> _Work:
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
                weaknesses = self.analyzer.analyze(
                    failures, list(zip(probe, correct, strict=True)), exemplars=self.exemplars
                )
            else:
                weaknesses = baseline_weaknesses(self.cfg.source, self.skills)
            timings["analyse_s"] = time.perf_counter() - t
            t = time.perf_counter()
            candidates = self._generate(k, weaknesses, failures)
            image_errors = self._image_errors()
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
            errors = self._image_errors()
            return _Work(k, step, accuracy, [], [], [], timings, skills, traceback.format_exc(), errors)
        return _Work(k, step, accuracy, failures, weaknesses, candidates, timings, skills, None, image_errors)

    def _filters(self, dedup: Dedup) -> list[Any]:
        """The model-free filters of a round, in order (the student check comes after, on all ranks)."""
        checks: list[Any] = [self.answer_check, dedup, self.decontaminate]
        if self.frontier is not None and self.frontier.judges is not None:
            checks.append(self.frontier.judges)
        if self.rationales:
            checks.append(RationaleCheck())
        if self.verified_only:
            checks.append(VerifiedOnly())
        return checks

    def _generate(self, k: int, weaknesses: list[Weakness], failures: list[Failure]) -> list[Candidate]:
        by_id = {f.example.id: f for f in failures}
        shares = (
            self.cfg.generators if self.cfg.source == "diagnosed" else BASELINE_GENERATORS[self.cfg.source]
        )
        out: list[Candidate] = []
        for w_index, (weakness, budget) in enumerate(
            zip(weaknesses, split_budget(weaknesses, self.cfg.budget), strict=True)
        ):
            mine_ = [by_id[i] for i in weakness.failure_ids if i in by_id]
            gens = [g for g in self.generators if shares.get(g.name, 0) > 0]
            left = budget
            for g_index, gen in enumerate(gens):
                rest = sum(shares[g.name] for g in gens[g_index:])
                want = round(left * shares[gen.name] / rest) if g_index < len(gens) - 1 else left
                prefix = f"r{k:04d}-w{w_index}-{gen.name}"
                made = gen.generate(
                    weakness, mine_, want, seed=hash_seed(self.seed, k, w_index, gen.name), prefix=prefix
                )
                made = made[:want]
                left -= len(made)  # what one generator cannot make, the next ones get
                for ex in made:
                    ex.meta.update(round=k, failures=weakness.failure_ids[:20], weight=weakness.failure_rate)
                    if self.rationales:
                        ex.meta.setdefault("rationale_options", [])  # the judges may offer some
                    out.append(Candidate(ex, weakness.id, gen.name))
        return out

    def _quota(self, k: int, candidates: list[Candidate]) -> None:
        """``curriculum.quota``: keep at most the round's quota of the survivors, a random subset."""
        if not self.cfg.quota:
            return
        cap = self.cfg.quota[k - 1] if k <= len(self.cfg.quota) else 0
        kept = [c for c in candidates if c.dropped is None]
        random.Random(f"{self.seed}|quota|{k}").shuffle(kept)
        for c in kept[cap:]:
            c.drop("quota", f"round {k} keeps {cap} (curriculum.quota)")

    def _finish(
        self, work: _Work, policy: Policy, blocked_s: float, inject_step: int | None = None
    ) -> RoundResult:
        """Student check, mastery check and commit (all ranks), then the record (rank 0)."""
        k, step = work.round, work.step
        self.seen.update(f.example.id for f in work.failures)
        if work.error is not None:
            return self._record_failure(k, step, work.error, work.timings, work)
        t = time.perf_counter()
        try:
            check = "off" if self.cfg.source == "real" else self.cfg.student_check  # real data as it comes
            StudentCheck(policy, check, tuple(self.cfg.band), self.cfg.band_samples)(work.candidates)
            self._quota(k, work.candidates)
            retire = self._mastered(policy)
            work.timings["student_s"] = time.perf_counter() - t
            kept = [c.example for c in work.candidates if c.dropped is None]
            self.exemplars = exemplars_of(kept)
            for c in work.candidates:
                if c.dropped is None:
                    c.example.meta["verdicts"] = dict(c.verdicts)  # provenance travels with the example
            t = time.perf_counter()
            retired = self._commit(k, kept, retire)
            work.timings["commit_s"] = time.perf_counter() - t
        except Exception as err:
            return self._record_failure(k, step, err, work.timings, work)
        work.timings["blocked_s"] = blocked_s + work.timings["student_s"] + work.timings["commit_s"]
        dropped = Counter(c.dropped for c in work.candidates if c.dropped)
        metrics = {
            "curriculum/round": k,
            "curriculum/probe_accuracy": work.probe_accuracy,
            "curriculum/failures": len(work.failures),
            "curriculum/new_failures": sum(f.new for f in work.failures),
            "curriculum/weaknesses": len(work.weaknesses),
            "curriculum/candidates": len(work.candidates),
            "curriculum/kept": len(kept),
            "curriculum/retired": len(retired),
            "curriculum/pool_size": len(self.pool),
            "curriculum/blocked_s": work.timings["blocked_s"],
            **{f"curriculum/dropped_{name}": float(n) for name, n in dropped.items()},
            **{f"curriculum/probe_skill/{s}": v for s, v in work.probe_skills.items()},
        }
        cost = self._cost(work.candidates)
        if cost:
            metrics.update({f"curriculum/{key}": value for key, value in cost.items()})
        if work.image_errors:
            metrics["curriculum/image_errors"] = len(work.image_errors)
        summary = {
            "round": k,
            "step": step,
            "inject_step": inject_step if inject_step is not None else step,
            "status": "ok",
            "mode": self.cfg.mode,
            "weaknesses": [w.id for w in work.weaknesses],
            "kept_by_generator": dict(Counter(c.generator for c in work.candidates if c.dropped is None)),
            "dropped_by_filter": dict(dropped),
            "timings": work.timings,
            "metrics": metrics,
        }
        if cost:
            summary["cost"] = cost
        if work.image_errors:
            summary["image_errors"] = work.image_errors
        if self.is_main:
            write_round(self.root, k, summary, work.failures, work.weaknesses, work.candidates)
        self.history.append({"round": k, "step": step, "status": "ok", "kept": len(kept)})
        log.info(
            "curriculum round %d @ step %d: probe accuracy %.3f, %d failures (%d new), %d weaknesses, "
            "kept %d of %d candidates, pool %d, %.1fs blocked",
            k, step, work.probe_accuracy, len(work.failures), metrics["curriculum/new_failures"],
            len(work.weaknesses), len(kept), len(work.candidates), len(self.pool), work.timings["blocked_s"],
        )  # fmt: skip
        return RoundResult(k, step, "ok", metrics, None, work.failures, work.weaknesses, work.candidates)

    def _cost(self, candidates: list[Candidate]) -> dict[str, float]:
        """What this round spent on the frontier, and per accepted example (all of them, and those
        the frontier proposed); the run totals. Empty when nothing calls an API."""
        ledger = self._ledger
        if ledger is None:
            return {}
        kept = [c for c in candidates if c.dropped is None]
        proposed = [c for c in kept if c.generator == "proposals"]
        spent = ledger.round_dict()
        return {
            "round_cost_usd": spent["cost"],
            "cost_per_kept_usd": spent["cost"] / max(1, len(kept)),
            "cost_per_kept_proposal_usd": spent["cost"] / max(1, len(proposed)),
            "cost_usd": ledger.cost,
            **{f"frontier_{key}": value for key, value in spent.items() if key != "cost"},
        }

    def _image_errors(self) -> list[str]:
        """Image requests that failed this round (their proposals were skipped)."""
        out: list[str] = []
        for gen in self.generators:
            errors = getattr(gen, "image_errors", None)
            if errors:
                out += errors
                errors.clear()
        return out

    def _mastered(self, policy: Policy) -> list[str]:
        """Ids of the oldest pool examples (up to ``retire_check``) the model now answers right."""
        check = self.pool.examples[: self.cfg.retire_check]
        if not check:
            return []
        answers = policy.answer(check)
        return [ex.id for ex, a in zip(check, answers, strict=True) if is_correct(a, ex.answer)]

    def _restore(self, k: int, step: int) -> RoundResult:
        self.pool.apply_round(k)
        self.exemplars = exemplars_of(self.pool.round_examples(k))
        self.history.append({"round": k, "step": step, "status": "restored"})
        log.info("curriculum round %d @ step %d: restored from disk (pool %d)", k, step, len(self.pool))
        return RoundResult(
            k, step, "restored", {"curriculum/round": k, "curriculum/pool_size": len(self.pool)}
        )

    def _record_failure(
        self,
        k: int,
        step: int,
        err: BaseException | str,
        timings: dict[str, float],
        work: _Work | None = None,
    ) -> RoundResult:
        text = err if isinstance(err, str) else "".join(traceback.format_exception(err))
        last = text.strip().splitlines()[-1] if text.strip() else "error"
        log.warning("curriculum round %d @ step %d failed, training goes on: %s", k, step, last)
        # The failed round is committed empty, so a resumed run reloads it instead of redoing it.
        if k > self.pool.version and not self.pool.has_round(k):
            try:
                self._commit(k, [], [])
            except Exception as commit_err:  # the record below still says what happened
                log.warning("curriculum round %d: could not commit it empty: %s", k, commit_err)
        if self.is_main:
            summary = {"round": k, "step": step, "status": "failed", "error": text, "timings": timings}
            if cost := self._cost(work.candidates if work else []):
                summary["cost"] = cost  # what the failed round spent before it failed
            if work is not None and work.image_errors:
                summary["image_errors"] = work.image_errors
            write_round(self.root, k, summary, work.failures if work else [], work.weaknesses if work else [])
        self.history.append({"round": k, "step": step, "status": "failed", "error": last})
        return RoundResult(k, step, "failed", {"curriculum/round": k, "curriculum/failed": 1.0}, error=last)

    # ------------------------------------------------------------------ distributed helpers

    def _commit(self, k: int, kept: list[Example], retire: list[str]) -> list[str]:
        """Rank 0 commits round k; the other ranks then read it back, so all pools agree."""
        retired = self.pool.commit_round(k, kept, retire) if self.is_main else []
        self._barrier()
        if not self.is_main:
            self.pool.apply_round(k)
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            digest = hashlib.sha1("\n".join(self.pool.ids()).encode()).hexdigest()
            seen = gather_object([(self.pool.version, digest)])
            if len(set(seen)) != 1:
                raise RuntimeError(f"curriculum pools differ across ranks after round {k}: {seen}")
        return retired

    def _on_main(self, fn: Any) -> _Work:
        """Run ``fn`` on rank 0 and give every rank its result."""
        result = fn() if self.is_main else None
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            box = [result]
            broadcast_object_list(box, from_process=0)
            result = box[0]
        return result

    def _barrier(self) -> None:
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()


def exemplars_of(kept: list[Example]) -> list[dict[str, Any]]:
    """A round's accepted examples that the student still failed, one weakness at a time
    (round-robin). Read from the examples alone, so a restored round gives the same ones."""
    by_weakness: dict[str, list[Example]] = {}
    for ex in kept:
        if "student_answer" in ex.meta or ex.meta.get("student_pass_rate", 1.0) < 1.0:
            by_weakness.setdefault(ex.meta.get("weakness", ""), []).append(ex)
    out: list[dict[str, Any]] = []
    for depth in range(max((len(v) for v in by_weakness.values()), default=0)):
        for weakness, items in by_weakness.items():
            if depth < len(items):
                ex = items[depth]
                out.append({"question": ex.question, "answer": ex.answer, "skill": ex.skill,
                            "student_answer": ex.meta.get("student_answer"), "weakness": weakness})  # fmt: skip
    return out[:64]


def hash_seed(*parts: Any) -> int:
    """A stable integer seed from parts (Python's ``hash`` of a str changes between runs)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")
