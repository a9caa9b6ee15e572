"""The run's three splits, from the built-in world or from any ``datasets`` source (and, for
external data, a reserve of train items held back for the baselines that add fresh real data).

External rows are validated as they load, and a row that cannot train as it is written is
dropped and counted by split and reason (``Splits.skipped``), so nothing vanishes silently and
nothing trains as something it is not:

- its image is missing, corrupt, truncated, tiny or absurdly large (``image_missing``,
  ``image_corrupt``, ``image_too_small``, ``image_too_large``, ``image_unreadable``);
- its question or answer is null, NaN or blank (``question_missing``, ``answer_missing``), holds
  bytes that are not UTF-8 (``*_undecodable``: a local JSON file with such a row would otherwise
  fail to load as a whole, with no row named, so those rows are taken out first and named in a
  warning; ``text_undecodable`` when another column holds them), or is a list, mapping or other
  value that is not text (``*_not_text``).

Numbers are legitimate questions and answers and become their string form (an integral float as
an integer: a column of integers with a gap reads back as floats, and ``3.0`` would teach the
model to say ``3.0``); booleans become ``true`` and ``false``, as JSON writes them.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import numbers
import random
import tempfile
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
    """Rows dropped while loading, by ``"<split>/<reason>"`` (the reasons: module docstring)."""
    reserve: list[Example] = field(default_factory=list)
    """Train items held back from training (``data.hf.reserve``): fresh real data for the
    baselines that add some. Never trained on, except as such a baseline's examples."""

    def sizes(self) -> dict[str, int]:
        sizes = {"train": len(self.train), "probe": len(self.probe), "test": len(self.test)}
        return {**sizes, "reserve": len(self.reserve)} if self.reserve else sizes


def describe_skipped(skipped: Counter) -> str:
    """``skipped`` for a log line, split by split: ``train: 2 image_corrupt, 1 answer_missing; ...``."""
    by_split: dict[str, list[str]] = {}
    for key, n in sorted(skipped.items()):
        split, _, reason = key.partition("/")
        by_split.setdefault(split, []).append(f"{n} {reason}")
    return "; ".join(f"{split}: {', '.join(parts)}" for split, parts in by_split.items())


def column_names(cfg: DataConfig) -> dict[str, str]:
    """The dataset's name of each column that fills an example field (``{"solution": "answer"}``),
    so reward functions can read a field under the name the dataset gives it; empty for the world."""
    if cfg.source != "hf":
        return {}
    hf = cfg.hf
    named = {hf.image_column: "image", hf.question_column: "question", hf.answer_column: "answer",
             hf.skill_column: "skill", hf.id_column: "id"}  # fmt: skip
    return {column: fld for column, fld in named.items() if column}


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
    """Load train/probe/test from a ``datasets`` source; carve missing eval splits out of train.
    Dropped rows are counted in ``Splits.skipped`` and logged, split by split."""
    skipped: Counter = Counter()
    roles = {hf.train_split: hf.train_split, hf.eval_split: "test", hf.probe_split: "probe"}
    with tempfile.TemporaryDirectory(prefix="lessonloop-data-") as workdir:
        data_files = utf8_data_files(hf, roles, skipped, Path(workdir))
        train = load_hf_examples(hf, hf.train_split, cfg, skipped, data_files=data_files)
        if hf.max_examples:
            train = train[: hf.max_examples]

        def named_or_carved(split: str | None, role: str) -> list[Example]:
            nonlocal train
            if split is not None:
                return load_hf_examples(hf, split, cfg, skipped, role=role, data_files=data_files)
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
        log.warning("skipped rows: %s", describe_skipped(skipped))
    train, reserve = hold_reserve(train, hf.reserve)
    return Splits(train, probe, test, skipped, reserve)


RESERVE_STREAM = "lessonloop|reserve"
"""The random stream of the reserve's sample: fixed, so every run of a dataset (every arm, every
seed) holds back the same items and trains on the same rest."""


def hold_reserve(train: list[Example], size: int) -> tuple[list[Example], list[Example]]:
    """``train`` split into the items that train and ``size`` held back (a fixed random sample, so
    the reserve keeps the split's own skill mix, and both keep the split's order). Refused when the
    split cannot spare them: at least one item must be left to train on."""
    if size <= 0:
        return train, []
    if size >= len(train):
        raise ValueError(
            f"data.hf.reserve: cannot hold back {size} of {len(train)} train items (at least one must train)"
        )
    held = set(random.Random(RESERVE_STREAM).sample(range(len(train)), size))
    reserve = [ex for i, ex in enumerate(train) if i in held]
    for ex in reserve:
        ex.split = "reserve"
    return [ex for i, ex in enumerate(train) if i not in held], reserve


def load_hf_examples(
    hf: HFDataConfig,
    split: str,
    cfg: DataConfig,
    skipped: Counter,
    role: str | None = None,
    data_files: dict[str, Any] | None = None,
) -> list[Example]:
    """Rows of one split as Examples; a row that cannot train as written (module docstring) is
    dropped and counted in ``skipped`` under ``"<split>/<reason>"``. ``data_files`` replaces
    ``hf.data_files`` (``utf8_data_files``' copies)."""
    import datasets

    try:
        ds = datasets.load_dataset(hf.path, hf.name, split=split, data_files=data_files or hf.data_files)
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
    known = {
        hf.image_column,
        hf.question_column,
        hf.answer_column,
        hf.skill_column,
        hf.id_column,
        UNDECODABLE,
    }
    name = role or split
    out = []
    for i, row in enumerate(ds):
        if row.get(UNDECODABLE):  # counted, and named, when its file was read
            continue
        question, why = text_value(row[hf.question_column])
        if question is None:
            skipped[f"{name}/question_{why}"] += 1
            continue
        answer, why = text_value(row[hf.answer_column])
        if answer is None:
            skipped[f"{name}/answer_{why}"] += 1
            continue
        image, why = read_image(row[hf.image_column], root, cfg)
        if image is None:
            skipped[f"{name}/image_{why}"] += 1
            continue
        uid = text_value(row[hf.id_column])[0] if hf.id_column else None
        out.append(
            Example(
                id=uid if uid is not None else f"{split}-{i}",
                image=image,
                question=question,
                answer=answer,
                skill=text_value(row[hf.skill_column])[0] if hf.skill_column else None,
                source="real",
                split=name,
                meta={k: v for k, v in row.items() if k not in known and _jsonable(v)},
            )
        )
    return out


