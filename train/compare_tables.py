"""The tables of ``lessonloop compare``'s report, as columns and rows of text: each arm over its
seeds, targeted minus each arm seed by seed with the 95 % interval, each run with its standard
error, and the plain sentences of what they say. ``report.md`` and the HTML page
(``train.compare_page``) both show them.
"""

from __future__ import annotations

from typing import Any


def _pm(stat: dict[str, float] | None) -> str:
    return "" if not stat else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def _se(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The arms table: one row per arm, mean ± sd over seeds, and one run's standard error."""
    arms = result["arms"]
    skills = sorted({s for a in arms.values() for s in a["skills"]})
    columns = ["arm", "seeds", "added", "overall", "run SE"]
    if result["under_served_skills"]:
        columns.append("under-served")
    columns += [*skills, "wall s", "API $"]
    rows = []
    for name, a in arms.items():
        row = [
            name,
            len(a["seeds"]),
            f"{a['added']['mean']:.0f}",
            _pm(a["accuracy"]),
            _se(a.get("accuracy_se")),
        ]
        if result["under_served_skills"]:
            row.append(_pm(a["under_served"]))
        row += [_pm(a["skills"].get(s)) for s in skills]
        row += [f"{a['wall_s']['mean']:.0f}", f"{a['api_cost_usd']['mean']:.2f}"]
        rows.append(row)
    return columns, rows


def added_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """What each arm that added examples added, per skill (mean over seeds; an older
    ``compare.json`` without the counts gives no rows): beside the per-skill accuracies it says
    where an arm's gains and losses could come from."""
    arms = {n: a for n, a in result["arms"].items() if a.get("added_by_skill")}
    skills = sorted({s for a in arms.values() for s in a["added_by_skill"]})
    rows = [[n, *(f"{a['added_by_skill'].get(s, 0):.0f}" for s in skills), f"{a['added']['mean']:.0f}"]
            for n, a in arms.items()]  # fmt: skip
    return ["arm", *skills, "all"], rows


def interval_text(p: dict[str, Any]) -> str:
    """``+0.012 [-0.020, +0.044]``: a mean difference and its interval (none from one seed)."""
    if p["low"] is None:
        return f"{p['mean']:+.3f} [no interval: one seed]"
    return f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]"


def paired_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Targeted minus each arm: mean paired difference [95 % interval], per seed, wins."""
    columns = ["targeted −", "overall [95% CI]", "per seed", "higher in"]
    weak = bool(result["under_served_skills"])
    if weak:
        columns += ["under-served [95% CI]", "per seed ", "higher in "]
    rows = []
    for arm, p in result["paired"].items():
        parts = [("accuracy", p["accuracy"])] + ([("under_served", p["under_served"])] if weak else [])
        row: list[Any] = [arm]
        for _, d in parts:
            if d is None:
                row += ["", "", ""]
                continue
            row += [
                interval_text(d),
                ", ".join(f"{x:+.3f}" for x in d["diffs"]),
                f"{d['higher']} of {d['n']}",
            ]
        rows.append(row)
    return columns, rows


def run_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Every run: its accuracy ± its binomial standard error, and what it added."""
    weak = bool(result["under_served_skills"])
    columns = ["run", "test items", "overall ± SE"] + (["under-served ± SE"] if weak else []) + ["added"]
    rows = []
    for name, r in sorted(result["runs"].items(), key=lambda kv: (kv[1]["arm"], kv[1]["seed"])):
        row = [name, r.get("test_items") or "", f"{r['accuracy']:.3f} ± {_se(r.get('accuracy_se')) or '?'}"]
        if weak:
            u = r["under_served"]
            row.append("" if u is None else f"{u:.3f} ± {_se(r.get('under_served_se')) or '?'}")
        rows.append([*row, r["added"]])
    return columns, rows


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Plain sentences of what the numbers say, seed by seed."""
    lines = []
    for arm, p in result["paired"].items():
        a = p["accuracy"]
        text = (
            f"- targeted − {arm}: overall {interval_text(a)} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in a['diffs'])}; targeted higher in {a['higher']} of {a['n']})"
        )
        if p["under_served"] is not None:
            u = p["under_served"]
            text += f"; under-served skills {interval_text(u)} (higher in {u['higher']} of {u['n']})"
        lines.append(text + ".")
    return lines
