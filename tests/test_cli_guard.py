"""A working folder holding its own ``models/`` package does not silently hide the project's."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_train(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "train", "--config", "missing.yaml"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_models_package_in_the_working_folder_is_named_with_what_to_do(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    proc = _run_train(tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert f"the folder {tmp_path / 'models'} hides lessonloop's package" in last
    assert "run from another folder" in last


def test_a_plain_folder_named_models_hides_nothing(tmp_path):
    (tmp_path / "models").mkdir()  # no __init__.py: a namespace portion, which the real package outranks
    proc = _run_train(tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: config file not found: missing.yaml"
