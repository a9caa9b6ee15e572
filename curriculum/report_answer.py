"""The top of a run report: did the curriculum help?

Per skill, the test accuracy at the end of the run against the image-blind prior (each skill's
most common train answer: what a model that ignores the image reaches) and, where one exists,
against the same run without the curriculum: a ``<name>-off`` folder beside the run (what
``python -m train.demo`` writes) or, for an arm of ``lessonloop compare`` (``<arm>-s<seed>`` in a
folder holding ``compare.json``), the ``base`` arm of the same seed. Every accuracy comes with its
noise: the binomial standard error ``sqrt(p (1 - p) / n)`` over the skill's ``n`` test items
(``eval_predictions.jsonl``); a difference between two runs, which answered the same test items,
with the standard error of the per-item paired differences. A skill that ends at or below its
prior is flagged (the model is not reading those images), and so is one within noise of it.

Then one figure of small multiples: per skill, test accuracy at every evaluation, the twin's, the
prior, and the probe accuracy each curriculum round measured.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curriculum.report_html import Raw, badge, e, figure, img, is_number, pct, table
from curriculum.run_records import RunRecords
from curriculum.stats import binomial_se

Z = 1.96  # a difference beyond Z standard errors is outside the 95 % noise band
OVERALL = "overall"
_ARM_RUN = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")


@dataclass
class Twin:
    """The same run without the curriculum: its folder, how it was found, what it ended with."""

    root: Path
    how: str  # "-off twin" or "base arm of the compare"
    summary: dict[str, Any]
    items: dict[str, tuple[str | None, bool]]  # test item id -> (skill, correct)


@dataclass
class SkillRow:
    """One skill's line of the answer (``skill`` is ``overall`` for all test items)."""

    skill: str
    n: int | None
    start: float | None
    end: float | None
    prior: float | None
    se: float | None = None
    twin: float | None = None
    twin_se: float | None = None
    diff_se: float | None = None

    @property
    def over_prior(self) -> float | None:
        return self.end - self.prior if self.end is not None and self.prior is not None else None

    @property
    def diff(self) -> float | None:
        return self.end - self.twin if self.end is not None and self.twin is not None else None

    @property
    def prior_flag(self) -> str | None:
        """``below``: at or below the prior; ``near``: above it by less than the noise band."""
        gap = self.over_prior
        if gap is None:
            return None
        if gap <= 1e-9:
            return "below"
        return "near" if self.se is not None and gap < Z * self.se else None

    @property
    def twin_flag(self) -> str | None:
        """``higher`` or ``lower`` than the run without the curriculum beyond noise, ``noise`` within it."""
        d = self.diff
        if d is None or self.diff_se is None:
            return None
        if abs(d) <= Z * self.diff_se or abs(d) < 1e-9:
            return "noise"
        return "higher" if d > 0 else "lower"


# ------------------------------------------------------------------------------------ reading


def test_items(run_dir: Path) -> dict[str, tuple[str | None, bool]]:
    """The final evaluation's items: id -> (skill, answered right); {} when not written yet."""
    path = run_dir / "eval_predictions.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line: the file is being written
        out[str(row.get("id"))] = (row.get("skill"), bool(row.get("correct")))
    return out


def find_twin(root: Path) -> Twin | None:
    """The finished run without the curriculum that ``root`` is compared with, if there is one."""
    root = Path(root).resolve()
    candidates = [(root.with_name(f"{root.name}-off"), "-off twin")]
    m = _ARM_RUN.match(root.name)
    in_compare = any((root.parent / f).is_file() for f in ("compare.json", "compare_config.yaml"))
    if m and in_compare and m.group("arm") != "base":
        candidates.append((root.parent / f"base-s{m.group('seed')}", "base arm of the compare"))
    for path, how in candidates:
        summary_path = path / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            if summary.get("end"):
                return Twin(path, how, summary, test_items(path))
    return None


