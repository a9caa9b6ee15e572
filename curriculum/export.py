"""Export a run's curriculum pool as a Hugging Face dataset with a dataset card.

The pool on disk is a replay log (``curriculum/pool/round_<k>.jsonl`` plus images), built for exact
resumption, not for reuse. ``export_run`` turns it into something another project can load with
``datasets.load_from_disk``: every example any round committed, live or retired since (a ``live``
column says which, and ``retired_round`` when it left), so nothing the run paid for is lost, with
its image as a PNG ``datasets.Image()`` column, how its answer was checked, and its provenance as
columns or JSON strings. The card (``README.md`` beside the data, ``curriculum.dataset_card``)
says how the pool was made, what each round did and how the run ended.

Reading the run folder is ``curriculum.run_records``; its names are re-exported here for the
callers that import them from this module.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from curriculum.dataset_card import COLUMNS, dataset_card, features
from curriculum.run_records import Committed, RoundRecord, RunRecords, read_run
from curriculum.types import StoredImage, image_to_png_bytes

__all__ = ["Committed", "RoundRecord", "RunRecords", "export_run", "read_run"]


def _png(image: Any) -> bytes:
    """An image as PNG bytes (a pool image already is one: no re-encoding)."""
    if isinstance(image, StoredImage) and image.data[:8] == b"\x89PNG\r\n\x1a\n":
        return image.data
    return image_to_png_bytes(image)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str)


def _text(value: Any) -> str | None:
    """A string column's value: the text of ``value``, null kept null."""
    return None if value is None else str(value)


def _rows(examples: list[Committed]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for c in examples:
        ex, meta = c.example, c.example.meta
        row = {
            "id": ex.id,
            "image": {"bytes": _png(ex.image), "path": None},
            "more_images": [{"bytes": _png(im), "path": None} for im in ex.more_images],
            "messages": None if ex.messages is None else _as_json(ex.messages),
            "question": ex.question,
            "answer": ex.answer,
            "skill": ex.skill,
            "source": ex.source,
            "split": ex.split,
            "round": c.round,
            "weakness": _text(meta.get("weakness")),
            "generator": _text(meta.get("generator")),
            "answer_checked_by": _text(meta.get("answer_checked_by")),
            "live": c.live,
            "retired_round": c.retired_round,
            "weight": float(meta.get("weight", 1.0)),
            "verdicts": _as_json(meta.get("verdicts") or {}),
            "params": _as_json(ex.params),
            "scene": _as_json(ex.scene),
            "meta": _as_json(meta),
        }
        for name, value in row.items():
            cols[name].append(value)
    return cols


def export_run(run_dir: Path, out: Path | None = None) -> Path:
    """Write the run's pool (all committed examples) as a dataset with its card; returns ``out``.

    ``out`` defaults to ``<run_dir>/export``. It is written beside itself under a temporary name
    and swapped in whole, so a failed export never leaves a half dataset; an existing ``out`` is
    replaced only if it is empty or an earlier export (never some other folder).
    """
    from datasets import Dataset

    run = read_run(Path(run_dir))
    out = Path(out) if out is not None else run.root / "export"
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "state.json").is_file())):
        raise ValueError(f"{out} exists and is not an earlier export: refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dataset = Dataset.from_dict(_rows(run.examples), features=features())
        # An empty dataset would be saved as zero shards, which load_from_disk cannot read back.
        dataset.save_to_disk(str(tmp), num_shards=1 if len(dataset) == 0 else None)
        dataset_card(run).save(tmp / "README.md")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
