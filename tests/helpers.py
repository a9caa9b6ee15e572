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


class KnowsColours:
    """A model that answers colour and shape questions right and every other wrong."""

    def answer(self, examples):
        return [ex.answer if ex.skill in ("colour", "shape") else "0" for ex in examples]

    def sample(self, examples, n):
        return [[a] * n for a in self.answer(examples)]


def frontier_round(frontier, world, root: Path):
    """One curriculum round at step 10 (budget 48, no student check) with ``frontier`` as the
    analyzer, on ``world``'s splits, for ``KnowsColours``; its ``RoundResult``."""
    from curriculum.engine import Curriculum
    from train.config import CurriculumConfig

    cfg = CurriculumConfig(enabled=True, every=10, budget=48, analyzer="openai", frontier=frontier,
                           student_check="off")  # fmt: skip
    cur = Curriculum(cfg, root, world["train"], world["probe"], {"test": world["test"]}, 32, 0)
    try:
        return cur.update(10, KnowsColours())
    finally:
        cur.close()
