"""Checkpoints that resume a run exactly.

A checkpoint is a folder ``<run>/checkpoints/step_XXXXXXXX`` holding Accelerate's state (model,
optimizer, scheduler, every rank's RNG states) and ``trainer_state.json`` (step, data position,
evaluation history). It is written under a temporary name and renamed when complete, so a kill
at any moment leaves either the whole checkpoint or none, never a half one that resume would trust.
"""

from __future__ import annotations

import json
import re
import shutil
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
