"""What tests/test_docs.py checks in README.md and docs/*.md: every reference a reader could follow
leads somewhere. ``problems(root, docs)`` lists what does not:

- a repo path quoted in code (`configs/demo.yaml`, `benchmarks/results/*.json`, `round_<k>/` as a
  glob) that matches nothing under ``root``;
- a run output quoted as `runs/<name>/...` that the run-folder layout (the code block of
  docs/runs.md that starts with ``runs/``) does not name, and a layout entry no code writes;
- `make <target>` with no such Makefile target, `lessonloop <command>` with no such command,
  `python -m <module>` of this repo with no such file (a script is a quoted path, as above);
- a markdown link to a file that is not there, or to a heading that is not in it.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?<![\w-])make[ \t]+([A-Za-z][\w-]*)")
LESSONLOOP = re.compile(r"(?<![\w/-])lessonloop[ \t]+([a-z][\w-]*)")
MODULE = re.compile(r"(?<![\w-])(?:\S*/)?python3?[ \t]+-m[ \t]+([\w.]+)")
PATH = re.compile(r"(?<![\w./<>{}*-])([\w.<>*-]+(?:/[\w.<>*,{}-]*)+)")
TREE = re.compile(r"[\w.<>-]+/[ \t]*\n")
PLACEHOLDER = re.compile(r"<[^<>/]*>")
SOURCES = ("train", "curriculum", "models", "benchmarks")
NOT_REPO = {"runs", ".venv", ".git"}


def code(text: str) -> list[str]:
    """The text of every fenced block and inline code span. A folder tree (a block whose first
    line is a folder alone, such as a user's ``mydata/``) is left out: its entries are relative to
    that folder; the run layout (``runs/``) is ``layout``'s."""
    blocks = [m.group(1) for m in FENCE.finditer(text) if not TREE.match(m.group(1))]
    rest = FENCE.sub("", text)
    return blocks + [m.group(2) for m in SPAN.finditer(rest)]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.lstrip("#").strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(line) for line in FENCE.sub("", text).splitlines() if line.startswith("#")}


def make_targets(root: Path) -> set[str]:
    makefile = root / "Makefile"
    text = makefile.read_text() if makefile.is_file() else ""
    return set(re.findall(r"^([A-Za-z][\w-]*)[ \t]*:(?!=)", text, re.M))


def commands() -> set[str]:
    from train.cli import COMMANDS

    return set(COMMANDS)


def expand(path: str) -> list[str]:
    """``a_{x,y}.json`` as its alternatives; placeholders (``<k>``) as ``*``."""
    m = re.search(r"\{([^{}]*)\}", path)
    if m:
        return [p for alt in m.group(1).split(",") for p in expand(path[: m.start()] + alt + path[m.end() :])]
    return [PLACEHOLDER.sub("*", path)]


def repo_top(root: Path) -> set[str]:
    """Top-level names a quoted path may start with to count as a path of this repo."""
    return {p.name for p in root.iterdir() if p.name not in NOT_REPO and not p.name.startswith(".")}


def exists(root: Path, path: str) -> bool:
    for alt in expand(path):
        hits = glob.glob(str(root / alt.rstrip("/")))
        if any(Path(h).is_dir() or not alt.endswith("/") for h in hits):
            return True
    return False


# -- the run folder's layout -------------------------------------------------------------------


def name_pattern(name: str) -> re.Pattern:
    """A layout name as a pattern: ``<name>`` any name, a run of digits any digits of that length."""
    parts = re.split(r"(<[^<>]*>|\d+)", name)
    out = "".join(
        "[^/]+" if p.startswith("<") else rf"\d{{{len(p)}}}" if p.isdigit() else re.escape(p) for p in parts
    )
    return re.compile(out + r"\Z")


def layout(docs: dict[str, str]) -> list[tuple[list[str], str]]:
    """The run layout of docs/runs.md: each entry as (its path parts from ``runs/``, its line)."""
    text = docs.get("docs/runs.md", "")
    entries: list[tuple[list[str], str]] = []
    for block in FENCE.findall(text):
        if not block.startswith("runs/"):
            continue
        stack: list[tuple[int, list[str]]] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            indent, token = len(line) - len(line.lstrip()), line.split()[0]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parts = (stack[-1][1] if stack else []) + [p for p in token.split("/") if p]
            stack.append((indent, parts))
            entries.append((parts, line.strip()))
    return entries


