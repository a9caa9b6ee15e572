"""The building blocks of the one-file HTML reports: escaping, tables that stay short, inline
images and plots, readable text for JSON values, and the page around them.

Both reports (a run's, ``curriculum.report``; a comparison's, ``train.compare_report``) are one
self-contained file: every image is an inline PNG, the CSS is inline, there is no script and no
link out, so the file can be mailed or attached to an issue and opened offline. Every piece of
text from a run is escaped: questions, diagnoses and errors may come from a frontier model and are
data, never markup. A table longer than ``OPEN_ROWS`` shows its first rows and folds the rest
into a ``<details>`` element, so no page scrolls through a hundred rows to reach the next section.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.types import StoredImage, as_pil, image_to_png_bytes

THUMB = 128  # largest side of an inline thumbnail, px
OPEN_ROWS = 12  # rows a table shows before the rest fold away

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:20px auto;max-width:1320px;
color:#1b1f24;padding:0 20px;line-height:1.45;font-size:15px}
h1{margin:0 0 4px;font-size:26px}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin:30px 0 10px;
font-size:21px}h3{margin:18px 0 6px;font-size:16px}h4{margin:12px 0 4px;font-size:14px}
table{border-collapse:collapse;margin:6px 0;font-size:13.5px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#59636e}.ok{color:#1a7f37}.failed{color:#cf222e}.small{font-size:12.5px}
.badge{font-size:12px;padding:1px 7px;border-radius:9px;background:#eaeef2;white-space:nowrap}
.bad{background:#ffebe9;color:#a40e26}.warn{background:#fff8c5;color:#7d4e00}.good{background:#dafbe1;color:#116329}
.retired{background:#fff1e5}
pre.error{background:#ffebe9;border:1px solid #cf222e;padding:8px;white-space:pre-wrap;font-size:12px}
.answer{background:#f6f8fa;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin:12px 0}
.answer p{margin:4px 0}.lead{font-size:17px}
ul.warnings{margin:6px 0;padding-left:20px}ul.warnings li{margin:3px 0}
.facts{display:flex;flex-wrap:wrap;gap:4px 22px;margin:6px 0;font-size:14px}.facts b{font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.card{width:156px;border:1px solid #d0d7de;border-radius:6px;padding:6px;font-size:12.5px;line-height:1.3;
overflow-wrap:anywhere}
.card img,.thumb img{width:96px;height:96px;object-fit:contain;display:block;margin:0 auto 4px;
image-rendering:pixelated;background:#fff}
.thumb{display:inline-block;width:120px;font-size:12px;margin:2px;vertical-align:top;text-align:center}
img.plot{max-width:100%;border:1px solid #eaeef2}
details{margin:6px 0}details>summary{cursor:pointer;color:#0550ae}details.round{border:1px solid #d0d7de;
border-radius:8px;padding:6px 12px;margin:8px 0}details.round>summary{color:#1b1f24;font-size:15px}
details.round[open]>summary{margin-bottom:8px;border-bottom:1px solid #eaeef2;padding-bottom:6px}
.scroll{overflow-x:auto}table.follow td{min-width:140px}table.follow td:first-child{min-width:0;max-width:520px}
.clamp{display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}code{font-size:12.5px}nav a{margin-right:12px}
"""


def e(value: Any) -> str:
    """``value`` as escaped HTML text (None as nothing)."""
    return html.escape("" if value is None else str(value), quote=True)


class Raw:
    """Markup built by the report itself (already escaped), to put in a table cell as is."""

    def __init__(self, markup: str) -> None:
        self.html = markup

    def __str__(self) -> str:
        return self.html


def cell(value: Any) -> str:
    """A table cell's content: ``Raw`` markup as is, anything else escaped."""
    return value.html if isinstance(value, Raw) else e(value)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(uri: str, alt: str, cls: str = "") -> str:
    return f'<img src="{uri}" alt="{e(alt)}"' + (f' class="{cls}"' if cls else "") + ">"


def thumb(image: Image.Image | StoredImage) -> str:
    """An inline PNG of the image, shrunk to ``THUMB`` px when larger (frontier images are big)."""
    if isinstance(image, StoredImage) and max(image.size) <= THUMB and image.data[:4] == b"\x89PNG":
        return data_uri(image.data)
    pil = as_pil(image)
    if max(pil.size) > THUMB:
        pil = pil.copy()
        pil.thumbnail((THUMB, THUMB))
    return data_uri(image_to_png_bytes(pil))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (ints as they are); anything else as its text."""
    if not is_number(value):
        return "" if value is None else str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def pct(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage (``–`` when there is none)."""
    return f"{100 * value:.{digits}f} %" if is_number(value) else "–"