def final_metrics(run: RunRecords) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(start, end, finished): the summary's, or for a run still going its first and latest
    evaluation from ``metrics.jsonl`` (``finished`` False)."""
    s = run.summary
    if s.get("end"):
        return s.get("start") or {}, s["end"], True
    evals = [r for r in run.metrics if "eval/accuracy" in r]
    if not evals:
        return {}, {}, False

    def strip(row: dict[str, Any]) -> dict[str, Any]:
        return {k.removeprefix("eval/"): v for k, v in row.items()}

    return (strip(evals[0]) if evals[0].get("step") == 0 else {}), strip(evals[-1]), False


def _paired_se(
    a: dict[str, tuple[Any, bool]], b: dict[str, tuple[Any, bool]], skill: str | None
) -> float | None:
    """Standard error of the mean per-item difference (``a`` right minus ``b`` right) over the
    test items both answered (of ``skill``; None: all)."""
    common = [i for i in a if i in b and (skill is None or a[i][0] == skill)]
    if len(common) < 2:
        return None
    diffs = [float(a[i][1]) - float(b[i][1]) for i in common]
    return statistics.stdev(diffs) / math.sqrt(len(diffs))


def skill_rows(run: RunRecords, twin: Twin | None) -> list[SkillRow]:
    """Every skill's row, then ``overall``."""
    start, end, _ = final_metrics(run)
    prior = run.summary.get("prior_baseline") or {}
    items = test_items(run.root)
    counts = Counter(str(skill) for skill, _ in items.values())
    twin_end = (twin.summary.get("end") or {}) if twin else {}
    twin_counts = Counter(str(skill) for skill, _ in (twin.items if twin else {}).values())
    skills = sorted({k.removeprefix("skill/") for k in (*start, *end, *prior) if k.startswith("skill/")})
    rows = []
    for sk in [*skills, OVERALL]:
        key = "accuracy" if sk == OVERALL else f"skill/{sk}"
        n = len(items) if sk == OVERALL else counts.get(sk)
        tn = len(twin.items) if sk == OVERALL and twin else twin_counts.get(sk)
        row = SkillRow(sk, n or None, start.get(key), end.get(key), prior.get(key))
        if row.end is not None and n:
            row.se = binomial_se(row.end, n)
        row.twin = twin_end.get(key) if twin else None
        if row.twin is not None and tn:
            row.twin_se = binomial_se(row.twin, tn)
        if row.twin is not None and twin is not None:
            row.diff_se = _paired_se(items, twin.items, None if sk == OVERALL else sk)
            if row.diff_se is None and row.se is not None and row.twin_se is not None:
                row.diff_se = math.hypot(row.se, row.twin_se)  # items not matched: as independent
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ the answer


def _pts(value: float | None, se: float | None = None) -> str:
    """A difference of accuracies in points: ``+2.0`` or ``+2.0 ± 1.9``."""
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")


def _acc(value: float | None, se: float | None) -> str:
    return pct(value) + (f" ± {100 * se:.1f}" if se is not None and value is not None else "")


_PRIOR_BADGE = {"below": ("at or below prior", "bad"), "near": ("within noise of prior", "warn")}
_TWIN_BADGE = {"higher": ("curriculum higher", "good"), "lower": ("curriculum lower", "bad"),
               "noise": ("within noise", "")}  # fmt: skip


def _names(rows: list[SkillRow]) -> str:
    return ", ".join(r.skill for r in rows)