def in_layout(path: str, entries: list[tuple[list[str], str]]) -> bool:
    """Whether a quoted ``runs/...`` path is named by the layout: its parts match an entry's
    parts, or go deeper than an entry whose children the layout does not list."""
    parts = ["<x>" if "*" in p else p for p in PLACEHOLDER.sub("<x>", path).split("/") if p]
    with_children = {tuple(e[:-1]) for e, _ in entries}

    def match(entry: list[str], quoted: list[str]) -> bool:
        return all(q == "<x>" or name_pattern(e).match(q) for e, q in zip(entry, quoted, strict=False))

    for entry, _ in entries:
        if len(entry) == len(parts) and match(entry, parts):
            return True
        if len(entry) < len(parts) and match(entry, parts) and tuple(entry) not in with_children:
            return True
    return False


def source(root: Path) -> str:
    """The repo's Python sources, where the names of what it writes are spelled."""
    return "\n".join(p.read_text() for d in SOURCES for p in sorted((root / d).rglob("*.py")) if p.is_file())


def written_by_code(code_text: str, entries: list[tuple[list[str], str]]) -> list[str]:
    """Layout entries whose name no source file spells: a plain name whole or, with an
    extension, its stem in quotes; a name with placeholders or digits by its words."""
    missing = []
    for parts, _ in entries:
        name = parts[-1]
        if parts == ["runs"]:
            continue
        if PLACEHOLDER.search(name) or re.search(r"\d", name):
            words = re.findall(r"[A-Za-z]{3,}", PLACEHOLDER.sub(" ", name))
            found = all(re.search(rf"\b{w}", code_text) for w in words)
        else:
            stem = name.split(".")[0]
            found = name in code_text or f'"{stem}"' in code_text
        if not found:
            missing.append(f"docs/runs.md: the layout names `{'/'.join(parts)}`, which no code writes")
    return missing


# -- everything -------------------------------------------------------------------------------


def problems(root: Path, docs: dict[str, str]) -> list[str]:
    """Every broken reference in ``docs`` (path relative to ``root`` -> text)."""
    out: list[str] = []
    targets, known, top, code_text = make_targets(root), commands(), repo_top(root), source(root)
    entries = layout(docs)
    out += written_by_code(code_text, entries)
    for name, text in docs.items():
        here = (root / name).parent
        for snippet in code(text):
            out += [
                f"{name}: `make {t}`: no such Makefile target"
                for t in MAKE.findall(snippet)
                if t not in targets
            ]
            out += [
                f"{name}: `lessonloop {c}`: no such command"
                for c in LESSONLOOP.findall(snippet)
                if c not in known
            ]
            for module in MODULE.findall(snippet):
                first, path = module.split(".")[0], module.replace(".", "/")
                if first in top and not (
                    exists(root, path + ".py")
                    or exists(root, path + "/__init__.py")
                    or exists(root, path + "/__main__.py")
                ):
                    out.append(f"{name}: `python -m {module}`: no such module")
            for path in PATH.findall(snippet):
                path = path.rstrip(".,;:")
                first = path.split("/")[0]
                if "://" in path or first.startswith("<"):
                    continue
                if first == "runs":
                    if not in_layout(path, entries):
                        out.append(f"{name}: `{path}`: not a run output that docs/runs.md names")
                elif first in top and not exists(root, path) and f'"{path}"' not in code_text:
                    out.append(f"{name}: `{path}`: no such file or folder")
        for target in LINK.findall(FENCE.sub("", text)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (here / file).resolve() if file else root / name
            rel = (
                dest.relative_to(root.resolve()).as_posix()
                if file and dest.is_relative_to(root.resolve())
                else name
            )
            if file and not dest.exists():
                out.append(f"{name}: link to {target}: no such file")
            elif anchor and dest.suffix == ".md":
                body = docs.get(rel) or dest.read_text()
                if anchor not in anchors(body):
                    out.append(f"{name}: link to {target}: no such heading")
    return out


def read_docs(root: Path) -> dict[str, str]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return {p.relative_to(root).as_posix(): p.read_text() for p in files if p.is_file()}
