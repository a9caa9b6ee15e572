"""How a round's budget becomes candidates: shared among the weaknesses in proportion to their
failure rates, then among the generators by their shares; what one generator cannot make, the
next ones get. Every generator draws from a seed of (run seed, round, weakness, generator), so a
round makes the same candidates whenever it runs.

A weakness whose slice fixes the answer (``compare/answer=no``, or an external ``answer`` slice)
keeps no more items with that answer than with the others (``balance_answers``, after the student
check): examples of one answer teach that answer whatever the picture, and the analyzer then
finds the other answer failing the next round (measured: ``docs/results.md``, the long claim with
a budget of 8192).
"""

from __future__ import annotations

import hashlib
from typing import Any

from curriculum.analyze import ANSWER, answer_form
from curriculum.generators import Generator
from curriculum.types import Candidate, Failure, Weakness


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


def make_candidates(
    k: int,
    weaknesses: list[Weakness],
    failures: list[Failure],
    generators: list[Generator],
    shares: dict[str, float],
    budget: int,
    seed: int,
    rationales: bool = False,
) -> list[Candidate]:
    """Round ``k``'s candidates: ``budget`` split over ``weaknesses`` (``split_budget``), each
    share over the ``generators`` with a positive share (in their order). Each example records
    its round, the failures it answers and its weight (the weakness's failure rate, or the
    ``weight`` its notes name: a baseline's targets share the budget unevenly, not the mix); with
    ``rationales`` it gets an empty list of rationale options for the judges to fill."""
    by_id = {f.example.id: f for f in failures}
    out: list[Candidate] = []
    for w_index, (weakness, w_budget) in enumerate(
        zip(weaknesses, split_budget(weaknesses, budget), strict=True)
    ):
        mine = [by_id[i] for i in weakness.failure_ids if i in by_id]
        gens = [g for g in generators if shares.get(g.name, 0) > 0]
        left = w_budget
        for g_index, gen in enumerate(gens):
            rest = sum(shares[g.name] for g in gens[g_index:])
            want = round(left * shares[gen.name] / rest) if g_index < len(gens) - 1 else left
            prefix = f"r{k:04d}-w{w_index}-{gen.name}"
            made = gen.generate(
                weakness, mine, want, seed=hash_seed(seed, k, w_index, gen.name), prefix=prefix
            )
            made = made[:want]
            left -= len(made)  # what one generator cannot make, the next ones get
            for ex in made:
                weight = weakness.notes.get("weight", weakness.failure_rate)
                ex.meta.update(round=k, failures=weakness.failure_ids[:20], weight=weight)
                if rationales:
                    ex.meta.setdefault("rationale_options", [])  # the judges may offer some
                out.append(Candidate(ex, weakness.id, gen.name))
    return out


def balance_answers(candidates: list[Candidate], weaknesses: list[Weakness]) -> None:
    """For each weakness whose slice fixes the answer, drop (filter ``balance``) the surviving
    candidates with that answer beyond one more than those with another, the last made first.
    Runs after the student check, which keeps contrast items unasked and drops the items of the
    answer the model already gives, so this is what leaves the pool's answers even."""
    for weakness in weaknesses:
        if ANSWER not in weakness.slice:
            continue
        want = answer_form(str(weakness.slice[ANSWER]))
        live = [c for c in candidates if c.weakness == weakness.id and c.dropped is None]
        pinned = [c for c in live if answer_form(c.example.answer) == want]
        for c in pinned[len(live) - len(pinned) + 1 :]:
            c.drop("balance", f"more {want!r} than other answers for {weakness.id}")


def take_image_errors(generators: list[Generator]) -> list[str]:
    """Image requests that failed since the last call (their proposals were skipped); cleared."""
    out: list[str] = []
    for gen in generators:
        errors = getattr(gen, "image_errors", None)
        if errors:
            out += errors
            errors.clear()
    return out


def hash_seed(*parts: Any) -> int:
    """A stable integer seed from parts (Python's ``hash`` of a str changes between runs)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")