def answer_section(run: RunRecords, twin: Twin | None) -> str:
    """The headline sentences and the per-skill table."""
    rows = skill_rows(run, twin)
    overall = rows[-1]
    _, _, finished = final_metrics(run)
    if overall.end is None:
        return (
            '<section id="answer"><h2>Did the curriculum help?</h2><div class="answer"><p class="lead">'
            "No test accuracy recorded yet.</p></div></section>"
        )
    skills = [r for r in rows if r.skill != OVERALL]
    when = "at the end" if finished else "at the latest evaluation (the run has not finished)"
    lead = [f"Test accuracy {when}: <b>{e(_acc(overall.end, overall.se))}</b>"
            + (f" on {overall.n} items" if overall.n else "")]  # fmt: skip
    if overall.prior is not None:
        lead.append(
            f"{e(_pts(overall.over_prior))} points over the image-blind prior ({e(pct(overall.prior))})"
        )
    if twin is not None and overall.twin is not None:
        word = {"higher": "beyond noise", "lower": "beyond noise", "noise": "within noise"}.get(
            overall.twin_flag or "", ""
        )
        lead.append(
            f"<b>{e(_pts(overall.diff, overall.diff_se))} points</b> against the same run without the "
            f"curriculum (<code>{e(twin.root.name)}</code>, {e(twin.how)}: {e(pct(overall.twin))})"
            + (f", {word}" if word else "")
        )
    parts = [f'<p class="lead">{"; ".join(lead)}.</p>']
    below = [r for r in skills if r.prior_flag == "below"]
    near = [r for r in skills if r.prior_flag == "near"]
    if below:
        parts.append(f"<p>{badge('at or below prior', 'bad')} {len(below)} of {len(skills)} skills end at or "
                     f"below the prior, no sign that the model reads their images: <b>{e(_names(below))}</b>.</p>")  # fmt: skip
    if near:
        parts.append(f"<p>{badge('within noise of prior', 'warn')} {e(_names(near))}: above the prior by less "
                     f"than {Z} standard errors.</p>")  # fmt: skip
    if not below and not near and skills:
        parts.append(f"<p>Every skill ends above its prior by more than {Z} standard errors.</p>")
    if twin is not None:
        up = [r for r in skills if r.twin_flag == "higher"]
        down = [r for r in skills if r.twin_flag == "lower"]
        same = [r for r in skills if r.twin_flag == "noise"]
        bits = []
        if up:
            bits.append(f"higher beyond noise on {e(_names(up))}")
        if down:
            bits.append(f"lower beyond noise on {e(_names(down))}")
        if same:
            bits.append(f"within noise on {len(same)} of {len(skills)} skills")
        if bits:
            parts.append(f"<p>With the curriculum against without it: {'; '.join(bits)}.</p>")
    else:
        parts.append(
            '<p class="muted">No run without the curriculum found beside this one (a '
            f"<code>{e(run.root.name)}-off</code> folder, as <code>python -m train.demo</code> writes, or the "
            "base arm of a <code>lessonloop compare</code> folder), so there is no comparison with one.</p>"
        )
    header = ["skill", "test items", "start", "end ± SE", "prior", "end − prior (pts)", "vs prior"]
    numeric = {1, 2, 3, 4, 5}
    if twin is not None:
        header += ["without curriculum ± SE", "with − without (pts ± SE)", "vs without"]
        numeric |= {7, 8}
    body = []
    for r in rows:
        prior_badge = _PRIOR_BADGE.get(r.prior_flag or "")
        line: list[Any] = [
            Raw(f"<b>{e(r.skill)}</b>") if r.skill == OVERALL else r.skill,
            r.n or "–",
            pct(r.start),
            _acc(r.end, r.se),
            pct(r.prior),
            _pts(r.over_prior),
            Raw(badge(*prior_badge)) if prior_badge else "",
        ]
        if twin is not None:
            twin_badge = _TWIN_BADGE.get(r.twin_flag or "")
            line += [_acc(r.twin, r.twin_se), _pts(r.diff, r.diff_se),
                     Raw(badge(*twin_badge)) if twin_badge else ""]  # fmt: skip
        body.append(line)
    note = (
        '<p class="muted small">± one binomial standard error, sqrt(p (1 − p) / n) over the skill\'s test '
        "items (the test set's noise alone); a difference between the two runs ± the standard error of "
        f"the per-item paired differences. Flagged: beyond or within {Z} standard errors (95 %). The prior: "
        "each skill's most common train answer, what a model blind to the image reaches.</p>"
    )
    return (
        '<section id="answer"><h2>Did the curriculum help?</h2><div class="answer">'
        + "".join(parts)
        + "</div>"
        + table(header, body, numeric, open_rows=40, what="skills")
        + note
        + "</section>"
    )


