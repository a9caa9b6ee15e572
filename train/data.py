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
model to say ``3.0``); booleans become ``true`` and ``false``, as JSON writes them (the cells
themselves: ``train.rows``).

Conversational rows (``data.hf.messages_column``: turns and several images, as TRL writes them) are
read by ``train.conversations``, which names their own skip reasons.

Relative image paths resolve against the folder of each split's own data file (``split_sources``);
a split that ends empty is refused in one line naming it and the reason. The columns of
``data.hf.slice_columns`` become each item's ``params``, which the curriculum's analyzer slices by.
"""

from __future__ import annotations

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

from curriculum.types import Example
from train.config import DataConfig, HFDataConfig
from train.conversations import Refused, conversation_example
from train.rows import UNDECODABLE, expand, jsonable, read_image, text_value, utf8_data_files

__all__ = ["Splits", "column_names", "describe_skipped", "load_eval_sets", "load_splits", "text_value"]

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
    if hf.messages_column:  # a conversation's content columns fill no single field
        named = {hf.skill_column: "skill", hf.id_column: "id"}
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
            if hf.eval_holdout == 0:
                key = "eval_split" if role == "test" else "probe_split"
                raise ValueError(
                    f"data.hf: the {role} split is empty: data.hf.{key} names no split and "
                    "data.hf.eval_holdout is 0 (name a split, or hold out train items)"
                )
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
    bin_slice_columns(hf.slice_columns, train, [test, probe])
    train, reserve = hold_reserve(train, hf.reserve)
    return Splits(train, probe, test, skipped, reserve)


SLICE_LEVELS = 8
"""A numeric slice column with more distinct values than this in train is cut into thirds."""


def bin_slice_columns(columns: list[str], train: list[Example], others: list[list[Example]]) -> None:
    """Each item's slice-column values (``params``) as the analyzer's slices read them: text, or
    for a numeric column with more than ``SLICE_LEVELS`` distinct values in ``train``, the third
    of the train split's range it falls in (``"12-40"``; edges from train alone, so every split,
    round and run cuts alike). A missing value leaves the item out of that column's slices."""
    items = [*train, *(ex for split in others for ex in split)]
    for column in columns:
        values = [ex.params.get(column) for ex in train]
        numbers = [v for v in values if _is_number(v)]
        if (
            numbers
            and len(numbers) == len([v for v in values if v is not None])
            and len(set(numbers)) > SLICE_LEVELS
        ):
            ordered = sorted(float(v) for v in numbers)
            edges = [ordered[0], ordered[len(ordered) // 3], ordered[2 * len(ordered) // 3], ordered[-1]]
            labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(3)]
            for ex in items:
                v = ex.params.get(column)
                if _is_number(v):
                    ex.params[column] = labels[0 if v < edges[1] else 1 if v < edges[2] else 2]
                else:
                    ex.params.pop(column, None)
            continue
        for ex in items:
            text = text_value(ex.params.get(column))[0]
            if text is None:
                ex.params.pop(column, None)
            else:
                ex.params[column] = text


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


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
    name = role or split
    out: list[Example] = []
    rows, roots = 0, []
    for files, root in split_sources(hf, split, data_files):
        roots.append(root)
        rows += _load_rows(hf, split, name, cfg, skipped, files, root, rows, out)
    if not out:
        raise ValueError(
            f"data.hf: the {name} split ({split!r}) is empty: {_why_empty(name, rows, skipped, roots)}"
        )
    return out


def _why_empty(name: str, rows: int, skipped: Counter, roots: list[Path | None]) -> str:
    """Why a split kept no row, in a few words: no rows, or every row skipped and for what."""
    if rows == 0:
        return "its data holds no row"
    reasons = {k.partition("/")[2]: n for k, n in skipped.items() if k.startswith(f"{name}/")}
    text = f"all {rows} rows were skipped ({', '.join(f'{n} {r}' for r, n in sorted(reasons.items()))})"
    if reasons.get("image_missing"):
        where = ", ".join(sorted({str(r) for r in roots if r is not None})) or "the working folder"
        text += (
            f"; relative image paths resolve against {where} (set data.hf.image_root if they lie elsewhere)"
        )
    return text


def split_sources(
    hf: HFDataConfig, split: str, data_files: dict[str, Any] | None
) -> list[tuple[dict[str, Any] | None, Path | None]]:
    """How to load one split: (data files to pass to ``load_dataset``, the folder its relative
    image paths resolve against) per group of its files. Each split's paths resolve against its
    own file's folder (splits kept in separate folders each find their images), files of one split
    in several folders are loaded folder by folder; ``image_root`` overrides, and a split with no
    local file of its own resolves against ``path`` when that is a folder."""
    given = data_files or hf.data_files
    if hf.image_root:
        return [(given, Path(hf.image_root))]
    if not hf.data_files or split not in hf.data_files:
        return [(given, _default_root(hf))]
    originals = expand(hf.data_files[split])
    loaded = expand(data_files[split]) if data_files else originals
    if len(loaded) != len(originals) or not all(Path(f).is_file() for f in originals):
        return [(given, Path(originals[0]).parent if originals else None)]
    groups: dict[Path, list[str]] = {}
    for original, copy in zip(originals, loaded, strict=True):
        groups.setdefault(Path(original).parent, []).append(copy)
    return [({split: files}, folder) for folder, files in groups.items()]


def _load_rows(
    hf: HFDataConfig,
    split: str,
    name: str,
    cfg: DataConfig,
    skipped: Counter,
    data_files: dict[str, Any] | None,
    root: Path | None,
    offset: int,
    out: list[Example],
) -> int:
    """Append the usable rows of one group of a split's files to ``out`` (ids by row number from
    ``offset`` when there is no id column); returns how many rows the group held."""
    import datasets

    local = [Path(f) for f in expand((data_files or {}).get(split, []))]
    if local and all(f.is_file() and f.stat().st_size < 1024 and not f.read_bytes().strip() for f in local):
        return 0  # empty files: ``datasets`` cannot tell what they hold, and fails obscurely
    try:
        ds = datasets.load_dataset(hf.path, hf.name, split=split, data_files=data_files)
    except Exception as err:  # datasets raises many types; the user needs the source and the reason
        raise ValueError(f"data.hf.path={hf.path!r} split {split!r}: {type(err).__name__}: {err}") from None
    content = [hf.messages_column, hf.images_column] if hf.messages_column else [
        hf.image_column, hf.question_column, hf.answer_column]  # fmt: skip
    columns = [*content, hf.skill_column, hf.id_column]
    for col in filter(None, [*columns, *hf.slice_columns]):
        if col not in ds.column_names:
            raise ValueError(
                f"data.hf: column {col!r} not in split {split!r} (columns: {', '.join(ds.column_names)})"
            )
    # Decode images ourselves so one corrupt file is a counted skip, not a crash mid-epoch.
    image_col = hf.images_column if hf.messages_column else hf.image_column
    feature = ds.features[image_col]
    if isinstance(feature, datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
    elif isinstance(getattr(feature, "feature", None), datasets.Image):
        ds = ds.cast_column(image_col, datasets.Sequence(datasets.Image(decode=False)))  # 3.x has no List
    known = {*columns, *hf.slice_columns, UNDECODABLE}
    for i, row in enumerate(ds, offset):
        if row.get(UNDECODABLE):  # counted, and named, when its file was read
            continue
        if hf.messages_column:
            try:
                out.append(conversation_example(row[hf.messages_column], row[hf.images_column], root, cfg,
                                                **_fields(hf, row, split, name, i, known)))  # fmt: skip
            except Refused as why:
                skipped[f"{name}/{why}"] += 1
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
        out.append(Example(image=image, question=question, answer=answer,
                           **_fields(hf, row, split, name, i, known)))  # fmt: skip
    return len(ds)


def _fields(
    hf: HFDataConfig, row: dict[str, Any], split: str, name: str, i: int, known: set
) -> dict[str, Any]:
    """An external row's Example fields besides its content: id, skill, slices, extra columns."""
    uid = text_value(row[hf.id_column])[0] if hf.id_column else None
    return dict(
        id=uid if uid is not None else f"{split}-{i}",
        skill=text_value(row[hf.skill_column])[0] if hf.skill_column else None,
        params={c: row[c] for c in hf.slice_columns if jsonable(row[c]) and row[c] is not None},
        source="real",
        split=name,
        meta={k: v for k, v in row.items() if k not in known and jsonable(v)},
    )


def _default_root(hf: HFDataConfig) -> Path | None:
    if hf.path and Path(hf.path).is_dir():
        return Path(hf.path)
    if hf.data_files:
        first = next(iter(hf.data_files.values()))
        return Path(first).parent
    return None


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
