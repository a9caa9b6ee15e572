"""Metrics go to ``<run>/metrics.jsonl`` always, and to the trackers a run reports to.

Trackers are accelerate's (``accelerate.tracking``): ``report_to`` names any tracker accelerate
knows and finds installed (``wandb``, ``tensorboard``, ``mlflow``, ``comet_ml``, ``aim``,
``clearml``, ``dvclive``, ``swanlab``, ``trackio``; ``all``: every one installed), a tracker class
registered with ``accelerate.tracking.register_tracker_class``, or a ``GeneralTracker`` instance.
Each is built as ``Accelerator.init_trackers`` builds it: with the project name (``wandb.project``)
and, for those that keep files (TensorBoard, Aim), the folder ``<run>/trackers``; it is given the
run's config (redacted, flattened to ``section.key`` scalars) and every metric logged. Only the main
process writes.

Weights & Biases gets more on top, when it is among them (``report_to`` names it, or
``wandb.enabled``): the run's own id, kept in the run folder so a resumed run continues the same
W&B run; each curriculum round as tables (the round's failures, the candidates it generated, the
weaknesses it diagnosed) with their images; the pool as a versioned artifact, one version per
round; sample tables. What W&B keeps is shared with whoever sees the project, so the config and the
command line sent to it are redacted first (``curriculum.secrets``): no API key, token or URL
credential leaves the machine. The console, which W&B copies into the run's output log, is redacted
by the log filter the training loop installs (``curriculum.secrets.install_log_redaction``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curriculum.secrets import redact_tree, redacted_argv
from train.config import Config, ConfigError

if TYPE_CHECKING:
    from accelerate.tracking import GeneralTracker

    from curriculum.engine import RoundResult
    from curriculum.pool import Pool

log = logging.getLogger("lessonloop")

TRACKERS_DIR = "trackers"
"""The folder inside the run of the trackers that keep files (TensorBoard, Aim)."""

# The round tables. Not ``curriculum/failures`` and ``curriculum/weaknesses``: those are the round's
# counts (``RoundResult.metrics``), logged at the same step, and a table under the same key would
# replace the count in that history row.
FAILURES_TABLE = "curriculum/table/failures"
EXAMPLES_TABLE = "curriculum/table/examples"
WEAKNESSES_TABLE = "curriculum/table/weaknesses"
FAILURE_COLUMNS = ["round", "image", "skill", "question", "answer", "prediction", "new"]
EXAMPLE_COLUMNS = ["round", "image", "weakness", "generator", "skill", "question", "answer", "kept",
                   "dropped_by", "verdicts"]  # fmt: skip
WEAKNESS_COLUMNS = ["id", "skill", "slice", "failure_rate", "n", "diagnosis"]
MAX_FAILURE_ROWS = 64
MAX_EXAMPLE_ROWS = 128
THUMBNAIL = 384  # longest side of table images, in pixels: external data can hold large images


def _safe_name(name: str) -> str:
    """An artifact name W&B accepts (letters, digits, ``-``, ``_`` and ``.``)."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-") or "run"


def _thumbnail(image: Any) -> Any:
    """The example's image as PIL, at most ``THUMBNAIL`` pixels on its longest side."""
    from curriculum.types import as_pil

    img = as_pil(image)
    if max(img.size) <= THUMBNAIL:
        return img
    img = img.copy()
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    return img


# What to install for each of accelerate's trackers (its name: the pip package).
_PACKAGES = {"comet_ml": "comet-ml", "aim": "aim", "clearml": "clearml", "dvclive": "dvclive",
             "mlflow": "mlflow", "swanlab": "swanlab", "tensorboard": "tensorboard", "trackio": "trackio",
             "wandb": "wandb"}  # fmt: skip