# ------------------------------------------------------------------------------------ the plot


def _history(summary: dict[str, Any], metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every evaluation of a run, in step order: the summary's history, or for a run still going
    its ``eval/*`` rows."""
    history = [h for h in summary.get("history") or [] if "step" in h]
    if not history:
        history = [{"step": r["step"], **{k.removeprefix("eval/"): v for k, v in r.items() if k.startswith("eval/")}}
                   for r in metrics if "eval/accuracy" in r and "step" in r]  # fmt: skip
    return sorted(history, key=lambda h: h["step"])


def progress_figure(run: RunRecords, twin: Twin | None) -> str:
    """Small multiples: per skill (and overall), test accuracy at each evaluation against the
    run without the curriculum, the prior, and each round's probe accuracy. '' without data."""
    history = _history(run.summary, run.metrics)
    if not history:
        return ""
    twin_history = _history(twin.summary, []) if twin else []
    prior = run.summary.get("prior_baseline") or {}
    rounds = [r for r in run.rounds if r.step is not None and r.metrics]
    skills = sorted({k.removeprefix("skill/") for h in history for k in h if k.startswith("skill/")})
    panels = [*skills, OVERALL]
    cols = 5 if len(panels) > 6 else min(3, len(panels))
    nrows = -(-len(panels) // cols)

    def series(hist: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
        pts = [(h["step"], h[key]) for h in hist if is_number(h.get(key))]
        return [p[0] for p in pts], [p[1] for p in pts]

    def draw(fig: Any) -> None:
        axes = fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            sk = panels[i]
            key = "accuracy" if sk == OVERALL else f"skill/{sk}"
            probe_key = "curriculum/probe_accuracy" if sk == OVERALL else f"curriculum/probe_skill/{sk}"
            for j, r in enumerate(rounds):
                ax.axvline(r.summary.get("inject_step", r.step), color="#bbb", lw=0.8, ls="--",
                           label="curriculum round" if j == 0 else None)  # fmt: skip
            if is_number(prior.get(key)):
                ax.axhline(prior[key], color="#cf222e", lw=1.2, ls=":", label="prior (image-blind)")
            if twin_history:
                xs, ys = series(twin_history, key)
                ax.plot(xs, ys, color="#8c959f", lw=1.4, marker=".", label="without curriculum")
            xs, ys = series(history, key)
            ax.plot(xs, ys, color="#0969da", lw=1.8, marker="o", ms=3, label="this run (test)")
            probe = [(r.step, r.metrics[probe_key]) for r in rounds if is_number(r.metrics.get(probe_key))]
            if probe:
                ax.plot(*zip(*probe, strict=True), ls="none", marker="s", ms=5, color="#bc4c00",
                        label="probe at the round")  # fmt: skip
            ax.set_title(sk, fontsize=10, fontweight="bold" if sk == OVERALL else "normal")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        handles, labels = {}, []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in handles:
                    handles[lab] = h
                    labels.append(lab)
        fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center", ncol=len(labels),
                   fontsize=9, frameon=False)  # fmt: skip
        for ax in axes[-1]:
            ax.set_xlabel("training step", fontsize=8)
        fig.supylabel("accuracy", fontsize=9)

    title = "Accuracy per skill over training: test set at each evaluation, probe set at each round"
    uri = figure(draw, title, (13.2, 2.2 * nrows + 1.0))
    return '<section id="progress"><h2>Per skill over training</h2>' + img(uri, title, "plot") + "</section>"
