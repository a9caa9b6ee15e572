"""Export a run's curriculum pool as a Hugging Face dataset with a dataset card.

The pool on disk is a replay log (``curriculum/pool/round_<k>.jsonl`` plus images), built for exact
resumption, not for reuse. ``export_run`` turns it into something another project can load with
``datasets.load_from_disk``: every example any round committed, live or retired since (a ``live``
column says which, and ``retired_round`` when it left), so nothing the run paid for is lost, with
its image as a PNG ``datasets.Image()`` column and its provenance as columns or JSON strings. The
card (``README.md`` beside the data) says how the pool was made (from ``config.yaml``), what each
round did (from ``round_<k>/round.json``) and how the run ended (from ``summary.json``).

``read_run`` is the one reader of a run folder, shared with ``curriculum.report``; it never writes,
except that opening the ``Pool`` takes its lock (the pool's own rule for readers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curriculum.pool import Pool
from curriculum.types import Example, StoredImage, image_to_png_bytes

_ROUND_DIR = re.compile(r"^round_(\d+)$")


# ---------------------------------------------------------------------------------- reading a run


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


# --------------------------------------------------------------------------------------- export

_COLUMNS = {
    "id": "the example's id (`r<round>-w<weakness>-<generator>-<n>`)",
    "image": "the picture, PNG",
    "question": "the question asked about the picture",
    "answer": "the reference answer",
    "skill": "the world skill the question tests (null for external data)",
    "source": "`synthetic` (made by a generator) or `real` (a replayed training item)",
    "split": "the split the item came from, when it has one",
    "round": "the curriculum round that committed it",
    "weakness": "the id of the diagnosed weakness it targets",
    "generator": "the generator that made it (`world`, `same_image`, `replay`, `proposals`, ...)",
    "live": "still in the pool at the end of the export (false: retired, mastered or evicted by the cap)",
    "retired_round": "the round that retired it (null while live)",
    "weight": "its sampling weight in the pool (the weakness's failure rate)",
    "verdicts": "JSON: each filter's verdict (`ok` or why it would drop)",
    "params": "JSON: the world parameters the item was rendered with",
    "scene": "JSON: the scene description (objects, bars), null for external data",
    "meta": "JSON: the full provenance (failures answered, spec, seed, student answer, ...)",
}


def _features() -> Any:
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    types = {"round": "int32", "retired_round": "int32", "live": "bool", "weight": "float64"}
    return Features(
        {name: ImageFeature() if name == "image" else Value(types.get(name, "string")) for name in _COLUMNS}
    )


def _png(ex: Example) -> bytes:
    """The example's image as PNG bytes (a pool image already is one: no re-encoding)."""
    if isinstance(ex.image, StoredImage) and ex.image.data[:8] == b"\x89PNG\r\n\x1a\n":
        return ex.image.data
    return image_to_png_bytes(ex.image)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str)


