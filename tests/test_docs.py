"""The docs (README.md and docs/*.md) say only what exists: every config key is in the reference
table, which is what ``lessonloop config`` prints, and every path, run output, command, script and
link they quote leads somewhere (tests/doccheck.py). The checker itself is tested on planted
broken references."""

from __future__ import annotations

import re
from pathlib import Path

from tests.doccheck import anchors, code, expand, in_layout, layout, problems, read_docs, slug
from train.cli import main as cli
from train.config import reference

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_key_is_described_and_in_the_generated_reference(capsys):
    rows = reference()
    assert len(rows) > 40
    docs = read_docs(ROOT)
    everything = "\n".join(docs.values())
    for key, _type, _default, doc in rows:
        assert doc, f"config key {key} has no docstring"
        assert f"`{key}`" in everything, f"the docs lack config key {key}"
    assert cli(["config"]) == 0
    printed = capsys.readouterr().out.strip()
    table = "\n".join(line for line in docs["docs/config.md"].splitlines() if line.startswith("|"))
    assert table == printed, "docs/config.md: replace its table with what `lessonloop config` prints"


def test_every_reference_in_the_docs_leads_somewhere():
    assert problems(ROOT, read_docs(ROOT)) == []


def test_readme_links_every_page_of_docs():
    docs = read_docs(ROOT)
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", docs["README.md"]))
    pages = {Path(name).name for name in docs if name.startswith("docs/")}
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


# -- the checker, on planted references --------------------------------------------------------

RUNS = """# What a run writes

```
runs/
  <name>/
    metrics.jsonl           always
    curriculum/
      round_00001/          one per round
        round.json          counts
      pool/                 the pool
    model/                  the model
  <name>-off.log            the second run's log
```
"""


def planted(tmp_path: Path) -> Path:
    """A small repo: a Makefile with demo and test, a config, a benchmark and code that writes
    what RUNS names."""
    (tmp_path / "Makefile").write_text(
        "PY ?= python3\nX := 1\n.PHONY: demo test\ndemo: setup\n\tpython -m x\ntest:\n"
    )
    for path, text in {
        "configs/demo.yaml": "run: {}\n",
        "benchmarks/sweep.py": "",
        "benchmarks/results/a_cpu.json": "{}",
        "train/__init__.py": "",
        "train/demo.py": "",
        "train/loop.py": 'open("metrics.jsonl"); f"round_{k:05d}"; "round.json"; "pool"; "model"; f"{n}-off.log"; "curriculum"\n',
        "docs/other.md": "# Other page\n\n## A section\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


GOOD = """# Title

## Quickstart

`make demo` then `make test` and `lessonloop report runs/demo`; `runs/demo/metrics.jsonl`, `runs/demo/curriculum/round_00002/round.json`, `runs/demo-off.log`,
`runs/x/curriculum/round_*/anything.json` (round folders list their files), `configs/demo.yaml`,
`benchmarks/results/*.json`, `benchmarks/results/a_{cpu}.json`, `<run>/model`, `data/mine.jsonl`.

```
python benchmarks/sweep.py --out runs/sweep/model      # then
python -m train.demo --config configs/demo.yaml
.venv/bin/python -m pytest -q
```

See [the other page](docs/other.md#a-section), [above](#quickstart) and [a site](https://example.org/x).
"""


def test_the_checker_passes_good_references(tmp_path):
    root = planted(tmp_path)
    assert problems(root, {"README.md": GOOD, "docs/runs.md": RUNS}) == []


def test_the_checker_names_each_planted_broken_reference(tmp_path):
    root = planted(tmp_path)
    bad = {
        "`make demos`": "`make demos`: no such Makefile target",
        "`lessonloop reprot runs/demo`": "`lessonloop reprot`: no such command",
        "`python benchmarks/swep.py`": "`benchmarks/swep.py`: no such file or folder",
        "`python -m train.demos`": "`python -m train.demos`: no such module",
        "`configs/demo.yml`": "`configs/demo.yml`: no such file or folder",
        "`benchmarks/results/*.csv`": "`benchmarks/results/*.csv`: no such file or folder",
        "`configs/demo.yaml/`": "`configs/demo.yaml/`: no such file or folder",
        "`runs/demo/curriculum/round_<k>/`": "`runs/demo/curriculum/round_<k>/`: not a run output",
        "`runs/demo/curriculum/round_1/round.json`": "`runs/demo/curriculum/round_1/round.json`: not a run",
        "`runs/demo/report.html`": "`runs/demo/report.html`: not a run output",
        "`runs/demo/metrics.json`": "`runs/demo/metrics.json`: not a run output",
        "[gone](docs/gone.md)": "link to docs/gone.md: no such file",
        "[gone](docs/other.md#no-section)": "link to docs/other.md#no-section: no such heading",
        "[gone](#nowhere)": "link to #nowhere: no such heading",
    }
    for planted_text, said in bad.items():
        docs = {
            "README.md": GOOD.replace("(round folders", f"{planted_text} (round folders"),
            "docs/runs.md": RUNS,
        }
        found = problems(root, docs)
        assert len(found) == 1 and said in found[0], (planted_text, found)


def test_a_layout_entry_no_code_writes_is_named(tmp_path):
    root = planted(tmp_path)
    docs = {"README.md": "# T\n", "docs/runs.md": RUNS.replace("metrics.jsonl ", "metrics.jsnl  ")}
    assert problems(root, docs) == [
        "docs/runs.md: the layout names `runs/<name>/metrics.jsnl`, which no code writes"
    ]


def test_a_planted_bad_reference_in_the_real_readme_fails_the_check():
    docs = read_docs(ROOT)
    docs["README.md"] += "\nRun `make demo-all`, then open `benchmarks/results/nothing.json`.\n"
    assert sorted(problems(ROOT, docs)) == [
        "README.md: `benchmarks/results/nothing.json`: no such file or folder",
        "README.md: `make demo-all`: no such Makefile target",
    ]


def test_the_checker_s_parts():
    assert code("a `b` c ``d `e` f``\n```\ng\n```\n") == ["g\n", "b", "d `e` f"]
    assert code("```\nruns/\n  x/\n```\n```\nmydata/\n  train/a.jsonl\n```\n") == []
    assert slug("## The claim, in *miniature*") == "the-claim-in-miniature"
    assert anchors("# A b\n```\n# not a heading\n```\n## C: d\n") == {"a-b", "c-d"}
    assert expand("a_{gpu,cpu}/<k>.json") == ["a_gpu/*.json", "a_cpu/*.json"]
    entries = layout({"docs/runs.md": RUNS})
    assert (["runs", "<name>", "curriculum", "round_00001"], "round_00001/          one per round") in entries
    assert in_layout("runs/a/curriculum/round_00007/round.json", entries)
    assert in_layout("runs/<run.name>/model/README.md", entries)  # model/ lists no children
    assert not in_layout("runs/a/curriculum/round_7", entries)
    assert not in_layout("runs/a/curriculum/round_00007/failures.jsonl", entries)  # its files are listed
