"""``lessonloop compare``'s report: ``compare.json``, ``report.md`` (printed at the end), the plots,
``report.html`` (the same as one self-contained page, ``train.compare_page``), and with W&B on a
report run holding the table and the plots.

The report says how noisy its numbers are: each arm's accuracy as mean ± sd over seeds with the
binomial standard error of one run beside it, each run's accuracy ± its standard error, and
targeted minus each other arm seed by seed, with the mean difference and its 95 % interval
(Student's t, n - 1 degrees of freedom), overall and on the under-served skills.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.compare_page import CURVES, curve_png, write_page
from train.compare_tables import added_table, interval_text, paired_table, run_table, summary_lines, table
from train.config import Config

__all__ = [
    "added_table",
    "interval_text",
    "paired_table",
    "plots",
    "run_table",
    "summary_lines",
    "table",
    "write_report",
]


def _markdown(columns: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
    ]


def plots(root: Path, result: dict[str, Any]) -> dict[str, Path]:
    """The titled curve plots as PNG files beside ``report.md``: accuracy against steps, and
    against examples added (``base`` as a horizontal line); their paths by name."""
    out = {}
    for x, (stem, _, _) in CURVES.items():
        path = root / f"{stem}.png"
        path.write_bytes(curve_png(result, x))
        out[stem] = path
    return out


def write_report(root: Path, cfg: Config, result: dict[str, Any]) -> None:
    """Write ``compare.json``, ``report.html``, ``report.md`` and the plots under ``root``; with
    W&B on, log a report run holding the arms table and the plots."""
    (root / "compare.json").write_text(json.dumps(result, indent=1))
    write_page(root, result, cfg.run.name)
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
    added_columns, added_rows = added_table(result)
    if added_rows:
        md += [
            "What each arm added, per skill (examples kept by its rounds, mean over seeds):",
            "",
            *_markdown(added_columns, added_rows),
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
        "The same as one page with per-skill and cost plots: report.html.",
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
