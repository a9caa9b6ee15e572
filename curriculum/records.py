"""What each round leaves on disk: ``<run>/curriculum/round_<k>/``.

``round.json`` (step, status, counts, timings, error if any), ``failures.jsonl``,
``analysis.json`` (the weaknesses), ``candidates.jsonl`` (every candidate with its verdicts, kept
or dropped with the reason, and its provenance) and ``contact_sheet.png``: the examples the round
added, each with its question, answer and the weakness it targets. A record is written whole into
a temporary folder, made durable and renamed into place (replacing an earlier record of the same
round), so a reader or a crash sees a whole record or none, never a mix of two. The curriculum
writes it just before the round's commit point, so every committed round has its record.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from curriculum.types import Candidate, Example, Failure, Weakness, as_pil


def _fsync(path: Path) -> None:
    """Make a file's data, or a folder's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode()


CAPTION_PX = 12  # caption font size of the contact sheet


def round_dir(root: Path, k: int) -> Path:
    return root / f"round_{k:05d}"


def write_round(
    root: Path,
    k: int,
    summary: dict[str, Any],
    failures: list[Failure] = (),
    weaknesses: list[Weakness] = (),
    candidates: list[Candidate] = (),
) -> Path:
    """Write one round's record, whole and durable, in place of any earlier one; returns its folder."""
    out = round_dir(root, k)
    tmp, old = out.with_name(f".tmp-{out.name}"), out.with_name(f".old-{out.name}")
    for debris in (tmp, old):  # left by a crash during an earlier write of this record
        shutil.rmtree(debris, ignore_errors=True)
    tmp.mkdir(parents=True)
    failure_rows = [
        {
            "id": f.example.id,
            "skill": f.example.skill,
            "params": f.example.params,
            "question": f.example.question,
            "answer": f.example.answer,
            "prediction": f.prediction,
            "new": f.new,
        }
        for f in failures
    ]
    candidate_rows = [
        {
            "id": c.example.id,
            "weakness": c.weakness,
            "generator": c.generator,
            "skill": c.example.skill,
            "question": c.example.question,
            "answer": c.example.answer,
            "kept": c.dropped is None,
            "dropped_by": c.dropped,
            "verdicts": c.verdicts,
            "meta": c.example.meta,  # provenance, judges' votes, rationale, image prompt
        }
        for c in candidates
    ]
    (tmp / "failures.jsonl").write_bytes(_jsonl(failure_rows))
    (tmp / "analysis.json").write_text(json.dumps([w.to_record() for w in weaknesses], indent=1))
    (tmp / "candidates.jsonl").write_bytes(_jsonl(candidate_rows))
    kept = [c.example for c in candidates if c.dropped is None]
    if kept:
        contact_sheet(kept, tmp / "contact_sheet.png")
    (tmp / "round.json").write_text(json.dumps(summary, indent=1, default=str))
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if out.exists():  # a folder cannot be renamed over a full one: move the old record aside first
        out.rename(old)
    tmp.rename(out)
    _fsync(root)
    shutil.rmtree(old, ignore_errors=True)
    return out


def contact_sheet(
    examples: list[Example], path: Path, columns: int = 6, limit: int = 36, cell: int = 160
) -> None:
    """A PNG grid of examples: the image, then its question, answer and targeted weakness."""
    by_weakness: dict[str, list[Example]] = {}
    for ex in examples:
        by_weakness.setdefault(str(ex.meta.get("weakness")), []).append(ex)
    # Round-robin over weaknesses, so every one of them shows.
    shown = [ex for group in itertools.zip_longest(*by_weakness.values()) for ex in group if ex][:limit]
    rows = -(-len(shown) // columns)
    font = ImageFont.load_default(size=CAPTION_PX)  # a TrueType face: legible, with its spaces
    line_h = CAPTION_PX + 3
    text_h = 6 * line_h + 6
    sheet = Image.new("RGB", (columns * cell, rows * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, ex in enumerate(shown):
        x, y = (i % columns) * cell, (i // columns) * (cell + text_h)
        image = as_pil(ex.image)
        scale = (cell - 8) / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.NEAREST)
        sheet.paste(image, (x + (cell - image.width) // 2, y + 4))
        lines = [
            ex.question,
            f"A: {ex.answer}",
            f"for: {ex.meta.get('weakness', '?')} ({ex.meta.get('generator', '?')})",
        ]
        for j, line in enumerate(_wrap(lines, cell - 6, font)):
            draw.text((x + 3, y + cell + 2 + line_h * j), line, fill=(0, 0, 0), font=font)
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)


def _wrap(lines: list[str], width_px: int, font: Any, max_lines: int = 6) -> list[str]:
    """``lines`` broken at spaces so that each fits ``width_px`` in ``font``; at most ``max_lines``."""
    out: list[str] = []
    for line in lines:
        words, current = line.split(" "), ""
        for word in words:
            trial = f"{current} {word}" if current else word
            if current and font.getlength(trial) > width_px:
                out.append(current)
                current = word
            else:
                current = trial
        out.append(current)
    return out[:max_lines]
