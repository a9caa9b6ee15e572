"""One external row's cells made safe to train on: text cells, images, and data files whose bytes
are not UTF-8 (``train.data`` loads the splits with these).

A cell that cannot train as written is refused with the reason ``train.data`` counts it under:
``missing``, ``undecodable``, ``not_text`` for text; ``missing``, ``corrupt``, ``too_small``,
``too_large``, ``unreadable`` for images.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import numbers
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.types import StoredImage
from train.config import DataConfig, HFDataConfig

log = logging.getLogger("train.data")


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
        cleaned = []
        for path in expand(spec):
            copy = _utf8_copy(
                Path(path), hf, roles.get(key), skipped, workdir / f"{key}-{len(cleaned)}.jsonl"
            )
            replaced |= copy is not None
            cleaned.append(str(copy or path))
        files[key] = cleaned
    return files if replaced else None


def expand(spec: Any) -> list[str]:
    """A data-files entry (a path, a glob, or a list of them) as the list of paths it names."""
    patterns = [spec] if isinstance(spec, str) else list(spec)
    return [
        p
        for pattern in patterns
        for p in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
    ]


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


def jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
