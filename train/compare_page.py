"""``lessonloop compare``'s report as one self-contained HTML page, and the plots it shares with
the PNG files beside ``report.md``.

The page answers the comparison's question first: targeted minus each other arm, seed by seed,
with the mean difference and its 95 % interval, and whether the interval leaves zero out. Then
the titled plots (accuracy against steps; against examples added, with ``base``, which adds
none, as a horizontal reference line; per-skill accuracy per arm with error bars; wall time and
API cost per arm) and the tables: each arm over its seeds, each run with its standard error.

It is written by ``compare`` itself (``report.html`` next to ``report.md``) and by
``lessonloop report <compare folder>`` from ``compare.json`` alone, so comparisons written
before the page existed get one too (their paired differences are summarised here the same way
``train.compare_results`` does).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from curriculum.report_html import (
    Raw,
    badge,
    data_uri,
    e,
    facts,
    figure,
    figure_png,
    img,
    page,
    table,
    write_atomic,
)
from curriculum.stats import t_interval
from train.compare_tables import added_table, interval_text, paired_table, run_table
from train.compare_tables import table as arms_table

# One colour per arm, the same in every plot of the page.
COLOURS = {"base": "#6e7781", "targeted": "#0969da", "real": "#bc4c00", "untargeted": "#8250df",
           "replay": "#1a7f37", "rebalanced": "#bf3989"}  # fmt: skip


def _colour(arm: str, i: int) -> str:
    return COLOURS.get(arm, f"C{i}")


def normalise(result: dict[str, Any]) -> dict[str, Any]:
    """A ``compare.json`` as this version writes it: an older one held the paired differences as
    bare lists; they get their mean, interval and wins here (the same numbers ``collect`` gives)."""
    paired = {}
    for arm, p in (result.get("paired") or {}).items():
        p = dict(p)
        for key in ("accuracy", "under_served"):
            diffs = p.get(key)
            if isinstance(diffs, list):
                p[key] = (
                    {"diffs": diffs, "higher": sum(d > 0 for d in diffs), **t_interval(diffs)}
                    if diffs
                    else None
                )
        paired[arm] = p
    return {**result, "paired": paired, "under_served_skills": result.get("under_served_skills") or []}


# ------------------------------------------------------------------------------------------ plots


def draw_curves(ax: Any, result: dict[str, Any], x: str) -> None:
    """Each arm's mean test accuracy over its seeds (band: min to max) against ``x`` (``step`` or
    ``added``). Against ``added``, an arm that adds nothing (``base``) would be a column of dots at
    0: it is its end accuracy as a horizontal line instead, with its spread over seeds."""
    for i, arm in enumerate(result["arms"]):
        curves = [r["curve"] for r in result["runs"].values() if r["arm"] == arm and r.get("curve")]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        xs = [statistics.mean(c[j][x] for c in curves) for j in range(length)]
        ys = [[c[j]["accuracy"] for c in curves] for j in range(length)]
        colour = _colour(arm, i)
        if x == "added" and not any(xs):
            ends = list(ys[-1])
            ax.axhline(statistics.mean(ends), color=colour, ls="--", lw=1.5, label=f"{arm} (adds none), end")
            if len(ends) > 1:
                ax.axhspan(min(ends), max(ends), color=colour, alpha=0.1)
            continue
        ax.plot(xs, [statistics.mean(y) for y in ys], marker="o", ms=3, color=colour, label=arm)
        ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=colour, alpha=0.15)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


CURVES = {  # x -> (file stem, title, x label)
    "step": ("accuracy_vs_steps", "Test accuracy over training, per arm", "training step"),
    "added": ("accuracy_vs_added", "Test accuracy against examples added, per arm", "examples added so far"),
}


def curve_png(result: dict[str, Any], x: str, dpi: int = 120) -> bytes:
    """One curve plot as PNG bytes (the files beside ``report.md``)."""
    _, title, label = CURVES[x]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        draw_curves(ax, result, x)
        ax.set_xlabel(f"{label} (mean over seeds; band: min to max)")

    return figure_png(draw, title, (6.4, 4.2), dpi)


def _prior(root: Path | None, result: dict[str, Any]) -> dict[str, float]:
    """The image-blind prior of the comparison's test set, from any run's summary (the same data
    for every arm); {} without the run folders."""
    for name in result.get("runs") or {}:
        path = root / name / "summary.json" if root is not None else None
        if path is not None and path.is_file():
            return json.loads(path.read_text()).get("prior_baseline") or {}
    return {}


def _skills_figure(result: dict[str, Any], prior: dict[str, float]) -> str:
    arms = result["arms"]
    skills = sorted({s for a in arms.values() for s in a["skills"]})
    if not skills:
        return ""
    seeds = max(len(a["seeds"]) for a in arms.values())

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        width = 0.8 / len(arms)
        for i, (arm, a) in enumerate(arms.items()):
            xs = [k + (i - (len(arms) - 1) / 2) * width for k in range(len(skills))]
            means = [a["skills"].get(s, {}).get("mean", 0.0) for s in skills]
            sds = [a["skills"].get(s, {}).get("sd", 0.0) for s in skills] if seeds > 1 else None
            ax.bar(xs, means, width, yerr=sds, capsize=2, color=_colour(arm, i), label=arm,
                   error_kw={"lw": 0.8})  # fmt: skip
        for k, s in enumerate(skills):
            p = prior.get(f"skill/{s}")
            if p is not None:
                ax.hlines(p, k - 0.45, k + 0.45, color="#cf222e", ls=":", lw=1.5,
                          label="prior (image-blind)" if k == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(skills)), skills, fontsize=9)
        ax.set_ylabel("test accuracy at the end")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, axis="y")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=len(arms) + 1, fontsize=9,
                   frameon=False)  # fmt: skip

    err = f"error bars: sd over {seeds} seeds" if seeds > 1 else "one seed: no error bars"
    title = f"Per-skill test accuracy at the end, per arm ({err})"
    return img(figure(draw, title, (13.2, 4.3)), title, "plot")


def _cost_figure(result: dict[str, Any]) -> str:
    """Wall time and API cost per arm (the cost panel only where some arm spent anything)."""
    arms = result["arms"]
    names = list(arms)
    panels = [("wall_s", "wall time per run, s")]
    if any(a["api_cost_usd"]["mean"] for a in arms.values()):
        panels.append(("api_cost_usd", "API cost per run, USD"))

    def draw(fig: Any) -> None:
        for j, (key, label) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), j + 1)
            means = [arms[a][key]["mean"] for a in names]
            sds = [arms[a][key]["sd"] for a in names]
            ax.bar(
                range(len(names)),
                means,
                yerr=sds,
                capsize=3,
                color=[_colour(a, i) for i, a in enumerate(names)],
            )
            ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3, axis="y")

    title = "Cost per arm"
    free = (
        "" if len(panels) > 1 else '<p class="muted small">No API cost: no arm called a frontier model.</p>'
    )
    alt = f"{title}: {' and '.join(label for _, label in panels)} (mean over seeds, error bars: sd)"
    return img(figure(draw, title, (3.6 * len(panels) + 0.4, 3.2)), alt, "plot") + free


# ------------------------------------------------------------------------------------------ page


def _verdict(p: dict[str, Any] | None) -> str:
    """Whether a paired interval leaves zero out: the arm difference the data shows, if any."""
    if not p:
        return ""
    if p.get("low") is None:
        return badge("one seed: no interval", "warn")
    if p["low"] > 0:
        return badge("targeted higher", "good")
    if p["high"] < 0:
        return badge("targeted lower", "bad")
    return badge("no difference shown", "")


def _answer(result: dict[str, Any]) -> str:
    """The headline: against which arms targeted is higher or lower beyond the seeds' noise."""
    paired = result["paired"]
    if not paired:
        return (
            '<div class="answer"><p class="lead">No paired difference: the comparison needs the targeted '
            "arm and another arm finished on the same seeds.</p></div>"
        )
    steps = result.get("steps")
    groups: dict[str, list[str]] = {}
    for arm, p in paired.items():
        a = p["accuracy"]
        kind = (
            "one seed"
            if a.get("low") is None
            else "higher"
            if a["low"] > 0
            else "lower"
            if a["high"] < 0
            else "none"
        )
        groups.setdefault(kind, []).append(f"{arm} ({interval_text(a)})")
    said = {
        "higher": "Targeted is <b>higher</b>, its 95 % interval above zero, than",
        "lower": "Targeted is <b>lower</b>, its 95 % interval below zero, than",
        "none": "<b>No difference shown</b> (the interval spans zero) against",
        "one seed": "One seed only, so no interval, against",
    }
    lines = [f"<p>{said[k]} {e('; '.join(groups[k]))}.</p>" for k in said if k in groups]
    ranked = sorted(result["arms"].items(), key=lambda kv: -kv[1]["accuracy"]["mean"])
    order = ", ".join(f"{arm} {a['accuracy']['mean']:.3f}" for arm, a in ranked)
    return (
        '<div class="answer"><p class="lead">Did the curriculum (targeted) beat the other arms? Test accuracy at the '
        f"end of training{f' ({steps} steps)' if steps else ''}, targeted minus each arm, seed by seed.</p>"
        + "".join(lines)
        + f'<p class="muted">Mean accuracy per arm, highest first: {e(order)}.</p></div>'
    )


