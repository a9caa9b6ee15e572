"""A run as one self-contained HTML page that answers first: did the curriculum help?

``write_report`` reads a run folder (``curriculum.run_records``) and writes, top to bottom:

1. the answer (``curriculum.report_answer``): per-skill test accuracy at the end against the
   image-blind prior and, where one exists, against the same run without the curriculum, with
   the noise band; skills at or below the prior flagged;
2. warnings (``curriculum.report_follow``): rounds whose filters dropped most candidates, a
   shrinking pool, examples filed under a weakness of another skill, failed rounds;
3. per-skill accuracy over training (test at each evaluation, probe at each round);
4. each weakness followed across rounds: its failure rate when found, the examples kept for it,
   its failure rate later;
5. the rounds: one line each, a click away from the details (failures, weaknesses, the examples
   made grouped by the weakness they answer, with their captions as text, what was dropped).

Everything is inline (``curriculum.report_html``): the file can be mailed or opened offline.
Failure records carry ids, not images; a failure's picture is shown when a ``same_image``
example of the pool reused it (``meta["image_from"]``), otherwise the failure is text only.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from curriculum.export import Committed, RoundRecord, RunRecords, read_run
from curriculum.report_answer import answer_section, find_twin, progress_figure
from curriculum.report_follow import (
    RoundWarning,
    diagnosis_text,
    followed_section,
    off_target,
    warning_badges,
    warnings,
    warnings_section,
)
from curriculum.report_html import (
    Raw,
    badge,
    e,
    facts,
    fmt,
    img,
    page,
    pct,
    plot,
    readable,
    spec_text,
    table,
    thumb,
    write_atomic,
)  # fmt: skip
from curriculum.types import Example

MAX_FAILURE_THUMBS = 9  # one row at 1400 px
CARDS_PER_WEAKNESS = 7  # one row at 1400 px
DROPPED_EXAMPLES = 3

# ----------------------------------------------------------------------------------------- header


def _header(run: RunRecords, sections: list[tuple[str, str]]) -> str:
    """The title, the run's facts in a row, and links to ``sections`` (anchor, label) on the page."""
    s, cfg = run.summary, run.config
    cc = run.curriculum_config()
    train = cfg.get("train") or {}
    cur = s.get("curriculum") or {}
    statuses = Counter(r.status for r in run.rounds)
    pairs: list[tuple[str, Any]] = [
        ("model", (cfg.get("model") or {}).get("name_or_path", "?")),
        ("steps", s.get("steps", f"{train.get('steps', '?')} planned (no summary.json yet)")),
        ("training", train.get("mode", "?")),
        ("curriculum", f"{cur.get('mode', cc.get('mode', '?'))}, every {cc.get('every', '?')} steps"
         if cc.get("enabled", bool(cur)) else "off"),
        ("rounds", f"{len(run.rounds)} (" + ", ".join(f"{n} {st}" for st, n in statuses.most_common()) + ")"
         if run.rounds else "none"),
        ("pool", f"{sum(c.live for c in run.examples)} live of {len(run.examples)} committed"),
        ("wall time", f"{s['wall_seconds']} s" if "wall_seconds" in s else "–"),
    ]  # fmt: skip
    if "round_seconds" in cur:
        pairs.append(
            ("time in rounds", f"{cur['round_seconds']} s ({pct(cur.get('round_share'))} of the loop)")
        )
    nav = " ".join(f'<a href="#{a}">{e(t)}</a>' for a, t in sections)
    return (
        f"<header><h1>Run {e(run.name)}</h1>"
        f'<p class="muted small">{e(run.root)} · lessonloop run report</p>{facts(pairs)}<nav>{nav}</nav></header>'
    )


# ----------------------------------------------------------------------------------------- rounds


def _pool_plot(run: RunRecords) -> str:
    sizes, live = [], 0
    for r in run.rounds:
        kept = r.added if r.committed else r.metrics.get("curriculum/kept", 0)
        if r.committed:
            live += r.added - len(r.retired)
        sizes.append((r.round, kept, r.metrics.get("curriculum/pool_size", live if r.committed else None)))
    if not sizes:
        return ""

    def draw(ax: Any) -> None:
        ks = [k for k, _, _ in sizes]
        ax.bar(ks, [kept for _, kept, _ in sizes], color="tab:green", alpha=0.6, label="kept this round")
        points = [(k, s) for k, _, s in sizes if s is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color="tab:blue", label="pool size after (live)")
        ax.set_xticks(ks)
        ax.legend(fontsize=8)

    return img(
        plot(draw, "Pool size and examples kept per round", "round", "examples", (4.4, 2.8)), "pool", "plot"
    )


