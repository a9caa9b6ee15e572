"""What each round leaves on disk: ``<run>/curriculum/round_<k>/``.

``round.json`` (step, status, counts, timings, error if any), ``failures.jsonl``,
``analysis.json`` (the weaknesses), ``candidates.jsonl`` (every candidate with its verdicts, kept
or dropped with the reason, and its provenance) and ``contact_sheet.png``: the examples the round added, each with its
question, answer and the weakness it targets. Files are written to a temporary name and renamed,
so a crash never leaves half a record.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from curriculum.types import Candidate, Example, Failure, Weakness, as_pil


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode()


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
    """Write one round's record; returns its folder."""
    out = round_dir(root, k)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        out / "failures.jsonl",
        _jsonl(
            [
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
        ),
    )
    _atomic_write(out / "analysis.json", json.dumps([w.to_record() for w in weaknesses], indent=1).encode())
    _atomic_write(
        out / "candidates.jsonl",
        _jsonl(
            [
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
        ),
    )
    kept = [c.example for c in candidates if c.dropped is None]
    if kept:
        contact_sheet(kept, out / "contact_sheet.png")
    _atomic_write(out / "round.json", json.dumps(summary, indent=1, default=str).encode())
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
    text_h = 70
    sheet = Image.new("RGB", (columns * cell, rows * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
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
        for j, line in enumerate(_wrap(lines, cell - 6)):
            draw.text((x + 3, y + cell + 2 + 11 * j), line, fill=(0, 0, 0), font=font)
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)


def _wrap(lines: list[str], width_px: int, max_lines: int = 6) -> list[str]:
    per_line = max(8, width_px // 6)
    out: list[str] = []
    for line in lines:
        while len(line) > per_line:
            cut = line.rfind(" ", 0, per_line)
            cut = cut if cut > 0 else per_line
            out.append(line[:cut])
            line = line[cut:].lstrip()
        out.append(line)
    return out[:max_lines]
