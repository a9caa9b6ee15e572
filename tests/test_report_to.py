"""Trackers through accelerate's tracking API: ``report_to`` names any tracker accelerate knows
(or one registered with it), each gets the redacted config and every metric, and W&B keeps its
extras on top. Offline only: W&B in offline mode and a file-writing tracker registered here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelerate.tracking import (
    LOGGER_TYPE_TO_CLASS,
    GeneralTracker,
    get_available_trackers,
    on_main_process,
    register_tracker_class,
)
from PIL import Image

from tests.test_tracking import SECRET_URL, SHOWN_URL, _history, _isolate_wandb, _offline_run, _run_records
from train.config import ConfigError, load_config
from train.tracking import _PACKAGES, TRACKERS_DIR, Tracker, flat_config, resolve_trackers


class LinesTracker(GeneralTracker):
    """A tracker that needs no network: one JSON line per call, in a file of its logging folder."""

    name = "lines"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str, **kwargs) -> None:
        super().__init__()
        self.run_name, self.logging_dir, self.file = run_name, Path(logging_dir), None

    @on_main_process
    def start(self) -> None:
        self.logging_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(self.logging_dir / f"{self.run_name}.jsonl", "w")  # noqa: SIM115

    @property
    def tracker(self):
        return self.file

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self.file.write(json.dumps({"config": values}) + "\n")

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")

    @on_main_process
    def finish(self) -> None:
        self.file.close()


@pytest.fixture
def lines_tracker():
    register_tracker_class(LinesTracker)  # how a user adds a tracker of their own to accelerate
    yield "lines"
    LOGGER_TYPE_TO_CLASS.pop("lines", None)


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(None, [f"run.output_dir={tmp_path}", "run.name=r", *overrides])


def _lines(run_dir: Path) -> list[dict]:
    path = run_dir / TRACKERS_DIR / "lessonloop.jsonl"  # <run>/trackers/<project>, as accelerate names it
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_registered_tracker_gets_the_redacted_config_and_every_number(tmp_path, lines_tracker):
    cfg = _cfg(tmp_path, f"curriculum.frontier.base_url={SECRET_URL}")
    tracker = Tracker(cfg, cfg.run_dir, report_to=[lines_tracker])
    assert tracker.names == ["lines"] and tracker.wandb is None
    tracker.log({"train/loss": 1.5, "train/lr": 1e-3, "eval/accuracy": 0.25, "note": "text"}, 3)
    tracker.log({"curriculum/kept": 4}, 5)
    tracker.samples("train/completions", [{"question": "q", "image": Image.new("RGB", (4, 4))}], 5)
    tracker.close()
    config, *metrics = _lines(cfg.run_dir)
    values = config["config"]
    assert values["run.name"] == "r" and values["train.steps"] == cfg.train.steps
    assert values["curriculum.frontier.base_url"] == SHOWN_URL  # redacted, as W&B gets it
    assert "sk-secretvalue" not in json.dumps(values)
    assert values["wandb.tags"] == "[]" and values["model.lora.target_modules"] == "null"  # scalars only
    assert metrics == [{"step": 3, "train/loss": 1.5, "train/lr": 1e-3, "eval/accuracy": 0.25},
                       {"step": 5, "curriculum/kept": 4.0}]  # fmt: skip
    assert [json.loads(x)["step"] for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()] == [3, 5]
    assert not (cfg.run_dir / "wandb").exists()


def test_wandb_among_others_keeps_its_extras(tmp_path, monkeypatch, lines_tracker):
    _isolate_wandb(monkeypatch, tmp_path / "wandb_home")
    cfg = _cfg(tmp_path, "wandb.mode=offline")  # wandb.enabled is false: report_to names it
    tracker = Tracker(cfg, cfg.run_dir, report_to=["wandb", lines_tracker])
    assert tracker.names == ["wandb", "lines"] and tracker.wandb is not None
    tracker.log({"train/loss": 0.75}, 2)
    rows = [{"question": "how many?", "answer": "3", "image": Image.new("RGB", (8, 8), (200, 0, 0))}]
    tracker.samples("train/completions", rows, 2)
    tracker.summary({"final/accuracy": 0.5})
    tracker.close()
    assert _lines(cfg.run_dir)[1:] == [{"step": 2, "train/loss": 0.75}]
    history = _history(_run_records(_offline_run(cfg.run_dir)))
    assert [h["train/loss"] for h in history if "train/loss" in h] == [0.75]
    table = next(h["train/completions"] for h in history if "train/completions" in h)
    assert table["_type"] == "table-file"  # the W&B extras: a table with the images
    assert (cfg.run_dir / "wandb_id").is_file()


def test_resolve_names_each_tracker_once_and_refuses_what_cannot_report():
    assert resolve_trackers([]) == [] and resolve_trackers([], wandb_enabled=True) == ["wandb"]
    assert resolve_trackers(["wandb"], wandb_enabled=True) == ["wandb"]  # wandb.enabled: report_to has it
    assert resolve_trackers(["wandb"], wandb_mode="disabled") == []
    installed = [str(t) for t in get_available_trackers()]
    assert "wandb" in installed and resolve_trackers(["all", "wandb"]) == installed
    custom = LinesTracker("p", "unused")
    assert resolve_trackers([custom, "wandb"]) == [custom, "wandb"]
    with pytest.raises(ConfigError, match=r"unknown tracker 'wandbb'; accelerate knows .*tensorboard") as err:
        resolve_trackers(["wandbb"])
    assert "\n" not in str(err.value)
    missing = next((name for name in _PACKAGES if name not in installed), None)
    if missing is None:
        pytest.skip("every tracker accelerate knows is installed here")
    with pytest.raises(ConfigError, match=f"report_to names {missing}, which is not installed: pip install"):
        resolve_trackers([missing])


def test_a_tracker_that_is_not_installed_stops_the_run_before_anything_is_written(tmp_path):
    installed = [str(t) for t in get_available_trackers()]
    missing = next((name for name in _PACKAGES if name not in installed), None)
    if missing is None:
        pytest.skip("every tracker accelerate knows is installed here")
    cfg = _cfg(tmp_path)
    with pytest.raises(ConfigError, match=missing):
        Tracker(cfg, cfg.run_dir, report_to=[missing])
    assert not cfg.run_dir.exists()


def test_only_the_main_process_starts_trackers(tmp_path, lines_tracker):
    cfg = _cfg(tmp_path)
    tracker = Tracker(cfg, cfg.run_dir, active=False, report_to=[lines_tracker])
    tracker.log({"train/loss": 1.0}, 1)
    tracker.close()
    assert tracker.trackers == [] and not cfg.run_dir.exists()


def test_flat_config_gives_every_tracker_scalars():
    assert flat_config({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": "x", "f": True}) == {
        "a.b": 1,
        "a.c": "[1, 2]",
        "d": "null",
        "e": "x",
        "f": True,
    }
