"""What ``lessonloop compare`` reads back from its runs: what each round kept, each run's final
accuracy with its noise, and per arm pair the paired differences with their interval.

Every number is the accuracy at the END of training (``summary.json``'s ``end``); the curves
against steps and added examples come along for the plots. The noise of one run is the binomial
standard error over its test items (``eval_predictions.jsonl``); the difference between two arms
is taken seed by seed (same initialisation, same data order) and summarised by its mean and a
95 % interval from Student's t with n - 1 degrees of freedom (``train.stats``).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from train.config import Config
from train.stats import binomial_se, mean_se, t_interval


def finished(run_dir: Path, steps: int) -> bool:
    path = run_dir / "summary.json"
    return path.is_file() and json.loads(path.read_text()).get("steps") == steps


def rounds_of(run_dir: Path) -> list[dict[str, Any]]:
    """Every round record of a run, in order."""
    out = []
    for path in sorted((run_dir / "curriculum").glob("round_*/round.json")):
        out.append(json.loads(path.read_text()))
    return out


def kept_per_round(run_dir: Path) -> list[int]:
    """Examples each round added (0 for a failed round), indexed by round number - 1."""
    kept: dict[int, int] = {}
    for r in rounds_of(run_dir):
        kept[r["round"]] = int(r.get("metrics", {}).get("curriculum/kept", 0)) if r["status"] == "ok" else 0
    return [kept.get(k, 0) for k in range(1, max(kept, default=0) + 1)]


def kept_by_skill(run_dir: Path) -> list[dict[str, int]]:
    """Examples each round added, per skill (rounds as in ``kept_per_round``), read from the
    rounds' ``candidates.jsonl``. An example without a skill counts under the skill of the
    weakness it answers (``analysis.json``); one whose weakness has none either is left out, so
    the counts may sum to less than the round's kept count (the rest: any skill)."""
    out: dict[int, dict[str, int]] = {}
    for r in rounds_of(run_dir):
        k, folder = r["round"], run_dir / "curriculum" / f"round_{r['round']:05d}"
        out[k] = {}
        if r["status"] != "ok" or not (folder / "candidates.jsonl").is_file():
            continue
        analysis = folder / "analysis.json"
        of_weakness = (
            {w["id"]: w.get("skill") for w in json.loads(analysis.read_text())} if analysis.is_file() else {}
        )
        counts: Counter[str] = Counter()
        for line in (folder / "candidates.jsonl").read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            skill = row.get("skill") or of_weakness.get(row.get("weakness"))
            if row.get("kept") and skill:
                counts[skill] += 1
        out[k] = dict(sorted(counts.items()))
    return [out.get(k, {}) for k in range(1, max(out, default=0) + 1)]


def under_served(cfg: Config, train_skills: Counter | None = None) -> list[str]:
    """Skills the real data under-serves: ``compare.under_served`` when set; else those whose
    share of the train split is below an even share: the built-in world's natural weights, or
    external data's skill column counts (``train_skills``; none without them)."""
    if cfg.compare.under_served:
        return list(cfg.compare.under_served)
    if cfg.data.source == "world":
        from curriculum.world import NATURAL_SKILL_WEIGHTS, world_skills

        weights = {s: NATURAL_SKILL_WEIGHTS[s] for s in world_skills(cfg.data.world.skills)}
    else:
        weights = {s: float(n) for s, n in (train_skills or Counter()).items() if s}
    if len(weights) < 2:
        return []
    even = sum(weights.values()) / len(weights)
    return sorted(s for s, w in weights.items() if w < even)


def _test_items(run_dir: Path) -> Counter | None:
    """Test items per skill of the run's final evaluation (None when the file is missing)."""
    path = run_dir / "eval_predictions.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return Counter(row.get("skill") or "all" for row in rows)


