"""The run's three splits, from the built-in world or from any ``datasets`` source.

External images are validated as they load: a missing, corrupt, truncated, tiny or absurdly
large image drops its row, and every drop is counted by reason so nothing vanishes silently.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.types import Example, StoredImage
from train.config import DataConfig, HFDataConfig

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """train: what the model learns from; probe: where the curriculum mines failures;
    test: held out, for reporting only."""

    train: list[Example]
    probe: list[Example]
    test: list[Example]
    skipped: Counter = field(default_factory=Counter)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "probe": len(self.probe), "test": len(self.test)}


def load_splits(cfg: DataConfig, seed: int = 0) -> Splits:
    if cfg.source == "world":
        from curriculum.world import build_splits

        w = cfg.world
        parts = build_splits(
            seed=w.seed,
            train_size=w.train_size,
            probe_size=w.probe_size,
            test_size=w.test_size,
            image_size=w.image_size,
            skills=w.skills or None,
        )
        return Splits(parts["train"], parts["probe"], parts["test"])
    return load_hf_splits(cfg.hf, cfg, seed)


def load_hf_splits(hf: HFDataConfig, cfg: DataConfig, seed: int) -> Splits:
    """Load train/probe/test from a ``datasets`` source; carve missing eval splits out of train."""
    skipped: Counter = Counter()
    train = load_hf_examples(hf, hf.train_split, cfg, skipped)
    if hf.max_examples:
        train = train[: hf.max_examples]

    def named_or_carved(split: str | None, role: str) -> list[Example]:
        nonlocal train
        if split is not None:
            return load_hf_examples(hf, split, cfg, skipped, role=role)
        if len(train) <= hf.eval_holdout:
            raise ValueError(
                f"data.hf: cannot hold out {hf.eval_holdout} items for {role} from {len(train)} train items"
            )
        held, train = train[-hf.eval_holdout :], train[: -hf.eval_holdout]
        for ex in held:
            ex.split = role
        return held

    test = named_or_carved(hf.eval_split, "test")
    probe = named_or_carved(hf.probe_split, "probe")
    if skipped:
        log.warning("skipped images: %s", dict(skipped))
    return Splits(train, probe, test, skipped)


def load_hf_examples(
    hf: HFDataConfig, split: str, cfg: DataConfig, skipped: Counter, role: str | None = None
) -> list[Example]:
    """Rows of one split as Examples; rows whose image fails validation are counted in ``skipped``."""
    import datasets

    try:
        ds = datasets.load_dataset(hf.path, hf.name, split=split, data_files=hf.data_files)
    except Exception as err:  # datasets raises many types; the user needs the source and the reason
        raise ValueError(f"data.hf.path={hf.path!r} split {split!r}: {type(err).__name__}: {err}") from None
    columns = [hf.image_column, hf.question_column, hf.answer_column, hf.skill_column, hf.id_column]
    for col in filter(None, columns):
        if col not in ds.column_names:
            raise ValueError(
                f"data.hf: column {col!r} not in split {split!r} (columns: {', '.join(ds.column_names)})"
            )
    if isinstance(ds.features[hf.image_column], datasets.Image):
        # Decode ourselves so one corrupt file is a counted skip, not a crash mid-epoch.
        ds = ds.cast_column(hf.image_column, datasets.Image(decode=False))
    root = Path(hf.image_root) if hf.image_root else _default_root(hf)
    known = {hf.image_column, hf.question_column, hf.answer_column, hf.skill_column, hf.id_column}
    out = []
    for i, row in enumerate(ds):
        image, reason = read_image(row[hf.image_column], root, cfg)
        if image is None:
            skipped[reason] += 1
            continue
        out.append(
            Example(
                id=str(row[hf.id_column]) if hf.id_column else f"{split}-{i}",
                image=image,
                question=str(row[hf.question_column]),
                answer=str(row[hf.answer_column]),
                skill=str(row[hf.skill_column]) if hf.skill_column else None,
                source="real",
                split=role or split,
                meta={k: v for k, v in row.items() if k not in known and _jsonable(v)},
            )
        )
    return out


def _default_root(hf: HFDataConfig) -> Path | None:
    if hf.path and Path(hf.path).is_dir():
        return Path(hf.path)
    if hf.data_files:
        first = next(iter(hf.data_files.values()))
        return Path(first).parent
    return None


def read_image(value: Any, root: Path | None, cfg: DataConfig) -> tuple[StoredImage | None, str]:
    """Validate one image given as a decoded image, a path, bytes or a ``{"bytes", "path"}`` dict.

    Returns the image kept as encoded bytes, or None and the reason it was skipped.
    """
    data: bytes | None = None
    path: str | None = None
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    elif value is None:
        return None, "missing"
    else:
        return None, "unreadable"
    if data is None:
        if not path:
            return None, "missing"
        file = Path(path)
        if not file.is_absolute() and root is not None:
            file = root / file
        if not file.is_file():
            return None, "missing"
        data = file.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size  # header only: refuse huge images before decoding them
            if width * height > cfg.max_image_pixels:
                return None, "too_large"
            if min(width, height) < cfg.min_image_side:
                return None, "too_small"
            img.convert("RGB").load()
    except Image.DecompressionBombError:
        return None, "too_large"
    except Exception:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        return None, "corrupt"
    return StoredImage(data, (width, height)), "ok"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def load_eval_sets(paths: list[str], cfg: DataConfig) -> dict[str, list[Example]]:
    """Extra evaluation sets to keep out of curriculum data, by file name.

    Each file is JSON (a list of objects) or JSONL with a ``question`` field and optionally
    ``image`` (a path, relative to the file's folder) and ``id``. Items whose image is given but
    unreadable keep their question, so text decontamination still covers them.
    """
    import json

    out: dict[str, list[Example]] = {}
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"curriculum.eval_sets: no such file {name!r}")
        text = path.read_text()
        try:
            rows = (
                json.loads(text)
                if path.suffix == ".json"
                else [json.loads(x) for x in text.splitlines() if x.strip()]
            )
        except json.JSONDecodeError as err:
            raise ValueError(
                f"curriculum.eval_sets: {name!r} is not valid JSON{'' if path.suffix == '.json' else 'L'}: {err}"
            ) from None
        items = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "question" not in row:
                raise ValueError(f"curriculum.eval_sets: {name!r} item {i} has no 'question' field")
            image = read_image(row["image"], path.parent, cfg)[0] if row.get("image") else None
            items.append(
                Example(
                    id=str(row.get("id", i)),
                    image=image,
                    question=str(row["question"]),
                    answer=str(row.get("answer", "")),
                    split=path.stem,
                )
            )  # type: ignore[arg-type]
        out[path.stem] = items
    return out