def _rounds_overview(run: RunRecords) -> str:
    rows = []
    for r in run.rounds:
        m = r.metrics
        rows.append([
            Raw(f'<a href="#round-{r.round}">{r.round}</a>'), r.step if r.step is not None else "?", r.status,
            pct(m.get("curriculum/probe_accuracy")), fmt(m.get("curriculum/failures")),
            fmt(m.get("curriculum/weaknesses")), fmt(m.get("curriculum/candidates")),
            fmt(m.get("curriculum/kept", r.added if r.committed else None)),
            fmt(m.get("curriculum/pool_size")),
            fmt((r.summary.get("timings") or {}).get("blocked_s", m.get("curriculum/blocked_s")), 1),
        ])  # fmt: skip
    header = ["round", "step", "status", "probe accuracy", "failures", "weaknesses", "candidates", "kept",
              "pool after", "loop waited (s)"]  # fmt: skip
    return table(header, rows, {1, 3, 4, 5, 6, 7, 8, 9}, what="rounds")


def _summary_line(r: RoundRecord, ws: list[RoundWarning]) -> str:
    cls = "ok" if r.status == "ok" else "failed" if r.status == "failed" else "muted"
    step = f"step {r.step}" if r.step is not None else "step ?"
    m = r.metrics
    bits = []
    if "curriculum/probe_accuracy" in m:
        bits.append(f"probe accuracy {pct(m['curriculum/probe_accuracy'], 0)}")
    if r.candidates:
        kept = sum(bool(c.get("kept")) for c in r.candidates)
        bits.append(f"kept {kept} of {len(r.candidates)} candidates")
    if r.weaknesses:
        bits.append(f"{len(r.weaknesses)} weaknesses")
    return (
        f'<summary><b>Round {r.round} · {e(step)} · <span class="{cls}">{e(r.status)}</span></b>'
        + (f' <span class="muted">— {e(", ".join(bits))}</span>' if bits else "")
        + (f" {warning_badges(ws)}" if ws else "")
        + "</summary>"
    )


def _round_section(r: RoundRecord, examples: dict[str, Committed], images_of: dict[str, Example],
                   ws: list[RoundWarning]) -> str:  # fmt: skip
    parts = [f'<details class="round" id="round-{r.round}">', _summary_line(r, ws)]
    s, m = r.summary, r.metrics
    pairs: list[tuple[str, Any]] = []
    if s.get("inject_step") not in (None, r.step):
        pairs.append(("injected at step", s["inject_step"]))
    if s.get("mode"):
        pairs.append(("mode", s["mode"]))
    for key, label in (("curriculum/failures", "failures mined"), ("curriculum/new_failures", "new"),
                       ("curriculum/retired", "retired"), ("curriculum/pool_size", "pool after"),
                       ("curriculum/round_cost_usd", "cost (USD)")):  # fmt: skip
        if key in m:
            pairs.append((label, fmt(m[key])))
    pairs.append(("committed", f"{r.added} added, {len(r.retired)} retired" if r.committed else "no"))
    if s.get("timings"):
        pairs.append(("seconds", ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in s["timings"].items()
                                           if isinstance(v, (int, float)))))  # fmt: skip
    parts.append(facts(pairs))
    if r.status == "failed":
        parts.append(f'<h3>Error</h3><pre class="error">{e(s.get("error") or "error (no message)")}</pre>')
    if s.get("image_errors"):
        items = "".join(f"<li>{e(x)}</li>" for x in s["image_errors"])
        parts.append(f"<h3>Image requests that failed</h3><ul>{items}</ul>")
    probe = {k.removeprefix("curriculum/probe_skill/"): v for k, v in m.items() if "/probe_skill/" in k}
    if probe:
        names = sorted(probe)
        parts.append("<h3>Probe accuracy by skill</h3>" + table(names, [[pct(probe[k], 0) for k in names]],
                                                                  range(len(names))))  # fmt: skip
    parts += [_weaknesses(r), _kept(r, examples), _dropped(r), _failures(r, images_of), "</details>"]
    return "\n".join(p for p in parts if p)