def _rows(examples: list[Committed]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for c in examples:
        ex, meta = c.example, c.example.meta
        row = {
            "id": ex.id,
            "image": {"bytes": _png(ex), "path": None},
            "question": ex.question,
            "answer": ex.answer,
            "skill": ex.skill,
            "source": ex.source,
            "split": ex.split,
            "round": c.round,
            "weakness": None if meta.get("weakness") is None else str(meta["weakness"]),
            "generator": None if meta.get("generator") is None else str(meta["generator"]),
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
        dataset = Dataset.from_dict(_rows(run.examples), features=_features())
        # An empty dataset would be saved as zero shards, which load_from_disk cannot read back.
        dataset.save_to_disk(str(tmp), num_shards=1 if len(dataset) == 0 else None)
        (tmp / "README.md").write_text(dataset_card(run))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------ card


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if isinstance(x, (int, float)) else "n/a"


def _cell(value: Any) -> str:
    """A markdown table cell: no pipes or newlines from the data can break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _front_matter(run: RunRecords, frontier: bool, external: str | None) -> str:
    n = len(run.examples)
    meta = {
        "pretty_name": f"lessonloop curriculum pool of run {run.name}",
        "license": "other" if frontier or external else "apache-2.0",
        "language": ["en"],
        "task_categories": ["visual-question-answering"],
        "task_ids": ["visual-question-answering"],
        "size_categories": [_size_category(n)],
        "annotations_creators": ["machine-generated"],
        "source_datasets": [external] if external else ["original"],
        "tags": ["synthetic", "curriculum-learning", "lessonloop"],
        "dataset_info": {
            "features": [
                {"name": name, "dtype": "image" if name == "image" else feature.dtype}
                for name, feature in _features().items()
            ],
            "splits": [{"name": "train", "num_examples": n}],
        },
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _how_made(run: RunRecords) -> list[str]:
    cfg, cc = run.config, run.curriculum_config()
    if not cfg:
        return [
            "## How the pool was made",
            "",
            "The run folder has no `config.yaml`, so the settings are unknown: the round records below "
            "are all there is (the training loop writes the config at its start; the engine alone does not).",
        ]
    data, model, train = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
    fr = cc.get("frontier") or {}
    world = data.get("world") or {}
    if data.get("source", "world") == "world":
        data_text = (
            f"the built-in synthetic world (seed {world.get('seed', '?')}, {world.get('image_size', '?')} px "
            f"images, {world.get('train_size', '?')} train / {world.get('probe_size', '?')} probe / "
            f"{world.get('test_size', '?')} test items)"
        )
    else:
        data_text = f"the Hugging Face data set `{(data.get('hf') or {}).get('path')}`"
    lines = [
        "## How the pool was made",
        "",
        f"The run fine-tuned `{model.get('name_or_path', '?')}` ({train.get('mode', 'sft')}, "
        f"{train.get('steps', '?')} steps) on {data_text}. Every {cc.get('every', '?')} steps a curriculum "
        f"round ({cc.get('mode', 'sync')} mode) built new training examples from the model's own failures:",
        "",
    ]
    probe = "the whole probe split" if not cc.get("probe_max") else f"{cc['probe_max']} probe items"
    samples = f", {cc['probe_samples']} sampled answers each" if cc.get("probe_samples") else ""
    lines.append(
        f"1. **Probe.** The model answered {probe}{samples}; wrong answers are the round's failures."
    )
    source = cc.get("source", "diagnosed")
    if source == "diagnosed":
        analyzer = cc.get("analyzer", "offline")
        who = (
            "the offline analyzer (groups failures by skill, parameter slice and confusion)"
            if analyzer == "offline"
            else f"the frontier model `{fr.get('model', '?')}` (`{fr.get('preset', 'analyze')}` preset) "
            "on top of the offline grouping"
        )
        lines.append(
            f"2. **Analyse.** Up to {cc.get('max_failures', '?')} failures (new ones first) went to {who}, "
            f"which kept the {cc.get('max_weaknesses', '?')} strongest weaknesses."
        )
        shares = ", ".join(f"`{g}` {float(s):.3g}" for g, s in (cc.get("generators") or {}).items())
        lines.append(
            f"3. **Generate.** {cc.get('budget', '?')} candidates per round, split among the weaknesses by "
            f"failure rate, then among the generators by share ({shares}; a generator that cannot serve a "
            "weakness passes its share on)."
        )
    else:
        lines.append(f"2. **Baseline.** No failure analysis: the `{source}` baseline made the candidates.")
        lines.append(f"3. **Generate.** {cc.get('budget', '?')} candidates per round.")
    filters = [
        "answer check (the answer recomputed by program from the scene; items without one pass unverified)",
        "dedup (the same image with the same or a near-identical question, word-bigram Jaccard >= "
        f"{cc.get('near_duplicate', '?')}, against the pool and the round)",
        "decontamination (no test image or identifying test question, no probe item itself"
        + (f", nothing matching {', '.join(map(str, cc['eval_sets']))}" if cc.get("eval_sets") else "")
        + ")",
    ]
    if cc.get("analyzer") == "openai" and (fr.get("judges") or fr.get("preset", "analyze") != "analyze"):
        names = [str(j.get("model") if isinstance(j, dict) else j) for j in fr.get("judges") or []]
        filters.append(f"a frontier judge panel ({', '.join(names) or fr.get('model', '?')})")
    if cc.get("analyzer") == "openai" and fr.get("rationales"):
        filters.append("a rationale check (a kept rationale must end in the verified answer)")
    if train.get("mode") == "grpo":
        filters.append(
            "verified answers only (GRPO: real items, or answers a program or the judges verified)"
        )
    lines.append(f"4. **Filter.** {'; '.join(filters)}.")
    check = cc.get("student_check", "fails")
    student = {
        "fails": "kept only the candidates the current model still answers wrongly",
        "band": f"kept candidates whose pass rate over {cc.get('band_samples', '?')} samples lies in "
        f"{cc.get('band', '?')}",
        "off": "was off (every surviving candidate kept)",
    }.get(check, f"was `{check}`")
    quota = " A per-round quota then capped what was kept." if cc.get("quota") else ""
    lines.append(f"5. **Student check.** The student check {student}.{quota}")
    lines.append(
        f"6. **Pool.** Kept examples were committed to the pool (cap {cc.get('pool_cap', '?')} live examples, "
        f"oldest evicted first); each round re-asked the oldest {cc.get('retire_check', '?')} live examples "
        "and retired those the model now answered right. Training mixed the live pool into its batches."
    )
    return lines


def _round_rows(run: RunRecords) -> list[list[Any]]:
    rows = []
    for r in run.rounds:
        m = r.metrics
        dropped = r.summary.get("dropped_by_filter") or {}
        rows.append(
            [
                r.round,
                r.step if r.step is not None else "?",
                r.status,
                f"{m['curriculum/probe_accuracy']:.3f}" if "curriculum/probe_accuracy" in m else "",
                m.get("curriculum/failures", len(r.failures) if r.folder else ""),
                m.get("curriculum/weaknesses", len(r.weaknesses) if r.folder else ""),
                m.get("curriculum/candidates", len(r.candidates) if r.folder else ""),
                r.added if r.committed else m.get("curriculum/kept", ""),
                ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "none",
                len(r.retired) if r.committed else "",
            ]
        )
    return rows


def dataset_card(run: RunRecords) -> str:
    """The export's README.md: YAML front matter, then how the pool was made and what it holds."""
    cc, fr = run.curriculum_config(), run.curriculum_config().get("frontier") or {}
    n = len(run.examples)
    live = sum(c.live for c in run.examples)
    generators = Counter(str(c.example.meta.get("generator", "?")) for c in run.examples)
    frontier = cc.get("analyzer") == "openai" or "proposals" in generators
    data = run.config.get("data") or {}
    external = (data.get("hf") or {}).get("path") if data.get("source") == "hf" else None
    committed = [r for r in run.rounds if r.committed]
    parts = [_front_matter(run, frontier, external), f"# lessonloop curriculum pool: {run.name}", ""]
    if n:
        parts.append(
            f"The examples that the online curriculum of the lessonloop run `{run.name}` committed to its "
            f"training pool: **{n} examples** over **{len(committed)} committed rounds** "
            f"({len(run.rounds)} rounds recorded). {live} were still live when exported, {n - live} had been "
            "retired; all are here, the `live` column says which. Each was made to target a weakness "
            "diagnosed from the model's own failures on a probe split, and kept only if it passed the filters "
            "and the student check below."
        )
    else:
        parts.append(
            f"**This export is empty**: the run `{run.name}` committed no examples to its curriculum pool "
            f"({len(committed)} committed rounds, {len(run.rounds)} rounds recorded). The rounds below say why "
            "(a failed round commits nothing; a round whose candidates all fail a filter keeps none)."
        )
    licence = []
    if frontier:
        licence.append(
            f"parts were written by a frontier model (`{fr.get('model', '?')}`): its provider's terms apply"
        )
    if external:
        licence.append(f"replayed items come from `{external}`: its licence applies")
    if licence:
        parts += ["", "Licence: " + "; ".join(licence) + "; the rest is rendered by lessonloop (Apache-2.0)."]
    parts += ["", *_how_made(run), "", "## Rounds", ""]
    header = [
        "round", "step", "status", "probe accuracy", "failures", "weaknesses", "candidates", "kept",
        "dropped by filter", "retired",
    ]  # fmt: skip
    parts.append(_table(header, _round_rows(run)) if run.rounds else "No round ran.")
    failed = [r for r in run.rounds if r.status == "failed"]
    if failed:
        parts += ["", "Failed rounds (they add nothing; training went on):", ""]
        for r in failed:
            text = str(r.summary.get("error") or "error").strip().splitlines() or ["error"]
            parts.append(f"- round {r.round}: `{_cell(text[-1])}`")
    for title, key in (
        ("skill", lambda c: c.example.skill),
        ("generator", lambda c: c.example.meta.get("generator")),
    ):
        counts, alive = Counter(), Counter()
        for c in run.examples:
            counts[str(key(c))] += 1
            alive[str(key(c))] += c.live
        parts += ["", f"## Examples by {title}", ""]
        rows = [[name, counts[name], alive[name]] for name in sorted(counts)]
        parts.append(_table([title, "examples", "live"], rows) if rows else "None.")
    parts += ["", "## Results of the run", ""]
    end, start = run.summary.get("end") or {}, run.summary.get("start") or {}
    if "accuracy" in end:
        prior = run.summary.get("prior_baseline") or {}
        line = f"Final test accuracy after {run.summary.get('steps', '?')} steps: **{_pct(end['accuracy'])}**"
        if "accuracy" in start:
            line += f" (at step 0: {_pct(start['accuracy'])})"
        if "accuracy" in prior:
            line += (
                f"; a blind prior (each skill's most common train answer) scores {_pct(prior['accuracy'])}"
            )
        parts.append(line + ".")
        skills = sorted(k.removeprefix("skill/") for k in end if k.startswith("skill/"))
        if skills:
            rows = [[s, _pct(start.get(f"skill/{s}")), _pct(end[f"skill/{s}"])] for s in skills]
            parts += ["", _table(["skill", "start", "end"], rows)]
    else:
        parts.append(
            "The run has no final test accuracy yet (no `summary.json`: it is unfinished or crashed)."
        )
    parts += [
        "",
        "## Columns",
        "",
        _table(["column", "meaning"], [[f"`{k}`", v] for k, v in _COLUMNS.items()]),
    ]
    parts += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_from_disk",
        "",
        'pool = load_from_disk("path/to/this/folder")',
        'live = pool.filter(lambda row: row["live"])',
        "```",
        "",
    ]
    return "\n".join(parts)