def text_value(value: Any) -> tuple[str | None, str]:
    """A cell as text, or None and why not: ``missing`` (null, NaN or blank), ``undecodable``
    (bytes, or text holding bytes, that are not UTF-8) or ``not_text`` (a list, a mapping, an
    infinity...). Numbers become their string form, an integral float as an integer; booleans
    ``true`` and ``false``."""
    if value is None:
        return None, "missing"
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None, "undecodable"
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, numbers.Integral):
        value = str(int(value))
    elif isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None, "missing"
        if math.isinf(number):
            return None, "not_text"
        value = str(int(number)) if number.is_integer() else repr(number)
    elif not isinstance(value, str):
        return None, "not_text"
    if not _utf8(value):
        return None, "undecodable"
    if not value.strip():
        return None, "missing"
    return value, "ok"


def _utf8(text: str) -> bool:
    """False for text that holds lone surrogates: bytes that did not decode, escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


UNDECODABLE = "__lessonloop_undecodable__"
"""Column marking, in ``utf8_data_files``' copies, the rows taken out for bytes that are not UTF-8."""


def utf8_data_files(
    hf: HFDataConfig, roles: dict[str | None, str], skipped: Counter, workdir: Path
) -> dict[str, Any] | None:
    """Local JSON and JSON Lines data files with bytes that are not UTF-8, made loadable.

    ``datasets`` refuses such a file whole (and with it every split of the source), naming no row.
    Each row holding such bytes is named in a warning, counted in ``skipped`` under its split's
    role (``roles``: data-file split -> the run's split name) and replaced, in a copy under
    ``workdir``, by a row that only carries the ``UNDECODABLE`` mark, so later rows keep their row
    numbers (and ids). Returns the data files to load (the copies in place of the originals), or
    None when every file decodes."""
    if hf.path != "json" or not hf.data_files:
        return None
    replaced = False
    files: dict[str, Any] = {}
    for key, spec in hf.data_files.items():
        paths = [spec] if isinstance(spec, str) else list(spec)
        paths = [
            p
            for pattern in paths
            for p in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
        ]
        cleaned = []
        for path in paths:
            copy = _utf8_copy(
                Path(path), hf, roles.get(key), skipped, workdir / f"{key}-{len(cleaned)}.jsonl"
            )
            replaced |= copy is not None
            cleaned.append(str(copy or path))
        files[key] = cleaned
    return files if replaced else None


def _utf8_copy(path: Path, hf: HFDataConfig, role: str | None, skipped: Counter, out: Path) -> Path | None:
    """``path`` as JSON Lines at ``out`` with its undecodable rows marked, or None when it decodes
    (or is not a local file: ``datasets`` reads it as it is)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        if text.lstrip().startswith("["):  # one JSON array: rows numbered from 0, as items
            rows = [(f"item {i}", row) for i, row in enumerate(json.loads(text))]
        else:
            rows = [
                (f"line {n}", json.loads(line)) for n, line in enumerate(text.split("\n"), 1) if line.strip()
            ]
    except json.JSONDecodeError as err:
        raise ValueError(f"data.hf: {path} is not valid JSON: {err}") from None
    named = {hf.question_column: "question", hf.answer_column: "answer"}
    bad_rows = []
    with open(out, "w", encoding="utf-8") as f:
        for where, row in rows:
            items = row.items() if isinstance(row, dict) else []
            bad = [k for k, v in items if not _utf8(k) or not _utf8(json.dumps(v, ensure_ascii=False))]
            if bad:
                reason = next((f"{named[k]}_undecodable" for k in bad if k in named), "text_undecodable")
                if role is not None:
                    skipped[f"{role}/{reason}"] += 1
                bad_rows.append(
                    f"{where} ({', '.join(repr(k.encode('utf-8', 'replace').decode()) for k in bad)})"
                )
                row = {UNDECODABLE: reason}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    log.warning(
        "data.hf: %s: %d row(s) hold bytes that are not UTF-8 and are skipped: %s",
        path, len(bad_rows), "; ".join(bad_rows[:10]) + (f"; and {len(bad_rows) - 10} more" if len(bad_rows) > 10 else ""),
    )  # fmt: skip
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
    unreadable keep their question, so text decontamination still covers them; an item without
    question text, or a file that is not UTF-8, is refused by name (decontamination must cover
    every item).
    """
    out: dict[str, list[Example]] = {}
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"curriculum.eval_sets: no such file {name!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"curriculum.eval_sets: {name!r} is not UTF-8: {err}") from None
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
            question, why = text_value(row["question"])
            if question is None:
                raise ValueError(f"curriculum.eval_sets: {name!r} item {i}: question {why}")
            image = read_image(row["image"], path.parent, cfg)[0] if row.get("image") else None
            items.append(
                Example(
                    id=str(row.get("id", i)),
                    image=image,
                    question=question,
                    answer=text_value(row.get("answer"))[0] or "",
                    split=path.stem,
                )
            )  # type: ignore[arg-type]
        out[path.stem] = items
    return out