def _weaknesses(r: RoundRecord) -> str:
    if not r.weaknesses:
        return "" if r.folder is None else "<h3>Weaknesses</h3><p class='muted'>None diagnosed.</p>"
    rows = []
    for w in r.weaknesses:
        failed = f"{w.get('failures', '?')}/{w.get('n', '?')} ({pct(w.get('failure_rate'), 0)})"
        confusions = ", ".join(f"{a} → {p} ×{n}" for a, p, n in (w.get("confusions") or []))
        rows.append([Raw(f"<code>{e(w.get('id'))}</code>"), w.get("skill"), readable(w.get("slice") or {}),
                     failed, diagnosis_text(w.get("diagnosis")), confusions,
                     spec_text(w.get("spec")) if w.get("spec") else "–"])  # fmt: skip
    header = ["id", "skill", "slice", "fails (probe)", "diagnosis", "answer → said", "generator spec"]
    return f"<h3>Weaknesses ({len(r.weaknesses)})</h3>" + table(header, rows, {3}, what="weaknesses")


def _card(c: dict[str, Any], committed: Committed | None, off: bool) -> str:
    """One kept example: its picture (from the pool), question, answer, skill and generator as text."""
    picture = img(thumb(committed.example.image), str(c.get("question"))) if committed else ""
    badge_html = " " + badge("off target", "warn") if off else ""
    if committed is not None and not committed.live:
        badge_html += " " + badge(f"retired r{committed.retired_round}", "retired")
    return (
        f'<div class="card">{picture}<b>{e(c.get("question"))}</b><br>answer: {e(c.get("answer"))}{badge_html}'
        f'<br><span class="muted">{e(c.get("skill") or "")} · {e(c.get("generator"))}</span></div>'
    )


def _kept(r: RoundRecord, examples: dict[str, Committed]) -> str:
    """The examples the round kept, grouped under the weakness each answers (a header per
    weakness with its diagnosis), captions as text beside the pictures; examples of another skill
    than their weakness's come first, marked off target."""
    kept = [c for c in r.candidates if c.get("kept")]
    off = {str(c.get("id")) for c in off_target(r)}
    if not kept:
        return "" if r.folder is None else "<h3>Examples made</h3><p class='muted'>None kept.</p>"
    by_weakness: dict[str, list[dict[str, Any]]] = {}
    for c in kept:
        by_weakness.setdefault(str(c.get("weakness")), []).append(c)
    about = {str(w.get("id")): w for w in r.weaknesses}
    by_gen = Counter(str(c.get("generator")) for c in kept)
    parts = [f"<h3>Examples made: {len(kept)} kept of {len(r.candidates)} candidates</h3>",
             f"<p>By generator: {e(', '.join(f'{g} {n}' for g, n in by_gen.most_common()))}</p>"]  # fmt: skip
    for wid, items in by_weakness.items():
        items = sorted(items, key=lambda c: str(c.get("id")) not in off)
        w = about.get(wid, {})
        n_off = sum(str(c.get("id")) in off for c in items)
        head = f"<h4><code>{e(wid)}</code> · {len(items)} kept" + (f" · {n_off} off target" if n_off else "")
        head += (
            f' <span class="muted small">{e(diagnosis_text(w.get("diagnosis")))}</span></h4>'
            if w
            else "</h4>"
        )
        shown = items[:CARDS_PER_WEAKNESS]
        cards = "".join(_card(c, examples.get(str(c.get("id"))), str(c.get("id")) in off) for c in shown)
        more = len(items) - CARDS_PER_WEAKNESS
        parts.append(head + f'<div class="grid">{cards}</div>')
        if more > 0:
            rest = [
                [c.get("question"), c.get("answer"), c.get("generator")] for c in items[CARDS_PER_WEAKNESS:]
            ]
            parts.append(f"<details><summary>{more} more for this weakness</summary>"
                         + table(["question", "answer", "generator"], rest, open_rows=len(rest)) + "</details>")  # fmt: skip
    return "\n".join(parts)


