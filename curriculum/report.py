"""A run as one self-contained HTML page: what the curriculum saw, diagnosed, made and dropped.

A run folder answers "did the curriculum help, and what did it do" only to someone who reads
JSONL files round by round. ``write_report`` puts it on one page that can be mailed or attached
to an issue: the run's header and accuracy (``summary.json``), plots of test accuracy, probe
accuracy and pool size, then one section per round with its failures, weaknesses, kept examples
(thumbnails from the pool), drops by filter and contact sheet. Everything is inline (base64 PNG,
inline CSS, no scripts, no links out), and every piece of text from the run is escaped: questions,
diagnoses and errors may come from a frontier model and are data, never markup.

Failure records carry ids, not images; a failure's picture is shown when a ``same_image``
example of the pool reused it (``meta["image_from"]``), otherwise the failure is text only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.export import Committed, RoundRecord, RunRecords, read_run
from curriculum.types import Example, StoredImage, as_pil, image_to_png_bytes

THUMB = 128  # largest side of an inline thumbnail, px
MAX_FAILURE_ROWS = 100
MAX_FAILURE_THUMBS = 12
MAX_CARDS = 48
DROPPED_EXAMPLES = 3

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#1b1f24;padding:0 16px;line-height:1.4}
h1{margin-bottom:4px}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:40px}
h3{margin:20px 0 8px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#656d76}.ok{color:#1a7f37}.failed{color:#cf222e}.badge{font-size:11px;padding:1px 6px;
border-radius:8px;background:#eaeef2}.retired{background:#fff1e5}
pre.error{background:#ffebe9;border:1px solid #cf222e;padding:8px;white-space:pre-wrap;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:8px}.card{width:150px;border:1px solid #d0d7de;border-radius:6px;
padding:6px;font-size:12px}.card img,.thumb img{width:96px;height:96px;object-fit:contain;display:block;
margin:0 auto 4px;image-rendering:pixelated;background:#fff}.thumb{display:inline-block;width:110px;
font-size:11px;margin:2px;vertical-align:top;text-align:center}
img.plot{max-width:100%;border:1px solid #eaeef2}img.sheet{max-width:100%;image-rendering:pixelated}
nav a{margin-right:10px}code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumb(image: Image.Image | StoredImage) -> str:
    """An inline PNG of the image, shrunk to ``THUMB`` px when larger (frontier images are big)."""
    if isinstance(image, StoredImage) and max(image.size) <= THUMB and image.data[:4] == b"\x89PNG":
        return _data_uri(image.data)
    pil = as_pil(image)
    if max(pil.size) > THUMB:
        pil = pil.copy()
        pil.thumbnail((THUMB, THUMB))
    return _data_uri(image_to_png_bytes(pil))


def _img(uri: str, alt: str, cls: str = "") -> str:
    return f'<img src="{uri}" alt="{_e(alt)}"' + (f' class="{cls}"' if cls else "") + ">"


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return _e(value if isinstance(value, int) else f"{value:.{digits}f}")


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _table(header: list[str], rows: list[list[Any]], numeric: Collection[int] = ()) -> str:
    """An HTML table; cells are escaped unless given as ``_Raw`` (markup this module built)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            text = v.html if isinstance(v, _Raw) else _e(v)
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Markup built here (already escaped), to put in a table cell as is."""

    def __init__(self, markup: str) -> None:
        self.html = markup


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


# ------------------------------------------------------------------------------------------ plots


def _plot(draw: Any, title: str, xlabel: str, ylabel: str) -> str:
    """Draw on a fresh Agg figure (no pyplot: no global backend or figure state) -> data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _data_uri(buf.getvalue())


