"""Export of a run's pool as a dataset with its card, and the run's one-page HTML report.

One real short run (tiny model, curriculum every 2 steps, a small pool cap so some examples
retire) is built once; the failed-round and empty-pool cases drive the engine directly with a
scripted policy, which is how a round fails in practice (an analyzer outage).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard
from PIL import Image

from curriculum.engine import Curriculum
from curriculum.export import export_run
from curriculum.pool import Pool
from curriculum.report import write_report
from curriculum.report_follow import diagnosis_text
from curriculum.types import as_pil
from tests.conftest import tiny_run_overrides
from train.config import CurriculumConfig, load_config
from train.loop import run

IMAGE_SIZE = 32  # tiny_run_overrides' data.world.image_size


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_qwen) -> Path:
    root = tmp_path_factory.mktemp("runs")
    overrides = [
        "run.name=exported",
        *tiny_run_overrides(root, tiny_qwen),
        "train.steps=4",
        "curriculum.enabled=true",
        "curriculum.every=2",
        "curriculum.budget=16",
        "curriculum.pool_cap=10",  # round 1 keeps more than 10: the cap retires some at once
        "curriculum.mix.ratio=0.5",
    ]
    run(load_config(None, overrides))
    return root / "exported"


def _pool_files(run_dir: Path) -> list[tuple[dict, list[dict]]]:
    """Each committed round file as (header, example records), read raw."""
    out = []
    for path in sorted((run_dir / "curriculum" / "pool").glob("round_*.jsonl")):
        header, *rest = path.read_text().splitlines()
        out.append((json.loads(header), [json.loads(x) for x in rest if x]))
    return out


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


# ------------------------------------------------------------------------------------------ export


def test_export_holds_every_committed_example_live_or_retired(run_dir, tmp_path):
    from datasets import load_from_disk

    out = export_run(run_dir, tmp_path / "export")
    assert out == tmp_path / "export"
    ds = load_from_disk(str(out))
    files = _pool_files(run_dir)
    committed = [rec for _, recs in files for rec in recs]
    assert committed, "the fixture run committed nothing"
    assert len(ds) == len(committed) == sum(h["added"] for h, _ in files)
    assert ds["id"] == [rec["id"] for rec in committed]
    pool = Pool(run_dir / "curriculum" / "pool")
    assert {i for i, live in zip(ds["id"], ds["live"], strict=True) if live} == set(pool.ids())
    retired = {i for h, _ in files for i in h["retire"]}
    assert retired and {i for i, live in zip(ds["id"], ds["live"], strict=True) if not live} == retired
    assert all((r is None) == live for r, live in zip(ds["retired_round"], ds["live"], strict=True))
    kept = [
        json.loads((d / "round.json").read_text())["metrics"]["curriculum/kept"] for d in _round_dirs(run_dir)
    ]
    assert sorted(Counter(ds["round"]).items()) == [(k, n) for k, n in enumerate(kept, 1) if n]

    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (IMAGE_SIZE, IMAGE_SIZE)
    assert all(img.size == (IMAGE_SIZE, IMAGE_SIZE) for img in ds["image"])
    live_id = pool.ids()[0]
    live_row = ds[ds["id"].index(live_id)]
    assert live_row["image"].convert("RGB").tobytes() == as_pil(pool.get(live_id).image).tobytes()
    assert (
        live_row["question"] == pool.get(live_id).question and live_row["answer"] == pool.get(live_id).answer
    )
    meta = json.loads(live_row["meta"])
    assert meta["weakness"] == live_row["weakness"] and meta["generator"] == live_row["generator"]
    # Every committed example says how its answer was checked: in the world, by program (its scene
    # recomputes the answer, a replayed real item's too).
    assert all(row["answer_checked_by"] == json.loads(row["meta"])["answer_checked_by"] for row in ds)
    assert set(ds["answer_checked_by"]) == {"program"}
    assert json.loads(live_row["verdicts"])["student"] == "ok"
    assert json.loads(live_row["params"]) == pool.get(live_id).params


def _round_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "curriculum").glob("round_*"))


def test_the_card_names_rounds_counts_and_the_final_accuracy(run_dir, tmp_path):
    from datasets import load_from_disk

    out = export_run(run_dir, tmp_path / "export")
    card = (out / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert DatasetCard.load(out / "README.md").data.to_dict() == meta  # the hub's own reader agrees
    assert meta["task_categories"] == ["visual-question-answering"]
    assert meta["size_categories"] == ["n<1K"] and meta["license"] == "apache-2.0"
    ds = load_from_disk(str(out))
    assert meta["dataset_info"]["splits"][0]["num_examples"] == len(ds)
    assert f"**{len(ds)} examples**" in body
    for d in _round_dirs(run_dir):
        summary = json.loads((d / "round.json").read_text())
        m = summary["metrics"]
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(summary["dropped_by_filter"].items())) or "none"
        row = (
            f"| {summary['round']} | {summary['step']} | ok | {m['curriculum/probe_accuracy']:.3f} | "
            f"{m['curriculum/failures']} | {m['curriculum/weaknesses']} | {m['curriculum/candidates']} | "
            f"{m['curriculum/kept']} | {dropped} | {m['curriculum/retired']} |"
        )
        assert row in body
    assert {f["name"] for f in meta["dataset_info"]["features"]} == set(ds.column_names)
    assert "## Examples by answer check" in body
    for column in ("skill", "generator", "answer_checked_by"):
        for name, n in Counter(ds[column]).items():
            live = sum(v == name and alive for v, alive in zip(ds[column], ds["live"], strict=True))
            assert f"| {name} | {n} | {live} |" in body
    end = json.loads((run_dir / "summary.json").read_text())["end"]["accuracy"]
    assert f"Final test accuracy after 4 steps: **{100 * end:.1f} %**" in body
    assert "16 candidates per round" in body and "cap 10 live examples" in body  # from config.yaml


def test_export_replaces_an_earlier_export_but_never_another_folder(run_dir, tmp_path):
    out = export_run(run_dir, tmp_path / "export")
    (out / "stale.txt").write_text("from before")
    export_run(run_dir, out)
    assert not (out / "stale.txt").exists() and (out / "README.md").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier export"):
        export_run(run_dir, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_folder_that_is_not_a_run_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError) as err:
        export_run(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "curriculum").exists()  # refusing it created nothing there
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        write_report(tmp_path)


# ------------------------------------------------------------------------------------------ report


def test_the_report_is_one_self_contained_page_of_every_round(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "report.html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for external in ('src="http', "src='http", 'href="http', "<script", "<link", "url("):
        assert external not in page
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "<h1>Run exported</h1>" in page
    assert f"Test accuracy at the end: <b>{100 * summary['end']['accuracy']:.1f} % ± " in page
    for d in _round_dirs(run_dir):
        record = json.loads((d / "round.json").read_text())
        assert f"Round {record['round']} · step {record['step']} · " in page
        for w in json.loads((d / "analysis.json").read_text()):
            assert html.escape(w["id"]) in page and html.escape(diagnosis_text(w["diagnosis"])) in page
        # The examples made, under a header per weakness, their captions as text beside the pictures.
        kept = [json.loads(x) for x in (d / "candidates.jsonl").read_text().splitlines()]
        kept = [c for c in kept if c["kept"]]
        section = page.split(f'id="round-{record["round"]}"', 1)[1].split("</details>\n", 1)[0]
        for weakness, n in Counter(c["weakness"] for c in kept).items():
            assert f"<code>{html.escape(weakness)}</code> · {n} kept" in section
        assert all(html.escape(c["question"]) in section for c in kept)
        failures = [json.loads(x) for x in (d / "failures.jsonl").read_text().splitlines()]
        assert f"Failures mined: {len(failures)}" in page and html.escape(failures[0]["question"]) in page
    images = _data_uris(page)
    assert len(images) >= 3 + len(_round_dirs(run_dir))  # plots and thumbnails
    for data in images:
        Image.open(io.BytesIO(data)).verify()
    thumbs = {img.size for img in (Image.open(io.BytesIO(d)) for d in images)}
    assert (IMAGE_SIZE, IMAGE_SIZE) in thumbs  # pool pictures, inline at their own size
    assert write_report(run_dir, tmp_path / "again.html").read_text() == page  # deterministic


# --------------------------------------------------------------------------- failed and empty rounds


class Scripted:
    """Right on colour and shape questions, "0" on everything else."""

    def answer(self, examples):
        return [ex.answer if ex.skill in ("colour", "shape") else "0" for ex in examples]

    def sample(self, examples, n):
        return [[a] * n for a in self.answer(examples)]


class Down:
    name = "down"

    def analyze(self, failures, probe, exemplars=()):
        raise ConnectionError("analyzer <unreachable> & down")


def _engine(run_dir: Path, world) -> Curriculum:
    cfg = CurriculumConfig(enabled=True, every=10, budget=24, max_failures=16, pool_cap=100)
    return Curriculum(
        cfg,
        run_dir / "curriculum",
        world["train"],
        world["probe"],
        {"test": world["test"]},
        IMAGE_SIZE,
        seed=0,
    )


def test_a_failed_round_shows_its_error_and_the_export_keeps_the_rest(tmp_path, world_small):
    cur = _engine(tmp_path, world_small)
    assert cur.update(10, Scripted()).status == "ok"
    cur.analyzer = Down()
    assert cur.update(20, Scripted()).status == "failed"
    page = write_report(tmp_path).read_text()  # no config.yaml or summary.json: a run in progress
    assert (tmp_path / "report.html").is_file()
    assert 'Round 2 · step 20 · <span class="failed">failed</span>' in page
    error = re.search(r'<pre class="error">(.*?)</pre>', page, re.S)
    assert error and "ConnectionError: analyzer &lt;unreachable&gt; &amp; down" in error.group(1)
    assert "<unreachable>" not in page
    assert 'Round 1 · step 10 · <span class="ok">ok</span>' in page

    from datasets import load_from_disk

    out = export_run(tmp_path)
    assert out == tmp_path / "export"
    ds = load_from_disk(str(out))
    assert len(ds) == len(cur.pool) > 0 and set(ds["round"]) == {1}
    card = (out / "README.md").read_text()
    assert "| 2 | 20 | failed |" in card and "analyzer <unreachable> & down" in card
    assert "no final test accuracy yet" in card


def test_an_empty_pool_still_exports(tmp_path, world_small):
    cur = _engine(tmp_path, world_small)
    cur.analyzer = Down()
    assert cur.update(10, Scripted()).status == "failed"
    from datasets import load_from_disk

    ds = load_from_disk(str(export_run(tmp_path, tmp_path / "out")))
    assert len(ds) == 0 and "image" in ds.column_names and "live" in ds.column_names
    card = (tmp_path / "out" / "README.md").read_text()
    assert "This export is empty" in card and "| 1 | 10 | failed |" in card
    page = write_report(tmp_path).read_text()
    assert "Round 1 · step 10 · " in page and "0 live of 0 committed" in page
