"""The curriculum: rounds of probe, mine, analyse, generate, filter, pool, seen by the loop.

The training loop touches it at three points: ``due(step)``; ``update(step, policy)`` (a whole
round in ``sync`` mode; in ``async`` mode the probe evaluation, after which analysis, generation
and the model-free filters run in a background thread) and, in ``async`` mode, ``poll(step,
policy)``, which at ``max_staleness`` steps after the probe joins the worker (waiting if it is not
done), runs the student check and commits; and ``state_dict()`` in every checkpoint. Whatever
changed the pool is returned as a ``RoundResult``; the loop hands the pool to its mixer. With
``curriculum.snapshot`` (one process, greedy rounds) an async round runs whole in the worker, on
a frozen copy of the model taken at the probe step: probe, preparation, student check and the
commit to disk; ``poll`` then only applies it, and a checkpoint taken while it is in flight waits
for its commit, so a resumed run loads it back from disk.

Distributed runs: every rank calls the policy with the same examples (sharded generation); rank 0
alone analyses, generates and writes; the candidates are broadcast, every rank keeps the same
ones, and the other ranks read the committed round back from disk, so all pools are identical.
After each step of a round that may fail on one rank only, the ranks agree on whether any failed
(``curriculum.ranks``), so they all take the same branch and none waits for another forever.

A round that raises (an analyzer outage, a bad generation spec) is recorded with its error, adds
nothing, and training goes on. A committed round is never recomputed: a resumed run that reaches
a round already on disk loads it, with its outcome (``curriculum.rounds``) and at the step it
joined the run the first time, so a crash loses no accepted example, doubles none, and changes
nothing that follows. Each round's record is written just before its commit point.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from curriculum.analyze import Analyzer, OfflineAnalyzer
from curriculum.baselines import baseline_weaknesses
from curriculum.budget import balance_answers, hash_seed, split_budget
from curriculum.filters import AnswerCheck, Decontaminate, StudentCheck
from curriculum.generators import Generator, default_generators
from curriculum.mining import answer_priors, answer_probe, probe_items
from curriculum.pool import Pool
from curriculum.preparation import RoundPreparation
from curriculum.ranks import Ranks, RanksDisagree
from curriculum.records import write_round
from curriculum.rounds import (
    InFlight,
    Prepared,
    RoundResult,
    exemplars_of,
    failed_outcome,
    failed_summary,
    ok_outcome,
    ok_summary,
    own_rng,
    round_cost,
)
from curriculum.scoring import is_correct
from curriculum.store import RoundStore
from curriculum.types import Example, Policy

__all__ = ["Curriculum", "RanksDisagree", "RoundResult", "baseline_weaknesses", "exemplars_of"]
__all__ += ["split_budget"]

log = logging.getLogger("lessonloop")


class Curriculum(RoundPreparation):
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
        allow_unverified: bool = False,
        skills: list[str] | None = None,
        frontier: Any = None,
        reserve: list[Example] | None = None,
    ) -> None:
        """``skills``: the built-in world's skills this run uses (None: all); generators make
        examples of these only. ``verified_only`` (GRPO: a reward needs a trusted answer) and,
        unless ``allow_unverified``, every run keep only candidates whose answer a program
        verified, a judge panel accepted, or that are the user's own labelled items. ``frontier``:
        the frontier already built from ``cfg.frontier`` (``build_frontier``); None builds it here
        when ``cfg.analyzer`` is ``openai``. ``reserve``: external data's train items held back
        from training (``data.hf.reserve``), which the baselines that add fresh real data draw
        from (the built-in world makes new items instead)."""
        self.cfg = cfg
        self.skills = skills
        self.root = Path(root)
        self.probe = probe
        self.seed = seed
        self.ranks = Ranks(accelerator)
        self.is_main = self.ranks.is_main
        offline = OfflineAnalyzer.of(cfg)
        self.frontier = frontier
        self.world_data = any(ex.scene is not None for ex in train[:100])
        self.priors = answer_priors(train) if cfg.failure_pass_rate == "prior" else None
        # External data's skills, over which its uniform baseline draws the reserve (None: the world).
        self.data_skills = None if self.world_data else sorted({ex.skill for ex in reserve or [] if ex.skill})
        if analyzer is None and frontier is None and cfg.analyzer == "openai":
            from curriculum.frontier.build import build_frontier

            self.frontier = build_frontier(cfg.frontier, offline, rendered=self.world_data, skills=skills)
        self.analyzer = analyzer or (self.frontier.analyzer if self.frontier else offline)
        images = self.frontier.images if self.frontier else None
        reserve = None if self.world_data else reserve or []
        taken = lambda: {ex.meta.get("reserve_of") for ex in self.pool.examples}  # noqa: E731
        self.generators = generators or default_generators(image_size, train, skills, images, reserve, taken)
        if fresh and self.is_main and self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        self.ranks.barrier()
        self.store = RoundStore(self.root, cfg.pool_cap, self.ranks)
        self.answer_check = AnswerCheck()
        self.verified_only = verified_only
        self.allow_unverified = allow_unverified
        self.rationales = self.frontier is not None and cfg.frontier.rationales
        self.decontaminate = Decontaminate(eval_sets, probe, cfg.near_duplicate)
        self.seen: set[str] = set()
        self.history: list[dict[str, Any]] = []
        self.exemplars: list[dict[str, Any]] = []  # last round's accepted examples the student failed
        self._executor: ThreadPoolExecutor | None = None
        self._pending: InFlight | None = None
        self._redo: dict[str, Any] | None = None  # a checkpoint's round in flight, taken up at the next poll

    # ------------------------------------------------------------------ the loop's interface

    def due(self, step: int) -> bool:
        return step > 0 and step % self.cfg.every == 0

    def update(self, step: int, policy: Policy) -> RoundResult | None:
        """Run the round of this step (sync), or start it (async: returns None)."""
        k = step // self.cfg.every
        if k <= self.pool.version:
            return None  # already part of the restored pool
        if self.store.on_disk(k):
            return self._committed(k, step)
        return self._start(k, step, policy)

    def poll(self, step: int, policy: Policy) -> RoundResult | None:
        """Async: at ``max_staleness`` steps after a round's probe, finish and inject it."""
        if self._redo is not None:  # resumed while a round was in flight: take it up again
            redo, self._redo = self._redo, None
            k, start = redo["round"], redo["step"]
            taken = (
                self._committed(k, start)
                if self.store.on_disk(k)
                else self._start(k, start, policy, redo.get("probe"))
            )
            if taken is not None:
                return taken
        flight = self._pending
        if flight is None or step < flight.inject:
            return None
        self._pending = None
        if flight.committed:
            return self._restore(flight.round, flight.step)
        t0 = time.perf_counter()
        if flight.background:  # committed to disk by the worker: the pool takes it now
            work, outcome, status = flight.future.result()  # type: ignore[union-attr]
            if self.store.on_disk(flight.round):
                self.store.hold(flight.round)
            return self._concluded(
                flight.round, work, outcome, status, flight.blocked_s + time.perf_counter() - t0
            )
        joined = lambda: flight.future.result()  # noqa: E731  (rank 0 alone has the worker's future)
        work = self.ranks.on_main(joined, self._broken(flight.round, flight.step))  # type: ignore[union-attr]
        wait_s = time.perf_counter() - t0
        work.timings["wait_s"] = wait_s
        return self._finish(work, policy, blocked_s=flight.blocked_s + wait_s, inject_step=step)

    @property
    def _ledger(self) -> Any:
        """The spending ledger of the frontier endpoints (None when nothing calls an API)."""
        if self.frontier is not None:
            return self.frontier.ledger
        return getattr(getattr(self.analyzer, "client", None), "ledger", None)

    @property
    def pool(self) -> Pool:
        """The curriculum pool as of the last round this run applied."""
        return self.store.pool

    def pool_view(self) -> tuple[list[Example], list[float]]:
        """The live pool examples and their sampling weights, for the mixer."""
        examples = self.pool.examples
        return examples, [self.pool.weights[ex.id] for ex in examples]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None and self._pending.background:
            self._pending.future.result()  # type: ignore[union-attr]  # on disk, so a resumed run loads it back
        return {
            "version": self.pool.version,
            "seen": sorted(self.seen),
            "history": list(self.history),
            "pending": self._pending.state_dict() if self._pending else self._redo,
            "exemplars": list(self.exemplars),
            "spent": self._ledger.state_dict() if self._ledger is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.store.reopen(upto=state["version"])
        self.seen = set(state["seen"])
        self.history = list(state["history"])
        self.exemplars = list(state.get("exemplars", []))
        if self._ledger is not None and state.get("spent"):
            self._ledger.load_state_dict(state["spent"])
        pending = state.get("pending")
        if isinstance(pending, list):  # [round, step]: a checkpoint of an earlier version
            pending = {"round": pending[0], "step": pending[1]}
        self._redo = pending or None

    # ------------------------------------------------------------------ the round's stages

    def _start(
        self, k: int, step: int, policy: Policy, probe: dict[str, list[Any]] | None = None
    ) -> RoundResult | None:
        """The probe (or, resuming a round in flight, the probe results a checkpoint kept), then
        the rest of the round (sync) or its preparation in a worker (async)."""
        t0 = time.perf_counter()
        snap = policy.snapshot() if probe is None and self._in_background(policy) else None  # type: ignore[attr-defined]
        if snap is not None:  # the whole round in the worker, on a copy of the model as it is now
            inject, snapshot_s = step + self.cfg.max_staleness, time.perf_counter() - t0
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="curriculum")
            future = self._executor.submit(self._whole_round, k, step, snap, inject, snapshot_s)
            self._pending = InFlight(k, step, inject, time.perf_counter() - t0, future, background=True)
            return None
        items, error = probe_items(self.probe, self.cfg.probe_max, self.seed, k), None
        if probe is not None and len(probe["predictions"]) == len(probe["correct"]) == len(items):
            predictions, correct = list(probe["predictions"]), list(probe["correct"])
        else:
            try:
                with self._own_rng(k, "probe"):
                    predictions, correct = self._ask_probe(items, policy)
            except Exception:  # the model could not be asked: record, skip the round
                error = traceback.format_exc()
        error = self.ranks.first_error(error)
        probe_s = time.perf_counter() - t0
        if error is not None:
            return self._fail(k, step, error, {"probe_s": probe_s}, None, step)
        if self.cfg.mode == "sync":
            prepare = partial(self._prepare, k, step, items, predictions, correct, probe_s)
            work = self.ranks.on_main(prepare, self._broken(k, step))
            return self._finish(work, policy, blocked_s=time.perf_counter() - t0, inject_step=step)
        future = None
        if self.is_main:
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="curriculum")
            future = self._executor.submit(self._prepare, k, step, items, predictions, correct, probe_s)
        self._pending = InFlight(k, step, step + self.cfg.max_staleness, time.perf_counter() - t0, future,
                                 {"predictions": predictions, "correct": correct})  # fmt: skip
        return None

    def _ask_probe(self, items: list[Example], policy: Policy) -> tuple[list[str], list[bool]]:
        """The policy's answers to the probe items, and which count as right."""
        rate = self.priors if self.priors is not None else self.cfg.failure_pass_rate
        return answer_probe(items, policy, self.cfg.probe_samples, rate)

    def _in_background(self, policy: Policy) -> bool:
        """Whether an async round runs whole in the worker (``curriculum.snapshot``): one process,
        a policy that can copy its model, and nothing drawn at random (greedy probe and check)."""
        cfg = self.cfg
        return (cfg.mode == "async" and cfg.snapshot and not self.ranks.many and hasattr(policy, "snapshot")
                and cfg.probe_samples == 0 and cfg.student_check != "band")  # fmt: skip

    def _finish(self, work: Prepared, policy: Policy, blocked_s: float, inject_step: int) -> RoundResult:
        """Student check and mastery check (all ranks), then the record and the commit (rank 0)."""
        t = time.perf_counter()
        retire, error = self._check(work, policy)
        outcome, status = self._commit(work, retire, error, blocked_s, inject_step)
        return self._concluded(work.round, work, outcome, status, blocked_s + time.perf_counter() - t)

    def _check(self, work: Prepared, policy: Policy, own_rng: bool = True) -> tuple[list[str], str | None]:
        """The student check, the quota and the mastery check (all ranks): the pool ids to retire,
        and the round's error, if any. ``own_rng``: on the round's own random streams (a background
        round draws nothing and must not touch the streams training draws from)."""
        if work.error is not None:
            return [], work.error
        t, retire, error = time.perf_counter(), [], None
        try:
            with self._own_rng(work.round, "student") if own_rng else nullcontext():
                # Real data as it comes (the ``real`` and ``rebalanced`` baselines): no student check.
                check = "off" if self.cfg.source in ("real", "rebalanced") else self.cfg.student_check
                StudentCheck(policy, check, tuple(self.cfg.band), self.cfg.band_samples)(work.candidates)
                balance_answers(work.candidates, work.weaknesses)
                self._quota(work.round, work.candidates, work.weaknesses)
                retire = self._mastered(policy)
        except Exception:
            error = traceback.format_exc()
        work.timings["student_s"] = time.perf_counter() - t
        return retire, self.ranks.first_error(error)

    def _commit(
        self, work: Prepared, retire: list[str], error: str | None, blocked_s: float, inject_step: int,
        apply: bool = True,
    ) -> tuple[dict[str, Any], str]:  # fmt: skip
        """Commit the round with its record: what it kept, or nothing when it failed (``error``).
        Returns its stored outcome and status (``ok``, ``failed``). ``apply``: the pool holds it
        now (else at its injection: a round committed from the background thread)."""
        k, step = work.round, work.step
        if error is not None:
            return self._commit_failed(k, step, error, work.timings, work, inject_step, apply), "failed"
        kept = [c.example for c in work.candidates if c.dropped is None]
        for c in work.candidates:
            if c.dropped is None:
                c.example.meta["verdicts"] = dict(c.verdicts)  # provenance travels with the example
        t = time.perf_counter()

        def describe(retired: list[str]) -> tuple[dict[str, Any], Callable[[], None]]:
            cost = round_cost(self._ledger, work.candidates)
            spent = self._ledger.state_dict() if self._ledger is not None else None
            pool_size = len(self.pool) + len(kept) - len(retired)
            outcome = ok_outcome(work, len(kept), len(retired), pool_size, inject_step, cost, spent)

            def record() -> None:
                work.timings["commit_s"] = time.perf_counter() - t
                waited = work.timings["student_s"] + work.timings["commit_s"] if apply else 0.0
                work.timings["blocked_s"] = blocked_s + waited
                summary = ok_summary(work, outcome, self.cfg.mode, cost)
                write_round(self.root, k, summary, work.failures, work.weaknesses, work.candidates)

            return outcome, record

        outcome, error = self.store.commit(k, step, kept, retire, describe, apply)
        if outcome is None:
            return self._commit_failed(
                k, step, error or "not committed", work.timings, work, inject_step, apply
            ), "failed"
        if error is not None:  # the commit point had passed: the round stands
            log.warning("curriculum round %d: committed, then failed: %s", k, _last_line(error))
        return outcome, "ok"

    def _concluded(
        self, k: int, work: Prepared | None, outcome: dict[str, Any], status: str, blocked: float
    ) -> RoundResult:
        """A round this process computed, applied (``_conclude``) and logged."""
        result = self._conclude(k, outcome, status, blocked, work)
        if status == "ok" and work is not None:
            log.info(
                "curriculum round %d @ step %d: probe accuracy %.3f, %d failures (%d new), %d weaknesses, "
                "kept %d of %d candidates, pool %d, %.1fs blocked",
                k, work.step, work.probe_accuracy, len(work.failures), result.metrics["curriculum/new_failures"],
                len(work.weaknesses), int(outcome["history"]["kept"]), len(work.candidates), len(self.pool), blocked,
            )  # fmt: skip
        return result

    def _whole_round(self, k: int, step: int, snap: Policy, inject: int, snapshot_s: float):
        """An async round from probe to commit in the worker thread, on ``snap``: a frozen copy of
        the model at step ``step``. Greedy, so it draws nothing at random. Committed to disk only;
        the loop applies it at ``inject`` (``poll``). Returns (work, outcome, status)."""
        t0 = time.perf_counter()
        items = probe_items(self.probe, self.cfg.probe_max, self.seed, k)
        try:
            predictions, correct = self._ask_probe(items, snap)
        except Exception:  # the model could not be asked: record, skip the round
            timings = {"probe_s": time.perf_counter() - t0, "blocked_s": snapshot_s}
            return (
                None,
                self._commit_failed(k, step, traceback.format_exc(), timings, None, inject, False),
                "failed",
            )
        work = self._prepare(k, step, items, predictions, correct, time.perf_counter() - t0)
        work.timings["snapshot_s"] = snapshot_s
        retire, error = self._check(work, snap, own_rng=False)
        return (work, *self._commit(work, retire, error, snapshot_s, inject, apply=False))

    def _mastered(self, policy: Policy) -> list[str]:
        """Ids of the oldest pool examples (up to ``retire_check``) the model now answers right."""
        check = self.pool.examples[: self.cfg.retire_check]
        if not check:
            return []
        answers = policy.answer(check)
        return [ex.id for ex, a in zip(check, answers, strict=True) if is_correct(a, ex.answer)]

    def _broken(self, k: int, step: int) -> Callable[[str], Prepared]:
        """What a round's preparation that raised hands on: its error."""
        return lambda error: Prepared(k, step, 0.0, [], [], [], {}, error=error)

    def _own_rng(self, k: int, purpose: str) -> AbstractContextManager[None]:
        """The model's random draws for round ``k``'s ``purpose``: their own stream, per rank."""
        return own_rng(hash_seed(self.seed, k, purpose, self.ranks.index) % 2**63)

    # ------------------------------------------------------------------ outcomes: commit, fail, restore

    def _fail(
        self,
        k: int,
        step: int,
        error: str,
        timings: dict[str, float],
        work: Prepared | None,
        inject_step: int,
    ) -> RoundResult:
        """Record round ``k`` as failed on every rank (``_commit_failed``) and apply that."""
        return self._conclude(k, self._commit_failed(k, step, error, timings, work, inject_step), "failed")

    def _commit_failed(
        self,
        k: int,
        step: int,
        error: str,
        timings: dict[str, float],
        work: Prepared | None,
        inject_step: int,
        apply: bool = True,
    ) -> dict[str, Any]:
        """Commit round ``k`` empty, as failed, with its record, so a resumed run reloads it instead
        of redoing it; if even that fails, a resumed run will run it again. Returns its outcome."""
        last = _last_line(error)
        log.warning("curriculum round %d @ step %d failed, training goes on: %s", k, step, last)
        failures = work.failures if work is not None else []
        outcome = failed_outcome(k, step, inject_step, last, failures, None)

        def record() -> None:
            cost = round_cost(self._ledger, work.candidates if work else [])  # spent before it failed
            summary = failed_summary(k, step, error, timings, cost, work.image_errors if work else [])
            write_round(self.root, k, summary, failures, work.weaknesses if work else [])

        def describe(retired: list[str]) -> tuple[dict[str, Any], Callable[[], None]]:
            spent = self._ledger.state_dict() if self._ledger is not None else None
            return {**outcome, "spent": spent}, record

        stored, why = self.store.commit(k, step, [], [], describe, apply)
        if stored is None:
            log.warning("curriculum round %d: could not commit it empty: %s", k, _last_line(why or ""))
            if self.is_main:
                try:
                    record()  # the record still says what happened
                except Exception as err:
                    log.warning("curriculum round %d: could not write its record: %s", k, err)
            stored = outcome
        return stored

    def _committed(self, k: int, step: int) -> RoundResult | None:
        """Round ``k`` is on disk already (a resumed run reaching it again): load it back at the
        step where it joined the run the first time (async: its injection, maybe still ahead)."""
        inject = self.store.inject_step(k, step)
        if self.cfg.mode == "async" and inject > step:
            self._pending = InFlight(k, step, inject, committed=True)
            return None
        return self._restore(k, step)

    def _restore(self, k: int, step: int) -> RoundResult:
        t0 = time.perf_counter()
        self.store.hold(k)
        result = self._conclude(k, self.store.outcome(k, step), "restored", time.perf_counter() - t0)
        log.info("curriculum round %d @ step %d: restored from disk (pool %d)", k, step, len(self.pool))
        return result

    def _conclude(
        self,
        k: int,
        outcome: dict[str, Any],
        status: str,
        blocked_s: float = 0.0,
        work: Prepared | None = None,
    ) -> RoundResult:
        """Apply what round ``k`` changed besides the pool, from its stored outcome. Computed and
        restored rounds both end here, so a resumed run holds the state an uninterrupted one has."""
        ok = outcome["status"] == "ok"
        self.seen.update(outcome["failures"])
        if ok:
            self.exemplars = exemplars_of(self.pool.round_examples(k))
        self.history.append(dict(outcome["history"]))
        if self._ledger is not None and outcome.get("spent"):
            self._ledger.load_state_dict(outcome["spent"])
        metrics = {**outcome["metrics"], **({"curriculum/blocked_s": blocked_s} if ok else {})}
        shown = work if work is not None and ok else None
        return RoundResult(
            k, outcome["step"], status, metrics, outcome["history"].get("error"),
            shown.failures if shown else [], shown.weaknesses if shown else [], shown.candidates if shown else [],
        )  # fmt: skip


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else "error"
