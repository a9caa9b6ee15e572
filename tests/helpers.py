"""Helpers several test files share (fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` loaded as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_checkpoints(root: Path, texts: list[str], archs: list[str], image_size: int) -> dict[str, str]:
    """A tiny checkpoint of each architecture under ``root``, its tokenizer trained on ``texts``."""
    from models import build_tiny_vlm

    return {
        arch: str(build_tiny_vlm(root / arch, arch=arch, image_size=image_size, corpus=texts, seed=0))
        for arch in archs
    }