def readable(value: Any) -> str:
    """A JSON value as plain words: ``{"num_objects": [7, 9], "mode": "both"}`` reads
    ``num objects 7–9, mode both``; nested dicts as ``key: (...)``, lists of two numbers as ranges."""
    if isinstance(value, dict):
        if not value:
            return "(all)"
        return ", ".join(f"{str(k).replace('_', ' ')} {readable(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(is_number(v) for v in value):
            a, b = (fmt(v, 3).rstrip("0").rstrip(".") if isinstance(v, float) else str(v) for v in value)
            return a if a == b else f"{a}–{b}"
        return "[" + ", ".join(readable(v) for v in value) + "]"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return fmt(value, 3).rstrip("0").rstrip(".")
    return "–" if value is None else str(value)


def spec_text(spec: Any) -> str:
    """A generator spec as words: ``count: num objects 7–9``."""
    if not isinstance(spec, dict):
        return readable(spec)
    rest = {k: v for k, v in spec.items() if k not in ("skill", "params")}
    parts = [readable(spec.get("params") or {})] if "params" in spec else []
    parts += [readable(rest)] if rest else []
    head = f"{spec['skill']}: " if spec.get("skill") else ""
    return head + ", ".join(parts)


def _rows_html(rows: list[list[Any]], numeric: Collection[int]) -> str:
    out = []
    for row in rows:
        cells = (
            f'<td class="num">{cell(v)}</td>' if i in numeric else f"<td>{cell(v)}</td>"
            for i, v in enumerate(row)
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out)


def table(
    header: list[str],
    rows: list[list[Any]],
    numeric: Collection[int] = (),
    open_rows: int = OPEN_ROWS,
    what: str = "rows",
    cls: str = "",
) -> str:
    """An HTML table. Past ``open_rows`` rows it shows the first ones and folds the rest into a
    ``<details>`` (a second table with the same header), so it never runs down the page."""
    head = "".join(
        f'<th class="num">{e(h)}</th>' if i in numeric else f"<th>{e(h)}</th>" for i, h in enumerate(header)
    )

    attrs = f' class="{e(cls)}"' if cls else ""

    def one(part: list[list[Any]]) -> str:
        return (
            f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{_rows_html(part, numeric)}</tbody></table>"
        )

    if len(rows) <= open_rows:
        return f'<div class="scroll">{one(rows)}</div>'
    rest = rows[open_rows:]
    shown = f'<div class="scroll">{one(rows[:open_rows])}</div>' if open_rows > 0 else ""
    label = f"{len(rest)} more {what} ({len(rows)} in all)" if open_rows > 0 else f"{len(rows)} {what}"
    return shown + f'<details><summary>{e(label)}</summary><div class="scroll">{one(rest)}</div></details>'


def facts(pairs: list[tuple[str, Any]]) -> str:
    """Short label: value pairs in a wrapping row (not a two-column table a screen tall)."""
    items = "".join(f"<span><b>{e(k)}</b>: {cell(v)}</span>" for k, v in pairs)
    return f'<div class="facts">{items}</div>'


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {kind}">{e(text)}</span>'


def plot(
    draw: Callable[[Any], None],
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[float, float] = (5.6, 3.4),
) -> str:
    """Draw on one fresh Agg axes (no pyplot: no global backend or figure state) -> a data URI."""
    return figure(lambda fig: _one_axes(fig, draw, xlabel, ylabel), title, size)


def _one_axes(fig: Any, draw: Callable[[Any], None], xlabel: str, ylabel: str) -> None:
    ax = fig.add_subplot()
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def figure(draw: Callable[[Any], None], title: str, size: tuple[float, float], dpi: int = 100) -> str:
    """A whole Agg figure drawn by ``draw(fig)``, with ``title`` on top -> a data URI."""
    return data_uri(figure_png(draw, title, size, dpi))


def figure_png(draw: Callable[[Any], None], title: str, size: tuple[float, float], dpi: int = 100) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")  # room for titles, labels, legends
    FigureCanvasAgg(fig)
    draw(fig)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def page(title: str, body: list[str]) -> str:
    """The whole HTML document around the sections of ``body`` (empty ones left out)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader sees the old
    page or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
