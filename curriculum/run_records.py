"""Read a run folder back: its config, summary, metrics, round records and committed examples.

``read_run`` is the one reader of a run folder, shared by ``curriculum.export`` (the pool as a
dataset) and ``curriculum.report`` (the HTML page). It never writes, except that opening the
``Pool`` takes its lock (the pool's own rule for readers). The pool on disk is a replay log
(``curriculum/pool/round_<k>.jsonl`` plus images) built for exact resumption; replaying it round by
round tells which round added each example and which retired it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curriculum.pool import Pool
from curriculum.types import Example

_ROUND_DIR = re.compile(r"^round_(\d+)$")


@dataclass
class Committed:
    """One example as the pool committed it: the round that added it and the one that retired it."""

    example: Example
    round: int
    retired_round: int | None = None

    @property
    def live(self) -> bool:
        return self.retired_round is None


@dataclass
class RoundRecord:
    """What one round left: its record folder (if written) and its pool commit (if made).

    A round can lack either: rank 0 commits before it writes the record, so a crash between the
    two leaves a commit without a record; a round whose empty commit failed has a record only.
    """

    round: int
    folder: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # round.json ({} when not written)
    failures: list[dict[str, Any]] = field(default_factory=list)
    weaknesses: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    committed: bool = False
    added: int = 0
    retired: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.summary.get("status"):
            return str(self.summary["status"])
        return "committed, no record" if self.committed else "incomplete record"

    @property
    def step(self) -> int | None:
        return self.summary.get("step")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.summary.get("metrics") or {}

    @property
    def contact_sheet(self) -> Path | None:
        path = self.folder / "contact_sheet.png" if self.folder else None
        return path if path is not None and path.is_file() else None


@dataclass
class RunRecords:
    """A run folder as read back: ``config.yaml`` and ``summary.json`` as dicts ({} when absent),
    ``metrics.jsonl`` rows, each round's record and every example any round committed."""

    root: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    rounds: list[RoundRecord]
    examples: list[Committed]
    has_pool: bool

    @property
    def name(self) -> str:
        return str(self.summary.get("run") or (self.config.get("run") or {}).get("name") or self.root.name)

    def curriculum_config(self) -> dict[str, Any]:
        return self.config.get("curriculum") or {}


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a live run is appending) is skipped, not fatal."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_run(run_dir: Path, require_pool: bool = True) -> RunRecords:
    """Everything a finished or running run has on disk, rounds in order.

    Raises ``ValueError`` when ``run_dir`` is not a run (no ``curriculum/pool`` when
    ``require_pool``; otherwise none of a run's files), before anything is opened: opening a
    ``Pool`` on a stray path would create one there.
    """
    root = Path(run_dir)
    pool_dir = root / "curriculum" / "pool"
    if require_pool and not pool_dir.is_dir():
        raise ValueError(f"{root} is not a lessonloop run with a curriculum: {pool_dir} does not exist")
    markers = ("config.yaml", "summary.json", "metrics.jsonl", "curriculum")
    if not root.is_dir() or not any((root / m).exists() for m in markers):
        raise ValueError(f"{root} is not a lessonloop run: it has none of {', '.join(markers)}")
    config_path = root / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    summary = _read_json(root / "summary.json", {})
    metrics = _read_jsonl(root / "metrics.jsonl")

    rounds: dict[int, RoundRecord] = {}
    cur = root / "curriculum"
    if cur.is_dir():
        for folder in sorted(cur.iterdir()):
            m = _ROUND_DIR.match(folder.name)
            if m and folder.is_dir():
                k = int(m.group(1))
                rounds[k] = RoundRecord(
                    round=k,
                    folder=folder,
                    summary=_read_json(folder / "round.json", {}),
                    failures=_read_jsonl(folder / "failures.jsonl"),
                    weaknesses=_read_json(folder / "analysis.json", []),
                    candidates=_read_jsonl(folder / "candidates.jsonl"),
                )

    examples: list[Committed] = []
    has_pool = pool_dir.is_dir()
    if has_pool:
        # Replay round by round (``upto=0`` applies none at open) to learn who retired what, when.
        pool = Pool(pool_dir, upto=0)
        by_id: dict[str, Committed] = {}
        for k in pool.committed_rounds():
            before = set(pool.retired)
            pool.apply_round(k)
            added = pool.round_examples(k)
            for ex in added:
                by_id[ex.id] = Committed(ex, k)
                examples.append(by_id[ex.id])
            gone = [i for i in pool.retired if i not in before]
            for i in gone:
                if i in by_id:
                    by_id[i].retired_round = k
            record = rounds.setdefault(k, RoundRecord(round=k))
            record.committed, record.added, record.retired = True, len(added), gone
    return RunRecords(root, config, summary, metrics, [rounds[k] for k in sorted(rounds)], examples, has_pool)