def _plots(run: RunRecords) -> list[tuple[str, str]]:
    """(title, data URI) of each plot there is data for."""
    out = []
    evals = [(r["step"], r["eval/accuracy"]) for r in run.metrics if "eval/accuracy" in r and "step" in r]
    if not evals:  # an old or partial metrics file: the summary's history says the same
        evals = [(h["step"], h["accuracy"]) for h in run.summary.get("history") or [] if "accuracy" in h]
    rounds = [r for r in run.rounds if r.step is not None]
    round_steps = [r.step for r in rounds]
    if evals:

        def accuracy(ax: Any) -> None:
            xs, ys = zip(*sorted(evals), strict=True)
            ax.plot(xs, ys, marker="o", label="test accuracy")
            for i, s in enumerate(round_steps):
                ax.axvline(s, color="#bbb", lw=0.8, ls="--", label="curriculum round" if i == 0 else None)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=8)

        out.append(("Test accuracy", _plot(accuracy, "Test accuracy vs step", "step", "accuracy")))
    probe = [
        (r.round, r.metrics["curriculum/probe_accuracy"])
        for r in run.rounds
        if "curriculum/probe_accuracy" in r.metrics
    ]
    if probe:

        def probe_plot(ax: Any) -> None:
            xs, ys = zip(*probe, strict=True)
            ax.plot(xs, ys, marker="o", color="tab:orange")
            ax.set_xticks(list(xs))
            ax.set_ylim(0, 1)

        out.append(("Probe accuracy", _plot(probe_plot, "Probe accuracy per round", "round", "accuracy")))
    sizes = []
    live = 0
    for r in run.rounds:
        kept = r.added if r.committed else r.metrics.get("curriculum/kept", 0)
        if r.committed:
            live += r.added - len(r.retired)
        size = r.metrics.get("curriculum/pool_size", live if r.committed else None)
        sizes.append((r.round, kept, size))
    if sizes:

        def pool_plot(ax: Any) -> None:
            ks = [k for k, _, _ in sizes]
            ax.bar(ks, [kept for _, kept, _ in sizes], color="tab:green", alpha=0.6, label="kept this round")
            points = [(k, s) for k, _, s in sizes if s is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color="tab:blue", label="pool size (live)")
            ax.set_xticks(ks)
            ax.legend(fontsize=8)

        out.append(("Pool", _plot(pool_plot, "Pool size and kept per round", "round", "examples")))
    return out


# ----------------------------------------------------------------------------------------- header


def _header(run: RunRecords) -> str:
    s, cfg = run.summary, run.config
    cc = run.curriculum_config()
    train = cfg.get("train") or {}
    cur = s.get("curriculum") or {}
    facts = [
        ("steps", s.get("steps", f"{train.get('steps', '?')} planned (no summary.json yet)")),
        ("training mode", train.get("mode", "?")),
        ("curriculum", f"{cur.get('mode', cc.get('mode', '?'))}, every {cc.get('every', '?')} steps"
         if cc.get("enabled", bool(cur)) else "off"),
        ("model", (cfg.get("model") or {}).get("name_or_path", "?")),
        ("rounds", f"{len(run.rounds)} ("
         + ", ".join(f"{n} {st}" for st, n in Counter(r.status for r in run.rounds).most_common()) + ")"
         if run.rounds else "none"),
        ("pool", f"{sum(c.live for c in run.examples)} live of {len(run.examples)} committed"),
        ("wall time", f"{s['wall_seconds']} s" if "wall_seconds" in s else "–"),
    ]  # fmt: skip
    if "round_seconds" in cur:
        facts.append(
            ("time in rounds", f"{cur['round_seconds']} s ({_pct(cur.get('round_share'))} of the loop)")
        )
    parts = [f"<h1>Run {_e(run.name)}</h1>", f'<p class="muted">{_e(run.root)}</p>']
    parts.append(_table(["", ""], [[k, v] for k, v in facts]))
    start, end, prior = s.get("start") or {}, s.get("end") or {}, s.get("prior_baseline") or {}
    if not end:  # a running or crashed run: its latest evaluation
        evals = [r for r in run.metrics if "eval/accuracy" in r]
        if evals:
            end = {k.removeprefix("eval/"): v for k, v in evals[-1].items()}
            start = (
                {k.removeprefix("eval/"): v for k, v in evals[0].items()} if evals[0].get("step") == 0 else {}
            )
    if "accuracy" in end:
        parts.append(
            f"<p><b>Test accuracy: {_e(_pct(start.get('accuracy')))} at the start → "
            f"{_e(_pct(end['accuracy']))} at the end</b>"
            + (f" (blind prior {_e(_pct(prior['accuracy']))})" if "accuracy" in prior else "")
            + "</p>"
        )
        skills = sorted({k.removeprefix("skill/") for k in (*start, *end) if k.startswith("skill/")})
        rows = []
        for sk in skills:
            a, b = start.get(f"skill/{sk}"), end.get(f"skill/{sk}")
            delta = (
                f"{100 * (b - a):+.1f}"
                if isinstance(a, (int, float)) and isinstance(b, (int, float))
                else "–"
            )
            rows.append([sk, _pct(a), _pct(b), delta, _pct(prior.get(f"skill/{sk}"))])
        rows.append(
            ["overall", _pct(start.get("accuracy")), _pct(end["accuracy"]), "", _pct(prior.get("accuracy"))]
        )
        if rows:
            parts.append(_table(["skill", "start", "end", "Δ points", "prior"], rows, {1, 2, 3, 4}))
    else:
        parts.append('<p class="muted">No test accuracy recorded yet.</p>')
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------- rounds


