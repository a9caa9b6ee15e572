"""``lessonloop compare``'s report: ``compare.json``, ``report.md`` (printed at the end), the plots,
and with W&B on a report run holding the table and the plots.

The report says how noisy its numbers are: each arm's accuracy as mean ± sd over seeds with the
binomial standard error of one run beside it, each run's accuracy ± its standard error, and
targeted minus each other arm seed by seed, with the mean difference and its 95 % interval
(Student's t, n - 1 degrees of freedom), overall and on the under-served skills.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from train.config import Config


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


def _markdown(columns: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
    ]


def plots(root: Path, result: dict[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for x, fname, label in (("step", "accuracy_vs_steps.png", "training step"),
                            ("added", "accuracy_vs_added.png", "examples added")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for arm in result["arms"]:
            curves = [r["curve"] for r in result["runs"].values() if r["arm"] == arm]
            length = min(len(c) for c in curves)
            xs = [statistics.mean(c[i][x] for c in curves) for i in range(length)]
            ys = [[c[i]["accuracy"] for c in curves] for i in range(length)]
            (line,) = ax.plot(xs, [statistics.mean(y) for y in ys], marker="o", ms=3, label=arm)
            ax.fill_between(
                xs, [min(y) for y in ys], [max(y) for y in ys], color=line.get_color(), alpha=0.15
            )
        ax.set_xlabel(label + " (mean over seeds; band: min to max)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(root / fname)
        plt.close(fig)
        out[fname.removesuffix(".png")] = root / fname
    return out


def write_report(root: Path, cfg: Config, result: dict[str, Any]) -> None:
    (root / "compare.json").write_text(json.dumps(result, indent=1))
    if not result["arms"]:
        (root / "report.md").write_text("# compare\n\nNo run finished.\n")
        return
    files = plots(root, result)
    columns, rows = table(result)
    weak = ", ".join(result["under_served_skills"]) or "none named"
    md = [
        f"# compare: {cfg.run.name}",
        "",
        f"{cfg.train.steps} steps per run, seeds {cfg.compare.seeds}; test accuracy at the end of training, "
        "mean ± sd over seeds. Run SE: the binomial standard error of one run's accuracy, sqrt(p (1 - p) / n) "
        f"over its test items (the noise of the test set alone). Under-served skills (below an even share of "
        f"the train split): {weak}.",
        "",
        *_markdown(columns, rows),
        "",
    ]
    if result["paired"]:
        md += [
            "Targeted minus each arm, seed by seed (same initialisation and data order): the mean paired "
            "difference and its 95% confidence interval from Student's t distribution with n - 1 degrees "
            "of freedom (n: seeds).",
            "",
            *_markdown(*paired_table(result)),
            "",
            *summary_lines(result),
            "",
        ]
    md += [
        "Each run at the end of training, ± its binomial standard error:",
        "",
        *_markdown(*run_table(result)),
        "",
        "![accuracy against steps](accuracy_vs_steps.png) ![accuracy against added examples](accuracy_vs_added.png)",
        "",
    ]
    (root / "report.md").write_text("\n".join(md))
    if cfg.wandb.enabled and cfg.wandb.mode != "disabled":
        from train.tracking import log_table_run

        log_table_run(
            project=cfg.wandb.project,
            group=cfg.wandb.group or cfg.run.name,
            name=f"{cfg.run.name}-report",
            mode=cfg.wandb.mode,
            entity=cfg.wandb.entity,
            columns=columns,
            rows=rows,
            files=files,
            summary={f"{arm}/accuracy": a["accuracy"]["mean"] for arm, a in result["arms"].items()},
            dir=root,
        )
