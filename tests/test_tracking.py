"""W&B tracking of the curriculum, driven for real by a short training run with W&B offline, and
what a run with a credential in its config leaves behind (nothing of the credential).

What an offline run keeps is read back from its folder: the ``run-*.wandb`` log (a LevelDB-style
log of protobuf records, read by ``_records`` below) and the media files beside it.
"""

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import tiny_run_overrides
from train.tracking import EXAMPLES_TABLE, FAILURES_TABLE, WEAKNESSES_TABLE, log_table_run

# A credential in the endpoint URL (userinfo and a query value) and one in a secret-named setting;
# and the form the URL must take wherever it is shown.
SECRET_URL = "https://user:sk-secretvalue123456@gw.example/v1?api_key=sk-q"
SHOWN_URL = "https://***@gw.example/v1?api_key=***"
SECRETS = (b"secretvalue123456", b"api_key=sk-q", b"sk-q", b"hunter3")


def _isolate_wandb(mp, home):
    """Every W&B folder under ``home`` (nothing in $HOME), quiet, and no network."""
    for var, sub in [("WANDB_DIR", "dir"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_CONFIG_DIR", "config"), ("WANDB_ARTIFACT_DIR", "artifacts")]:  # fmt: skip
        (home / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(home / sub))
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB__DISABLE_STATS", "true")  # no system-metrics sampler competing for the 2 cores
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.delenv("WANDB_MODE", raising=False)


def _records(path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of chunks (crc32, length, type: full/first/middle/last) that never straddle a block."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the tail of a block too short for a chunk header is padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if (length == 0 and kind == 0) or pos + 7 + length > len(data):  # the end, or a chunk being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, f"bad chunk at {pos}"
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _run_records(folder, timeout=30.0):
    """The records of the offline run in ``folder``, once it is all on disk: ``finish()`` returns
    before wandb-core has flushed the log of an offline run, so wait for its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for log in folder.glob("run-*.wandb") for r in _records(log)]
        if any(r.HasField("exit") for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _offline_run(run_dir):
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def _train(root, model, name, mode):
    from accelerate.state import AcceleratorState, GradientState

    from train.config import load_config
    from train.loop import run

    try:
        return run(load_config(None, [
            *tiny_run_overrides(root, model), f"run.name={name}", "train.steps=3", "train.batch_size=4",
            "eval.at_start=false", "eval.max_examples=18",
            "curriculum.enabled=true", "curriculum.every=1", "curriculum.budget=16", "curriculum.probe_max=16",
            "curriculum.mix.ratio=0.5", "curriculum.student_check=off",
            "wandb.enabled=true", f"wandb.mode={mode}",
        ]))  # fmt: skip
    finally:  # two runs in one fixture: each starts from clean accelerate singletons
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_qwen):
    """The same short curriculum run twice: W&B offline (``on``), then W&B disabled (``off``)."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        _isolate_wandb(mp, root / "wandb_home")
        mp.delenv("WANDB_DATA_DIR")  # the tracker's own default: the run folder
        mp.setenv("XDG_DATA_HOME", str(root / "wandb_home" / "xdg"))  # were it not, still not $HOME
        on = _train(root, tiny_qwen, "on", "offline")
        assert "WANDB_DATA_DIR" not in os.environ  # unset again by Tracker.close
        off = _train(root, tiny_qwen, "off", "disabled")
    folder = _offline_run(root / "on")
    records = _run_records(folder)
    return {
        "root": root,
        "on": on,
        "off": off,
        "folder": folder,
        "records": records,
        "history": _history(records),
    }


def _history(records):
    """The logged rows; a logged dict (a table's reference) comes as one item per leaf, under
    ``nested_key`` (``["curriculum/table/failures", "path"]``), and is put back together here."""
    rows = []
    for r in (r for r in records if r.HasField("history")):
        row: dict = {}
        for item in r.history.item:
            *parents, leaf = [item.key] if item.key else list(item.nested_key)
            node = row
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = json.loads(item.value_json)
        rows.append(row)
    return rows


def _artifacts(runs, type_):
    return [r.artifact for r in runs["records"] if r.HasField("artifact") and r.artifact.type == type_]


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _table(runs, entry):
    return json.loads((runs["folder"] / "files" / entry["path"]).read_text())


def test_rounds_log_their_tables_with_images(runs):
    assert [r["status"] for r in runs["on"]["curriculum"]["rounds"]] == ["ok", "ok"]
    history = runs["history"]
    for key in (FAILURES_TABLE, EXAMPLES_TABLE, WEAKNESSES_TABLE):
        logged = [h for h in history if key in h]
        assert [h["_step"] for h in logged] == [1, 2], key
        assert all(h[key]["_type"] == "table-file" and _table(runs, h[key])["data"] for h in logged), key
    failures = _table(runs, next(h[FAILURES_TABLE] for h in history if FAILURES_TABLE in h))
    assert failures["columns"] == ["round", "image", "skill", "question", "answer", "prediction", "new"]
    assert {row[0] for row in failures["data"]} == {1} and len(failures["data"]) <= 64
    # The table's images travel in its run_table artifact, staged inside the run folder until synced.
    staged = [a for a in _artifacts(runs, "run_table") if "curriculumtablefailures" in a.name]
    assert len(staged) == 2
    entries = {e.path: Path(e.local_path) for e in staged[0].manifest.contents}
    assert all(path.is_relative_to(runs["root"] / "on" / ".wandb_data") for path in entries.values())
    full = json.loads(entries[f"{FAILURES_TABLE}.table.json"].read_text())
    images = [row[1] for row in full["data"]]
    assert len(images) == len(failures["data"]) and all(i["_type"] == "image-file" for i in images)
    assert all(entries[i["path"]].is_file() for i in images)
    for h in (h for h in history if EXAMPLES_TABLE in h):
        examples = _table(runs, h[EXAMPLES_TABLE])
        cols = examples["columns"]
        assert cols == ["round", "image", "weakness", "generator", "skill", "question", "answer", "kept",
                        "dropped_by", "verdicts"]  # fmt: skip
        kept = [row[cols.index("kept")] for row in examples["data"]]
        assert kept == sorted(kept, reverse=True) and len(kept) <= 128  # kept ones first
        assert all(isinstance(json.loads(row[cols.index("verdicts")]), dict) for row in examples["data"])
    weaknesses = _table(runs, next(h[WEAKNESSES_TABLE] for h in history if WEAKNESSES_TABLE in h))
    assert weaknesses["columns"] == ["id", "skill", "slice", "failure_rate", "n", "diagnosis"]
    # The round counts logged at the same steps keep their keys: the tables do not overwrite them.
    counts = [h["curriculum/failures"] for h in history if "curriculum/round" in h]
    assert len(counts) == 2 and all(isinstance(c, int | float) for c in counts)


def test_the_pool_is_an_artifact_with_a_version_per_round(runs):
    arts = _artifacts(runs, "dataset")
    assert [a.name for a in arts] == ["on-pool", "on-pool"]
    assert [set(a.aliases) for a in arts] == [{"round-1", "latest"}, {"round-2", "latest"}]
    assert arts[0].digest != arts[1].digest  # two distinct versions
    logged = {m["curriculum/round"]: m for m in _metrics(runs["root"] / "on") if "curriculum/round" in m}
    images = runs["root"] / "on" / "curriculum" / "pool" / "images"
    for k, a in enumerate(arts, start=1):
        paths = {e.path for e in a.manifest.contents}
        assert {p for p in paths if not p.startswith("images/")} == {
            f"round_{i:05d}.jsonl" for i in range(1, k + 1)
        }
        meta = json.loads(a.metadata)
        assert meta["round"] == k and meta["pool_size"] == logged[k]["curriculum/pool_size"] > 0
        assert meta["kept"] == logged[k]["curriculum/kept"]
    # The last version holds every image of the pool, by reference to the pool's own files.
    last = {e.path: e.local_path for e in arts[-1].manifest.contents if e.path.startswith("images/")}
    assert last == {f"images/{p.name}": str(p) for p in images.glob("*.png")}


def test_disabled_mode_writes_no_wandb_and_the_same_metrics(runs):
    off = runs["root"] / "off"
    assert [r["status"] for r in runs["off"]["curriculum"]["rounds"]] == ["ok", "ok"]
    assert not (off / "wandb").exists() and not (off / "wandb_id").exists()

    def keys(run_dir):
        return [(m["step"], sorted(k for k in m if k != "time")) for m in _metrics(run_dir)]

    assert keys(off) == keys(runs["root"] / "on")  # metrics.jsonl does not depend on W&B
    on = _metrics(runs["root"] / "on")
    assert [m["curriculum/round"] for m in on if "curriculum/round" in m] == [1, 2]
    assert not any(k.startswith("curriculum/table/") for m in on for k in m)


def test_log_table_run_puts_a_report_in_the_group(tmp_path, monkeypatch):
    _isolate_wandb(monkeypatch, tmp_path / "wandb_home")
    png = tmp_path / "plot.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(png)
    log_table_run("lessonloop", "cmp", "cmp-report", "offline", None, ["arm", "accuracy"],
                  [["base", "0.41 ± 0.02"], ["curriculum", 0.5]], {"plots/accuracy": png},
                  {"curriculum/accuracy": 0.5}, dir=tmp_path)  # fmt: skip
    folder = next((tmp_path / "wandb").glob("offline-run-*"))
    records = _run_records(folder)
    run = next(r.run for r in records if r.HasField("run"))
    assert (run.run_group, run.job_type, run.display_name) == ("cmp", "report", "cmp-report")
    tables = list(folder.glob("files/media/table/report_*.table.json"))
    assert tables and json.loads(tables[0].read_text())["data"][1] == ["curriculum", 0.5]
    assert list(folder.glob("files/media/images/plots/accuracy_*.png"))
    summary = [json.loads(i.value_json) for r in records if r.HasField("summary") for i in r.summary.update
               if i.key == "curriculum/accuracy"]  # fmt: skip
    assert summary == [0.5]


def test_log_table_run_disabled_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb would now fail
    monkeypatch.chdir(tmp_path)
    log_table_run("p", "g", "n", "disabled", None, ["a"], [[1]], {"x": tmp_path / "missing.png"}, {"a": 1})
    assert not list(tmp_path.iterdir())


# The training command of the test below, with one addition: while W&B copies the console, a
# third-party logger writes the endpoint's URL at every logged step, as an HTTP client does when it
# retries a request (the curriculum is off, so nothing else would call or name the endpoint).
TRAIN_WITH_A_RETRY_LOG = f"""
import logging, sys
from train.tracking import Tracker

tracker_log = Tracker.log

def log_with_a_retry(self, metrics, step):
    logging.getLogger("urllib3.connectionpool").warning("Retrying after a broken connection: %s", {SECRET_URL!r})
    tracker_log(self, metrics, step)

Tracker.log = log_with_a_retry
from train.cli import main
sys.exit(main())
"""


def test_no_secret_leaves_the_machine(tmp_path, tiny_qwen, monkeypatch):
    """A run whose command line holds credentials writes none of them: not in its run folder
    (config.yaml, metrics.jsonl, and all W&B wrote: config, metadata with the command line,
    output log), nor on the console. The curriculum is off: no endpoint is called.

    Run as its own process, as a user runs it: W&B captures the console by patching the
    ``sys.stderr`` it finds when first imported, which inside pytest is one of pytest's captures."""
    _isolate_wandb(monkeypatch, tmp_path / "wandb_home")
    monkeypatch.delenv("WANDB_DATA_DIR")  # the tracker's own default: the run folder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "wandb_home" / "xdg"))
    secret_overrides = [
        f"curriculum.frontier.base_url={SECRET_URL}",
        "curriculum.frontier.api_key_env=MY_FRONTIER_KEY_VAR",
        "curriculum.frontier.image_settings=[{api_key: sk-hunter3, guidance_scale: 3.5}]",
    ]
    overrides = [*tiny_run_overrides(tmp_path, tiny_qwen), "run.name=secrets", "train.steps=2",
                 "eval.at_start=false", "eval.max_examples=9", "curriculum.enabled=false",
                 *secret_overrides, "wandb.enabled=true", "wandb.mode=offline"]  # fmt: skip
    console = subprocess.run(
        [sys.executable, "-c", TRAIN_WITH_A_RETRY_LOG, "train", *overrides],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert console.returncode == 0, console.stderr[-3000:]
    run_dir = tmp_path / "secrets"
    folder = _offline_run(run_dir)
    records = _run_records(folder)
    files = [p for root in (run_dir, tmp_path / "wandb_home") for p in root.rglob("*") if p.is_file()]
    assert not (tmp_path / "wandb_home" / "xdg").exists()  # nothing of W&B's outside these two
    # An offline run keeps its metadata (the command line) and history in its run-*.wandb log.
    names = {p.suffix if p.suffix == ".wandb" else p.name for p in files}
    assert {"config.yaml", "metrics.jsonl", ".wandb", "output.log", "debug.log"} <= names
    for path in files:
        blob = path.read_bytes()
        assert not [s for s in SECRETS if s in blob], path
    for stream in (console.stdout, console.stderr):
        assert not [s for s in SECRETS if s.decode() in stream]
    # ...while every one of them shows the settings, redacted, with the names of the key variables.
    assert f"base_url: {SHOWN_URL}\n" in (run_dir / "config.yaml").read_text()
    updates = [i for r in records if r.HasField("run") for i in r.run.config.update]
    updates += [i for r in records if r.HasField("config") for i in r.config.update]
    frontier = {i.key: json.loads(i.value_json) for i in updates if i.key}["curriculum"]["frontier"]
    assert frontier["base_url"] == SHOWN_URL and frontier["api_key_env"] == "MY_FRONTIER_KEY_VAR"
    assert frontier["image_settings"] == [{"api_key": "***", "guidance_scale": 3.5}]
    args = [a for r in records if r.HasField("environment") for a in r.environment.args]
    shown = [f"curriculum.frontier.base_url={SHOWN_URL}", "curriculum.frontier.api_key_env=MY_FRONTIER_KEY_VAR",
             "curriculum.frontier.image_settings=[{api_key: ***, guidance_scale: 3.5}]"]  # fmt: skip
    assert args == ["train", *(dict(zip(secret_overrides, shown, strict=True)).get(a, a) for a in overrides)]
    retry = f"Retrying after a broken connection: {SHOWN_URL}"
    assert retry in console.stderr and retry in (folder / "files" / "output.log").read_text()