def _skills_table(result: dict[str, Any]) -> str:
    """Skills as rows, arms as columns (mean ± sd over seeds), folded under the figure."""
    arms = result["arms"]
    skills = sorted({s for a in arms.values() for s in a["skills"]})
    rows = [[s, *(_pm(a["skills"].get(s)) for a in arms.values())] for s in skills]
    out = table(["skill", *arms], rows, range(1, len(arms) + 1), open_rows=0, what="skills as a table")
    columns, added = added_table(result)
    if added:
        out += table(columns, added, range(1, len(columns)), open_rows=0, what="examples added per skill")
    return out


def _pm(stat: dict[str, float] | None) -> str:
    return "" if not stat else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def render(root: Path | None, result: dict[str, Any], name: str) -> str:
    """The comparison's page as an HTML string (``root``: its folder, for the runs' priors)."""
    result = normalise(result)
    arms, runs = result["arms"], result["runs"]
    seeds = sorted({r["seed"] for r in runs.values()})
    items = sorted({r["test_items"] for r in runs.values() if r.get("test_items")})
    pairs = [
        ("arms", ", ".join(arms) or "none finished"),
        ("seeds", ", ".join(map(str, seeds)) or "–"),
        ("steps per run", result.get("steps", "?")),
        ("test items per run", ", ".join(map(str, items)) or "–"),
        ("under-served skills", ", ".join(result["under_served_skills"]) or "none named"),
    ]
    body = [f"<header><h1>Compare {e(name)}</h1>"
            f'<p class="muted small">{e(root) if root else ""} · lessonloop compare report</p>{facts(pairs)}</header>']  # fmt: skip
    if not arms:
        return page(f"lessonloop compare {name}", [*body, "<p>No run finished.</p>"])
    body.append('<section id="answer"><h2>The claim</h2>' + _answer(result))
    if result["paired"]:
        columns, rows = paired_table(result)
        verdicts = [_verdict(p["accuracy"]) for p in result["paired"].values()]
        rows = [[*row[:2], Raw(v), *row[2:]] for row, v in zip(rows, verdicts, strict=True)]
        columns = [*columns[:2], "verdict", *columns[2:]]
        body.append(table(columns, rows, what="arms"))
        body.append(
            '<p class="muted small">Per seed: same initialisation and data order in both arms. Interval: 95 % '
            "confidence interval of the mean paired difference, Student's t with n − 1 degrees of freedom "
            "(n: seeds); it leaves zero out only where the difference is more than the seeds' noise.</p>"
        )
    body.append("</section>")
    curves = "".join(
        img(data_uri(curve_png(result, x, dpi=100)), CURVES[x][1], "plot") for x in ("step", "added")
    )
    body.append(f'<section id="plots"><h2>Over training</h2><div class="grid">{curves}</div></section>')
    prior = _prior(root, result)
    body.append(
        f'<section id="skills"><h2>Per skill</h2>{_skills_figure(result, prior)}{_skills_table(result)}</section>'
    )
    columns, rows = arms_table(result)
    skills = sorted({s for a in arms.values() for s in a["skills"]})
    keep = [i for i, c in enumerate(columns) if c not in skills]  # per skill: the figure and its table
    columns, rows = [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]
    body.append(
        '<section id="arms"><h2>Each arm over its seeds: accuracy, wall time, cost</h2><div class="grid"><div>'
        + table(columns, rows, range(1, len(columns)), what="arms")
        + '<p class="muted small">Mean ± sd over seeds; run SE: the binomial standard error of one run\'s '
        "accuracy, sqrt(p (1 − p) / n) over its test items.</p></div>"
        + f"<div>{_cost_figure(result)}</div></div></section>"
    )
    columns, rows = run_table(result)
    body.append(
        '<section id="runs"><h2>Each run</h2>'
        + table(columns, rows, range(1, len(columns)), open_rows=0, what="runs")
        + "</section>"
    )
    return page(f"lessonloop compare {name}", body)


def write_page(root: Path, result: dict[str, Any], name: str, out: Path | None = None) -> Path:
    """Write the page (default ``<root>/report.html``); returns its path."""
    return write_atomic(Path(out) if out is not None else root / "report.html", render(root, result, name))


def report_folder(folder: Path, out: Path | None = None) -> Path:
    """``lessonloop report <compare folder>``: the page from its ``compare.json``. Raises
    ``ValueError`` when the folder holds none."""
    folder = Path(folder)
    path = folder / "compare.json"
    if not path.is_file():
        raise ValueError(f"{folder} is not a compare folder: {path} does not exist")
    config = folder / "compare_config.yaml"
    name = (
        ((yaml.safe_load(config.read_text()) or {}).get("run") or {}).get("name")
        if config.is_file()
        else None
    )
    return write_page(folder, json.loads(path.read_text()), str(name or folder.name), out)
