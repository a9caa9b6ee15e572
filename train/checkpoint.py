"""Checkpoints that resume a run exactly.

A checkpoint is a folder ``<run>/checkpoints/step_XXXXXXXX`` holding Accelerate's state (model,
optimizer, scheduler, every rank's RNG states) and ``trainer_state.json`` (step, data position,
evaluation history). It is written under a temporary name and renamed when complete, so a kill
at any moment leaves either the whole checkpoint or none, never a half one that resume would trust.

Models that tie their output layer to their input embeddings (every built-in architecture) hold
one tensor under two names. Accelerate writes it once to ``model.safetensors`` and warns
"Removed shared tensor {'lm_head.weight'} while saving" at every save: true, and harmless when the
model itself declares the tie (``all_tied_weights_keys``), since the model a resume builds has the
tie again and loading the one tensor fills both names. ``save_checkpoint`` drops exactly that
warning; a shared tensor the model does not declare (a tie made at run time, which a rebuilt model
would not have) still warns.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(accelerator: Any, run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write a complete checkpoint for ``step`` on every rank; prune to the newest ``keep``."""
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with declared_ties_quiet(accelerator):
        accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


_SHARED = re.compile(r"Removed shared tensor (\{.*?\}) while saving")


class _DeclaredTies(logging.Filter):
    """Drops Accelerate's shared-tensor warning when every tensor it names is one of a model's
    declared ties (by name or, under a wrapper such as PEFT's, as the end of its name)."""

    def __init__(self, tied: set[str]) -> None:
        super().__init__()
        self.tied = tied

    def filter(self, record: logging.LogRecord) -> bool:
        found = _SHARED.search(record.getMessage())
        if not found:
            return True
        try:
            names = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            return True
        return not all(any(n == t or n.endswith("." + t) for t in self.tied) for n in names)


def declared_ties(model: Any) -> set[str]:
    """Names of the parameters a model ties together (both ends of each tie)."""
    ties = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    if not isinstance(ties, dict):  # older transformers: a list of the tied copies' names
        return {str(t) for t in ties}
    return {str(name) for pair in ties.items() for name in pair}


@contextmanager
def declared_ties_quiet(accelerator: Any):
    """Within: Accelerate's shared-tensor warning is dropped for the prepared models' declared ties."""
    tied: set[str] = set()
    for model in getattr(accelerator, "_models", []):
        unwrapped = accelerator.unwrap_model(model)
        tied |= declared_ties(unwrapped)
        base = getattr(unwrapped, "get_base_model", None)  # PEFT: the wrapped model declares them
        if callable(base):
            tied |= declared_ties(base())
    quiet = _DeclaredTies(tied)
    logger = logging.getLogger("accelerate.utils.other")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: ``auto`` (newest of this run, if any), ``never``, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"train.resume={resume!r}: not a checkpoint folder (no {STATE_FILE})")
    return path


def load_checkpoint(accelerator: Any, path: Path) -> dict[str, Any]:
    """Restore Accelerate's state from ``path`` and return the trainer state."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())
