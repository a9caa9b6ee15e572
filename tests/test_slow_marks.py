"""The slow tests are marked so a developer can leave them out (``pytest -m "not slow"``) while
``make test`` runs them all: every test that launches ranks with torchrun, kills a process with
SIGKILL or runs ``lessonloop compare`` in a subprocess carries ``@pytest.mark.slow`` (or ``gpu``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SLOW_SIGNS = {
    "torchrun": lambda source: "torch.distributed.run" in source,
    "SIGKILL": lambda source: "SIGKILL" in source,
    # ast.unparse writes every string in single quotes
    "compare subprocess": lambda source: "subprocess" in source and "'compare'" in source,
}


def _marked(node: ast.FunctionDef, mark: str) -> bool:
    return any(mark in ast.unparse(d) for d in node.decorator_list)


def _slow_reasons(path: Path) -> dict[str, str]:
    """Each test function of a module that reaches a slow sign, through the module's own helpers,
    fixtures and constants, with the sign it reaches."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    consts = {
        t.id: ast.unparse(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }

    def reaches(name: str, seen: set[str]) -> str | None:
        if name in seen:
            return None
        seen.add(name)
        source = ast.unparse(defs[name]) if name in defs else consts.get(name, "")
        sign = next((s for s, found in SLOW_SIGNS.items() if found(source)), None)
        if sign:
            return sign
        node = defs.get(name)
        if node is None:
            return None
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {a.arg for a in node.args.args}
        return next((s for u in sorted(used - {name}) if (s := reaches(u, seen))), None)

    return {
        name: sign
        for name, node in defs.items()
        if name.startswith("test_") and not (_marked(node, "mark.slow") or _marked(node, "mark.gpu"))
        for sign in [reaches(name, set())]
        if sign
    }


def test_every_test_that_launches_ranks_kills_processes_or_compares_is_marked_slow():
    unmarked = {
        f"{path.name}::{name}": sign
        for path in sorted(TESTS.glob("test_*.py"))
        if "pytestmark" not in path.read_text(encoding="utf-8")
        for name, sign in _slow_reasons(path).items()
    }
    assert not unmarked, f"mark these @pytest.mark.slow: {unmarked}"


def test_the_slow_mark_is_registered_and_not_left_out_by_default(pytestconfig):
    """``make test`` is plain pytest: the default options must not deselect the slow tests."""
    assert any(m.startswith("slow:") for m in pytestconfig.getini("markers"))
    assert not any("slow" in option for option in pytestconfig.getini("addopts"))


@pytest.mark.parametrize(("module", "test"), [
    ("test_pool", "test_kill9_at_random_moments_loses_and_duplicates_nothing"),
    ("test_distributed", "test_async_rounds_agree_across_ranks_and_resume"),
    ("test_compare", "test_a_rerun_keeps_finished_runs"),
])  # fmt: skip
def test_the_signs_find_the_known_slow_tests(module, test, tmp_path):
    """The check is not vacuous: with their marks taken off, known slow tests are found (through
    a helper, a fixture, a nested function)."""
    source = (TESTS / f"{module}.py").read_text(encoding="utf-8").replace("@pytest.mark.slow\n", "")
    path = tmp_path / f"{module}.py"
    path.write_text(source, encoding="utf-8")
    assert test in _slow_reasons(path)