def run_result(run_dir: Path, weak: list[str]) -> dict[str, Any]:
    """One finished run: final accuracies with their standard errors, the curve against steps and
    against added examples."""
    summary = json.loads((run_dir / "summary.json").read_text())
    end = summary["end"]
    skills = {k[len("skill/") :]: v for k, v in end.items() if k.startswith("skill/")}
    rounds = [r for r in rounds_of(run_dir) if r["status"] == "ok"]
    added_at = sorted((r.get("inject_step", r["step"]), r["metrics"]["curriculum/kept"]) for r in rounds)
    curve = []
    for h in summary["history"]:
        added = sum(n for at, n in added_at if at <= h["step"])
        curve.append({"step": h["step"], "accuracy": h["accuracy"], "added": added})
    cost = max((r.get("cost", {}).get("cost_usd", 0.0) for r in rounds), default=0.0)
    items = _test_items(run_dir)
    present = [s for s in weak if s in skills]
    return {
        "accuracy": end["accuracy"],
        "accuracy_se": binomial_se(end["accuracy"], sum(items.values())) if items else None,
        "under_served": statistics.mean(skills[s] for s in present) if present else None,
        "under_served_se": mean_se([(skills[s], items.get(s, 0)) for s in present])
        if items and present
        else None,
        "test_items": sum(items.values()) if items else None,
        "skills": skills,
        "added": sum(n for _, n in added_at),
        "added_by_skill": dict(sum((Counter(r) for r in kept_by_skill(run_dir)), Counter())),
        "rounds": len(rounds),
        "wall_s": summary.get("wall_seconds"),
        "api_cost_usd": cost,
        "curve": curve,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _paired(diffs: list[float]) -> dict[str, Any]:
    """Per-seed differences with their mean and 95 % t interval (n - 1 degrees of freedom)."""
    return {"diffs": diffs, "higher": sum(d > 0 for d in diffs), **t_interval(diffs)}


def collect(root: Path, cfg: Config, weak: list[str]) -> dict[str, Any]:
    """Every finished run of the comparison, each arm over its seeds, and targeted minus each
    other arm seed by seed (where both finished)."""
    runs: dict[str, dict[str, Any]] = {}
    for arm in cfg.compare.arms:
        for seed in cfg.compare.seeds:
            d = root / f"{arm}-s{seed}"
            if finished(d, cfg.train.steps):
                runs[f"{arm}-s{seed}"] = {"arm": arm, "seed": seed, **run_result(d, weak)}
    arms: dict[str, Any] = {}
    for arm in cfg.compare.arms:
        rs = [r for r in runs.values() if r["arm"] == arm]
        if not rs:
            continue
        skills = sorted({s for r in rs for s in r["skills"]})
        ses = [r["accuracy_se"] for r in rs if r["accuracy_se"] is not None]
        weak_rs = [r["under_served"] for r in rs if r["under_served"] is not None]
        arms[arm] = {
            "accuracy": _stats([r["accuracy"] for r in rs]),
            "accuracy_se": statistics.mean(ses) if ses else None,
            "under_served": _stats(weak_rs) if weak_rs else None,
            "skills": {s: _stats([r["skills"][s] for r in rs if s in r["skills"]]) for s in skills},
            "added": _stats([r["added"] for r in rs]),
            # examples added per skill, mean over seeds (a seed that added none of a skill counts 0)
            "added_by_skill": {
                s: statistics.mean(r["added_by_skill"].get(s, 0) for r in rs)
                for s in sorted({s for r in rs for s in r["added_by_skill"]})
            },
            "wall_s": _stats([r["wall_s"] or 0.0 for r in rs]),
            "api_cost_usd": _stats([r["api_cost_usd"] for r in rs]),
            "seeds": [r["seed"] for r in rs],
        }
    paired: dict[str, Any] = {}
    for arm in arms:
        if arm == "targeted" or "targeted" not in arms:
            continue
        pairs = [
            (runs[f"targeted-s{s}"], runs[f"{arm}-s{s}"])
            for s in cfg.compare.seeds
            if f"targeted-s{s}" in runs and f"{arm}-s{s}" in runs
        ]
        if pairs:
            weak_pairs = [
                (t, o) for t, o in pairs if t["under_served"] is not None and o["under_served"] is not None
            ]
            paired[arm] = {
                "seeds": [t["seed"] for t, _ in pairs],
                "accuracy": _paired([t["accuracy"] - o["accuracy"] for t, o in pairs]),
                "under_served": _paired([t["under_served"] - o["under_served"] for t, o in weak_pairs])
                if weak_pairs
                else None,
            }
    return {
        "under_served_skills": weak,
        "steps": cfg.train.steps,
        "interval": "95% confidence interval of the mean paired difference: Student's t, n - 1 degrees of freedom",
        "standard_error": "binomial, sqrt(p (1 - p) / n) over the run's test items",
        "arms": arms,
        "paired": paired,
        "runs": runs,
    }