def _dropped(r: RoundRecord) -> str:
    dropped = [c for c in r.candidates if not c.get("kept")]
    if not dropped:
        return (
            ""
            if not r.candidates
            else "<h3>Dropped</h3><p class='muted'>Nothing: every candidate was kept.</p>"
        )
    by_filter: dict[str, list[dict[str, Any]]] = {}
    for c in dropped:
        by_filter.setdefault(str(c.get("dropped_by")), []).append(c)
    rows = []
    for name, items in sorted(by_filter.items(), key=lambda kv: -len(kv[1])):
        c = items[0]
        reason = (c.get("verdicts") or {}).get(name)
        rows.append(
            [name, len(items), f"{c.get('question')} → {c.get('answer')} ({c.get('weakness')})", reason]
        )
    table_html = table(["filter", "dropped", "e.g.", "its reason"], rows, {1}, what="filters")
    examples = []
    for name, items in sorted(by_filter.items()):
        examples += [[name, c.get("question"), c.get("answer"), c.get("weakness"), c.get("generator"),
                      (c.get("verdicts") or {}).get(name)] for c in items[:DROPPED_EXAMPLES]]  # fmt: skip
    more = table(["filter", "question", "answer", "weakness", "generator", "reason"], examples, open_rows=0,
                 what="examples of drops")  # fmt: skip
    return f"<h3>Dropped: {len(dropped)} of {len(r.candidates)}</h3>" + table_html + more


def _failures(r: RoundRecord, images_of: dict[str, Example]) -> str:
    if r.folder is None:
        return ""
    if not r.failures:
        return "<h3>Failures</h3><p class='muted'>None recorded.</p>"
    thumbs = []
    for f in r.failures:
        ex = images_of.get(str(f.get("id")))
        if ex is not None and len(thumbs) < MAX_FAILURE_THUMBS:
            caption = f"{f.get('question')} answer: {f.get('answer')} · said: {f.get('prediction')}"
            thumbs.append(f'<div class="thumb">{img(thumb(ex.image), caption)}{e(caption)}</div>')
    rows = [[f.get("skill"), f.get("question"), f.get("answer"), f.get("prediction"),
             readable(f.get("params") or {}), "yes" if f.get("new") else "no"] for f in r.failures]  # fmt: skip
    parts = [
        f"<h3>Failures mined: {len(r.failures)}</h3>",
        (f'<div class="grid">{"".join(thumbs)}</div><p class="muted small">Pictures of failures that a same-image '
         "example reused; the others are text only (the probe's images are not stored).</p>") if thumbs else "",
        table(["skill", "question", "answer", "said", "parameters", "new"], rows, open_rows=8,
              what="failures"),
    ]  # fmt: skip
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------ entry


def render(run: RunRecords) -> str:
    """The report of ``run`` as an HTML string."""
    examples = {c.example.id: c for c in run.examples}
    images_of: dict[str, Example] = {}  # a failure's id -> a pool example that shows its picture
    for c in run.examples:
        src = c.example.meta.get("image_from")
        if src is not None:
            images_of.setdefault(str(src), c.example)
    twin = find_twin(run.root)
    ws = warnings(run.rounds)
    by_round: dict[int, list[RoundWarning]] = {}
    for w in ws:
        by_round.setdefault(w.round or 0, []).append(w)
    if run.rounds:
        rounds = (f'<section id="rounds"><h2>Rounds</h2><div class="grid"><div>{_rounds_overview(run)}</div>'
                  f"<div>{_pool_plot(run)}</div></div>"
                  '<p class="muted small">Each round below opens on a click: its weaknesses, the examples made '
                  "for each, what the filters dropped and the failures it mined.</p>"
                  + "".join(_round_section(r, examples, images_of, by_round.get(r.round, [])) for r in run.rounds)
                  + "</section>")  # fmt: skip
    else:
        rounds = '<section id="rounds"><h2>Rounds</h2><p class="muted">No curriculum round ran.</p></section>'
    body = [
        answer_section(run, twin),
        warnings_section(ws) if run.rounds else "",
        progress_figure(run, twin),
        followed_section(run.rounds),
        rounds,
    ]
    labels = {"answer": "the answer", "warnings": "warnings", "progress": "per skill",
              "weaknesses": "weaknesses", "rounds": "rounds"}  # fmt: skip
    present = [(a, t) for a, t in labels.items() if any(f'<section id="{a}">' in b for b in body)]
    return page(f"lessonloop run {run.name}", [_header(run, present), *body])


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the run's HTML report (default ``<run_dir>/report.html``); returns its path.

    Works on a running or crashed run too: whatever is on disk is shown. Raises ``ValueError``
    when ``run_dir`` is not a run folder.
    """
    run = read_run(Path(run_dir), require_pool=False)
    return write_atomic(Path(out) if out is not None else run.root / "report.html", render(run))