def _round_robin(rows: list[dict[str, Any]], key: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` rows taking one of each ``key`` in turn, so every group shows."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(key)), []).append(row)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < limit and any(depth < len(g) for g in groups.values()):
        out += [g[depth] for g in groups.values() if depth < len(g)]
        depth += 1
    return out[:limit]


def _round_section(r: RoundRecord, examples: dict[str, Committed], images_of: dict[str, Example]) -> str:
    status_cls = "ok" if r.status == "ok" else "failed" if r.status == "failed" else "muted"
    step = f"step {r.step}" if r.step is not None else "step ?"
    parts = [
        f'<section id="round-{r.round}">',
        f'<h2 id="round-{r.round}-title">Round {r.round} · {_e(step)} · '
        f'<span class="{status_cls}">{_e(r.status)}</span></h2>',
    ]
    s = r.summary
    facts = []
    if s.get("inject_step") not in (None, r.step):
        facts.append(("injected at step", s["inject_step"]))
    if s.get("mode"):
        facts.append(("mode", s["mode"]))
    m = r.metrics
    for key, label in (
        ("curriculum/probe_accuracy", "probe accuracy"),
        ("curriculum/failures", "failures"),
        ("curriculum/new_failures", "new failures"),
        ("curriculum/weaknesses", "weaknesses"),
        ("curriculum/candidates", "candidates"),
        ("curriculum/kept", "kept"),
        ("curriculum/retired", "retired"),
        ("curriculum/pool_size", "pool size after"),
        ("curriculum/round_cost_usd", "cost (USD)"),
    ):
        if key in m:
            facts.append((label, _fmt(m[key])))
    if r.committed and "curriculum/kept" not in m:
        facts.append(("committed to the pool", f"{r.added} added, {len(r.retired)} retired"))
    if not r.committed:
        facts.append(("committed to the pool", "no"))
    parts.append(_table(["", ""], facts) if facts else "")
    if s.get("timings"):
        rows = [[k.removesuffix("_s"), _fmt(v, 2)] for k, v in s["timings"].items()]
        parts.append("<h3>Timings (s)</h3>" + _table(["stage", "seconds"], rows, {1}))
    if r.status == "failed":
        parts.append(f'<h3>Error</h3><pre class="error">{_e(s.get("error") or "error (no message)")}</pre>')
    if s.get("image_errors"):
        items = "".join(f"<li>{_e(x)}</li>" for x in s["image_errors"])
        parts.append(f"<h3>Image requests that failed</h3><ul>{items}</ul>")
    probe_skills = {
        k.removeprefix("curriculum/probe_skill/"): v for k, v in m.items() if "/probe_skill/" in k
    }
    if probe_skills:
        rows = [[k, _pct(v)] for k, v in sorted(probe_skills.items())]
        parts.append("<h3>Probe accuracy by skill</h3>" + _table(["skill", "accuracy"], rows, {1}))
    parts.append(_failures(r, images_of))
    parts.append(_weaknesses(r))
    parts.append(_kept(r, examples))
    parts.append(_dropped(r))
    if r.contact_sheet is not None:
        uri = _data_uri(r.contact_sheet.read_bytes())
        parts.append("<h3>Contact sheet</h3>" + _img(uri, f"round {r.round} contact sheet", "sheet"))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _failures(r: RoundRecord, images_of: dict[str, Example]) -> str:
    if r.folder is None:
        return ""
    if not r.failures:
        return "<h3>Failures</h3><p class='muted'>None recorded.</p>"
    thumbs = []
    for f in r.failures:
        ex = images_of.get(str(f.get("id")))
        if ex is not None and len(thumbs) < MAX_FAILURE_THUMBS:
            caption = f"{f.get('question')} A: {f.get('answer')} · said: {f.get('prediction')}"
            thumbs.append(f'<div class="thumb">{_img(_thumb(ex.image), caption)}{_e(caption)}</div>')
    rows = [
        [
            f.get("id"),
            f.get("skill"),
            f.get("question"),
            f.get("answer"),
            f.get("prediction"),
            "yes" if f.get("new") else "no",
        ]
        for f in r.failures[:MAX_FAILURE_ROWS]
    ]
    more = len(r.failures) - len(rows)
    parts = [
        f"<h3>Failures ({len(r.failures)})</h3>",
        (f'<div class="grid">{"".join(thumbs)}</div><p class="muted">Pictures of failures that a same-image '
         "example reused; the others are text only (the probe's images are not stored).</p>") if thumbs else "",
        _table(["id", "skill", "question", "answer", "prediction", "new"], rows),
        f'<p class="muted">… and {more} more (see failures.jsonl).</p>' if more > 0 else "",
    ]  # fmt: skip
    return "\n".join(p for p in parts if p)


def _weaknesses(r: RoundRecord) -> str:
    if not r.weaknesses:
        return "" if r.folder is None else "<h3>Weaknesses</h3><p class='muted'>None diagnosed.</p>"
    rows = []
    for w in r.weaknesses:
        rate = w.get("failure_rate")
        failed = f"{w.get('failures', '?')}/{w.get('n', '?')} ({_pct(rate)})"
        confusions = ", ".join(f"{a}→{p} ×{n}" for a, p, n in (w.get("confusions") or []))
        rows.append(
            [
                _Raw(f"<code>{_e(w.get('id'))}</code>"),
                w.get("skill"),
                _json(w.get("slice") or {}),
                failed,
                _fmt(w.get("lower_bound")),
                w.get("diagnosis"),
                confusions,
                _json(w.get("spec")),
            ]
        )
    header = ["id", "skill", "slice", "failure rate", "lower bound", "diagnosis", "confusions", "spec"]
    return f"<h3>Weaknesses ({len(r.weaknesses)})</h3>" + _table(header, rows)


def _kept(r: RoundRecord, examples: dict[str, Committed]) -> str:
    kept = [c for c in r.candidates if c.get("kept")]
    if not kept:
        return "" if r.folder is None else "<h3>Examples made</h3><p class='muted'>None kept.</p>"
    cards = []
    for c in _round_robin(kept, "weakness", MAX_CARDS):
        committed = examples.get(str(c.get("id")))
        picture = _img(_thumb(committed.example.image), str(c.get("question"))) if committed else ""
        badge = ""
        if committed is not None and not committed.live:
            badge = f' <span class="badge retired">retired r{committed.retired_round}</span>'
        cards.append(
            f'<div class="card">{picture}<b>{_e(c.get("question"))}</b><br>A: {_e(c.get("answer"))}{badge}'
            f'<br><span class="muted">for <code>{_e(c.get("weakness"))}</code> ({_e(c.get("generator"))})</span></div>'
        )
    by_gen = Counter(str(c.get("generator")) for c in kept)
    parts = [
        f"<h3>Examples made: {len(kept)} kept of {len(r.candidates)} candidates</h3>",
        f"<p>By generator: {_e(', '.join(f'{g} {n}' for g, n in by_gen.most_common()))}</p>",
        f'<div class="grid">{"".join(cards)}</div>',
    ]
    if len(kept) > len(cards):
        rows = [
            [c.get("id"), c.get("question"), c.get("answer"), c.get("weakness"), c.get("generator")]
            for c in kept
        ]
        parts.append(
            f"<details><summary>All {len(kept)} kept examples ({len(cards)} shown above)</summary>"
            + _table(["id", "question", "answer", "weakness", "generator"], rows)
            + "</details>"
        )
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
    parts = [f"<h3>Dropped: {len(dropped)}</h3>"]
    summary = [[name, len(items)] for name, items in sorted(by_filter.items(), key=lambda kv: -len(kv[1]))]
    parts.append(_table(["filter", "dropped"], summary, {1}))
    for name, items in sorted(by_filter.items()):
        rows = [
            [
                c.get("question"),
                c.get("answer"),
                c.get("weakness"),
                c.get("generator"),
                (c.get("verdicts") or {}).get(name),
            ]
            for c in items[:DROPPED_EXAMPLES]
        ]
        parts.append(
            f"<p>Dropped by <b>{_e(name)}</b> (e.g.):</p>"
            + _table(["question", "answer", "weakness", "generator", "reason"], rows)
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ entry


def render(run: RunRecords) -> str:
    """The report of ``run`` as an HTML string."""
    examples = {c.example.id: c for c in run.examples}
    images_of: dict[str, Example] = {}  # a failure's id -> a pool example that shows its picture
    for c in run.examples:
        src = c.example.meta.get("image_from")
        if src is not None:
            images_of.setdefault(str(src), c.example)
    plots = "".join(f"<div>{_img(uri, title, 'plot')}</div>" for title, uri in _plots(run))
    nav = " ".join(f'<a href="#round-{r.round}">round {r.round}</a>' for r in run.rounds)
    body = [
        _header(run),
        f'<h2>Plots</h2><div class="grid">{plots}</div>' if plots else "",
        f"<nav>{nav}</nav>" if nav else '<p class="muted">No curriculum round ran.</p>',
        *(_round_section(r, examples, images_of) for r in run.rounds),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>lessonloop run {_e(run.name)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the run's HTML report (default ``<run_dir>/report.html``); returns its path.

    Works on a running or crashed run too: whatever is on disk is shown. Raises ``ValueError``
    when ``run_dir`` is not a run folder.
    """
    run = read_run(Path(run_dir), require_pool=False)
    out = Path(out) if out is not None else run.root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(render(run), encoding="utf-8")
    os.replace(tmp, out)
    return out