def resolve_trackers(
    report_to: Sequence[str | GeneralTracker], wandb_enabled: bool = False, wandb_mode: str = "online"
) -> list[str | GeneralTracker]:
    """The trackers a run reports to: ``report_to`` in its order, each once, ``all`` expanded to
    every tracker accelerate finds installed, ``wandb`` added when ``wandb_enabled`` and dropped
    when ``wandb_mode`` is ``disabled``. Tracker instances pass as they are.

    Raises ``ConfigError`` (one line, before anything is written) for a name accelerate does not
    know or a tracker that is not installed: accelerate itself would skip it with a debug line,
    and a run would report nowhere without saying so.
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, get_available_trackers

    available = [str(t) for t in get_available_trackers()]
    out: list[str | GeneralTracker] = []
    for item in [*report_to, *(["wandb"] if wandb_enabled else [])]:
        if isinstance(item, GeneralTracker):
            out.append(item)
            continue
        name = str(item)
        if name == "all":
            out += [t for t in available if t not in out]
            continue
        if name not in LOGGER_TYPE_TO_CLASS:
            known = ", ".join(sorted(LOGGER_TYPE_TO_CLASS))
            raise ConfigError(f"report_to: unknown tracker {name!r}; accelerate knows {known} (and all)")
        if name in _PACKAGES and name not in available:
            raise ConfigError(
                f"report_to names {name}, which is not installed: pip install {_PACKAGES[name]}"
            )
        if name not in out:
            out.append(name)
    return [t for t in out if not (t == "wandb" and wandb_mode == "disabled")]


def flat_config(tree: Any, prefix: str = "") -> dict[str, str | int | float | bool]:
    """A nested config as ``section.key`` scalars, what every tracker's hyperparameters take
    (TensorBoard's refuse lists and nulls: those become JSON text)."""
    if isinstance(tree, dict):
        out: dict[str, str | int | float | bool] = {}
        for key, value in tree.items():
            out.update(flat_config(value, f"{prefix}{key}."))
        return out
    key = prefix.rstrip(".")
    return {key: tree if isinstance(tree, str | int | float | bool) else json.dumps(tree, default=str)}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of ``metrics``: what every tracker can plot (tables and media are W&B's)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


class Tracker:
    """Where a run's metrics go: ``metrics.jsonl``, and every tracker it reports to."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        active: bool = True,
        fresh: bool = True,
        report_to: Sequence[str | GeneralTracker] | None = None,
    ) -> None:
        """``fresh``: the run starts over, so earlier metrics of this run folder are discarded.
        ``report_to``: tracker names (or ``GeneralTracker`` instances) for ``resolve_trackers``;
        ``wandb.enabled`` adds W&B to them. ``active``: this process writes (the main one)."""
        self.active = active
        self.run_dir = Path(run_dir)
        self.trackers: list[GeneralTracker] = []
        self.wandb = None  # the W&B run, when W&B is among the trackers: the extras go to it
        self.run_name = cfg.run.name
        self._data_dir_set = False  # whether this tracker set WANDB_DATA_DIR (and unsets it on close)
        self.t0 = time.time()
        if not active:
            return
        wanted = resolve_trackers(report_to or [], cfg.wandb.enabled, cfg.wandb.mode)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "w" if fresh else "a", buffering=1)  # noqa: SIM115
        if not wanted:
            return
        from accelerate import PartialState

        PartialState()  # accelerate's trackers log through its logger, which needs its process state
        config = redact_tree(cfg.to_dict())
        for item in wanted:
            tracker = (
                self._start_wandb(cfg, fresh, config) if item == "wandb" else self._start(item, cfg, config)
            )
            self.trackers.append(tracker)

    def _start(self, item: str | GeneralTracker, cfg: Config, config: dict[str, Any]) -> GeneralTracker:
        """Build a tracker as ``Accelerator.init_trackers`` would, start it, give it the config."""
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        if isinstance(item, str):
            cls = LOGGER_TYPE_TO_CLASS[item]
            if cls.requires_logging_directory:
                item = cls(cfg.wandb.project, str(self.run_dir / TRACKERS_DIR))
            else:
                item = cls(cfg.wandb.project)
        item.start()
        item.store_init_configuration(flat_config(config))
        return item

    def _start_wandb(self, cfg: Config, fresh: bool, config: dict[str, Any]) -> GeneralTracker:
        from accelerate.tracking import WandBTracker

        os.environ.setdefault("WANDB_CACHE_DIR", str(self.run_dir / ".wandb_cache"))
        if "WANDB_DATA_DIR" not in os.environ:
            # Tables holding images are logged as artifacts whose files wait in the data dir's staging
            # folder until uploaded: for an offline run, until ``wandb sync``. Kept in the run folder,
            # an offline run is whole (images included) and nothing piles up in ~/.local/share/wandb.
            os.environ["WANDB_DATA_DIR"] = str(self.run_dir / ".wandb_data")
            self._data_dir_set = True
        id_file = self.run_dir / "wandb_id"
        resuming = id_file.is_file() and not fresh
        run_id = id_file.read_text().strip() if resuming else secrets.token_hex(4)
        id_file.write_text(run_id)
        # The config goes in whole (nested, as W&B shows it), not flattened like the others'.
        tracker = WandBTracker(cfg.wandb.project, entity=cfg.wandb.entity, group=cfg.wandb.group,
                               tags=cfg.wandb.tags, name=cfg.run.name, id=run_id, resume="allow",
                               mode=cfg.wandb.mode, dir=str(self.run_dir), config=config)  # fmt: skip
        with redacted_argv():
            tracker.start()
        self.wandb = tracker.run
        return tracker

    @property
    def names(self) -> list[str]:
        """The names of the trackers this run reports to (``metrics.jsonl`` apart)."""
        return [t.name for t in self.trackers]

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.active:
            return
        record = {"step": step, "time": round(time.time() - self.t0, 3), **metrics}
        self._file.write(json.dumps(record) + "\n")
        numbers = None
        for tracker in self.trackers:
            if tracker.name == "wandb":
                tracker.log(metrics, step=step)
            else:
                numbers = _scalars(metrics) if numbers is None else numbers
                if numbers:
                    tracker.log(numbers, step=step)

    def samples(self, name: str, rows: list[dict[str, Any]], step: int) -> None:
        """A few examples (question, answer, completion, reward...): ``samples.jsonl`` without
        their images, and a W&B table with them."""
        if not self.active or not rows:
            return
        with open(self.run_dir / "samples.jsonl", "a") as f:
            for row in rows:
                f.write(
                    json.dumps({"step": step, "name": name, **{k: v for k, v in row.items() if k != "image"}})
                    + "\n"
                )
        if self.wandb is not None:
            import wandb

            from curriculum.types import as_pil

            keys = list(rows[0])
            data = [[wandb.Image(as_pil(r[k])) if k == "image" else r[k] for k in keys] for r in rows]
            logged: dict[str, Any] = {name: wandb.Table(columns=keys, data=data)}
            if "image" in keys:  # also as captioned images: offline runs keep no images inside tables
                logged[f"{name}_images"] = [
                    wandb.Image(
                        as_pil(r["image"]), caption=" | ".join(f"{k}: {r[k]}" for k in keys if k != "image")
                    )
                    for r in rows
                ]
            self.wandb.log(logged, step=step)

    def curriculum_round(self, result: RoundResult, pool: Pool, step: int) -> None:
        """What a committed round did, for W&B: its failures, candidates and weaknesses as tables,
        and the pool after it as a new version of the artifact ``<run>-pool``.

        Failed rounds added nothing and restored ones (a resumed run reloading a round) were logged
        by the run that committed them, so only ``ok`` rounds are logged. A tracking error is
        reported and swallowed: W&B is a view of the run, and must not end a long training.
        """
        if self.wandb is None or result.status != "ok":
            return
        try:
            self.wandb.log(self._round_tables(result), step=step)
            self._log_pool(result, pool, step)
        except Exception:
            log.warning("could not log curriculum round %d to W&B", result.round, exc_info=True)

    def _round_tables(self, result: RoundResult) -> dict[str, Any]:
        """The round's tables. Rows are capped (new failures and kept candidates first) and images
        shrunk to thumbnails: a table is uploaded whole at every round."""
        import wandb

        k = result.round
        failures = sorted(result.failures, key=lambda f: not f.new)[:MAX_FAILURE_ROWS]  # new ones first
        failure_rows = [
            [k, wandb.Image(_thumbnail(f.example.image)), f.example.skill or "", f.example.question,
             f.example.answer, f.prediction, bool(f.new)]
            for f in failures
        ]  # fmt: skip
        candidates = sorted(result.candidates, key=lambda c: c.dropped is not None)[:MAX_EXAMPLE_ROWS]
        example_rows = [
            [k, wandb.Image(_thumbnail(c.example.image)), c.weakness, c.generator, c.example.skill or "",
             c.example.question, c.example.answer, c.dropped is None, c.dropped or "", json.dumps(c.verdicts)]
            for c in candidates
        ]  # fmt: skip
        weakness_rows = [
            [w.id, w.skill or "", json.dumps(w.slice), float(w.failure_rate), int(w.n), w.diagnosis]
            for w in result.weaknesses
        ]
        return {
            FAILURES_TABLE: wandb.Table(columns=FAILURE_COLUMNS, data=failure_rows),
            EXAMPLES_TABLE: wandb.Table(columns=EXAMPLE_COLUMNS, data=example_rows),
            WEAKNESSES_TABLE: wandb.Table(columns=WEAKNESS_COLUMNS, data=weakness_rows),
        }

    def _log_pool(self, result: RoundResult, pool: Pool, step: int) -> None:
        """The pool's committed files (round files and images) as a version of ``<run>-pool``.

        Only committed files: not ``LOCK`` nor the ``.tmp-*`` of a write in flight. They are added
        with the ``immutable`` policy, without a staging copy: a round file is renamed into place
        whole and never rewritten, and an image is named by its pixel hash, so a file cannot change
        under the upload, and copying the whole pool at every round would cost rounds x pool size.
        """
        import wandb

        metadata = {
            "round": result.round,
            "step": step,
            "pool_version": pool.version,
            "pool_size": len(pool.examples),
            **{
                key.removeprefix("curriculum/"): result.metrics[key]
                for key in ("curriculum/kept", "curriculum/retired", "curriculum/candidates",
                            "curriculum/failures", "curriculum/weaknesses", "curriculum/probe_accuracy")
                if key in result.metrics
            },
        }  # fmt: skip
        artifact = wandb.Artifact(name=f"{_safe_name(self.run_name)}-pool", type="dataset", metadata=metadata)
        root = Path(pool.root)
        for k in pool.committed_rounds():
            if k <= pool.version:
                name = f"round_{k:05d}.jsonl"
                artifact.add_file(str(root / name), name=name, policy="immutable")
        for png in sorted(Path(pool.images).glob("*.png")):
            if not png.name.startswith("."):
                artifact.add_file(str(png), name=f"images/{png.name}", policy="immutable")
        self.wandb.log_artifact(artifact, aliases=[f"round-{result.round}", "latest"])

    def summary(self, values: dict[str, Any]) -> None:
        """The run's final values: W&B's run summary (the other trackers have them as the last
        evaluation's metrics)."""
        if self.wandb is not None:
            self.wandb.summary.update(values)

    def close(self) -> None:
        if not self.active:
            return
        self._file.close()
        for tracker in self.trackers:
            tracker.finish()
        self.trackers, self.wandb = [], None
        if self._data_dir_set:  # the next run of this process stages in its own folder
            os.environ.pop("WANDB_DATA_DIR", None)
            self._data_dir_set = False


def log_table_run(
    project: str,
    group: str | None,
    name: str,
    mode: str,
    entity: str | None,
    columns: list[str],
    rows: list[list[Any]],
    files: dict[str, Path],
    summary: dict[str, Any],
    *,
    key: str = "report",
    dir: str | Path | None = None,
) -> None:
    """A short W&B run (job type ``report``) in ``group`` holding one table, a few images and a
    summary: how a comparison puts its report next to the runs it compares.

    ``files`` maps a key to a PNG logged as an image under it. Mode ``disabled`` does nothing, and
    never imports wandb. The run is created beside any run already active in the process and
    finished before returning, so the caller's own run (if any) is left as it was.
    """
    if mode == "disabled":
        return
    import wandb

    with redacted_argv():
        run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            name=name,
            job_type="report",
            mode=mode,
            dir=str(dir) if dir is not None else None,
            reinit="create_new",
        )
    try:
        logged: dict[str, Any] = {key: wandb.Table(columns=list(columns), data=[list(r) for r in rows],
                                                   allow_mixed_types=True)}  # fmt: skip
        logged.update({k: wandb.Image(str(path)) for k, path in files.items()})
        run.log(logged)
        run.summary.update(summary)
    finally:
        run.finish()
