"""The compare report as one HTML page, from run folders written by hand (no training): written by
compare beside report.md and by ``lessonloop report <compare folder>`` (an older compare.json
too), the claim table with its intervals, titled plots, and ``base`` as a horizontal line against
examples added. Also: every command's help says what it does."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_compare_checks import fake_run
from train.cli import main
from train.compare_page import draw_curves, normalise
from train.compare_report import write_report
from train.compare_results import collect
from train.config import load_config

ACCURACY = {  # per seed: (count, spatial), as in test_compare_checks
    "targeted": [(4 / 6, 2 / 4), (5 / 6, 3 / 4), (3 / 6, 2 / 4)],
    "base": [(3 / 6, 1 / 4), (4 / 6, 1 / 4), (4 / 6, 1 / 4)],
}


@pytest.fixture
def compared(tmp_path):
    cfg = load_config(None, [f"run.output_dir={tmp_path}", "run.name=c", "train.steps=4",
                             "compare.arms=[base,targeted]", "compare.seeds=[0,1,2]"])  # fmt: skip
    for arm, per_seed in ACCURACY.items():
        for seed, (c, s) in enumerate(per_seed):
            rounds = (
                [{"status": "ok", "candidates": [{"skill": "count", "kept": True}] * 3}]
                if arm == "targeted"
                else []
            )
            fake_run(cfg.run_dir, f"{arm}-s{seed}", {"count": c, "spatial": s}, rounds)
    result = collect(cfg.run_dir, cfg, ["spatial"])
    write_report(cfg.run_dir, cfg, result)
    return cfg.run_dir, result


def test_compare_writes_one_self_contained_page_that_states_the_claim_first(compared):
    root, _ = compared
    page = (root / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and (root / "report.md").is_file()
    for external in ('src="http', 'href="http', "<script", "<link", "url("):
        assert external not in page
    assert "<h1>Compare c</h1>" in page
    claim = page.split('<section id="answer">', 1)[1].split("</section>", 1)[0]
    # Targeted − base: +0.167 [-0.213, +0.546] (test_compare_checks works the numbers out).
    assert (
        "<b>No difference shown</b> (the interval spans zero) against base (+0.167 [-0.213, +0.546])" in claim
    )
    row = re.search(r"<tr><td>base</td>(.*?)</tr>", claim).group(1)
    cells = [re.sub("<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[:4] == ["+0.167 [-0.213, +0.546]", "no difference shown", "+0.200, +0.300, +0.000", "2 of 3"]
    assert page.index('id="answer"') < page.index('id="plots"') < page.index('id="runs"')
    titles = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)
    assert titles == [
        "Test accuracy over training, per arm",
        "Test accuracy against examples added, per arm",
        "Per-skill test accuracy at the end, per arm (error bars: sd over 3 seeds)",
        "Cost per arm: wall time per run, s (mean over seeds, error bars: sd)",
    ]
    assert "No API cost: no arm called a frontier model." in page
    assert "targeted-s2" in page.split('<section id="runs">', 1)[1]  # every run, folded


def test_base_is_a_horizontal_line_against_examples_added(compared):
    from matplotlib.figure import Figure

    _, result = compared
    ax = Figure().add_subplot()
    draw_curves(ax, result, "added")
    lines = {line.get_label(): line for line in ax.get_lines()}
    base = lines["base (adds none), end"]
    assert list(base.get_ydata()) == [pytest.approx(0.4667, abs=1e-3)] * 2  # the mean of 0.4, 0.5, 0.5
    assert list(base.get_xdata()) == [0, 1]  # axes coordinates: across the whole plot
    xs = list(lines["targeted"].get_xdata())
    assert xs == [0, 3] and "base" not in lines  # targeted: 3 examples added by its end


def test_report_on_a_compare_folder_writes_its_page(compared, tmp_path, capsys):
    root, _ = compared
    (root / "report.html").unlink()
    assert main(["report", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root / "report.html")
    assert "<h1>Compare c</h1>" in (root / "report.html").read_text()
    # A compare.json of an older version: paired differences as bare lists get their interval.
    old = json.loads((root / "compare.json").read_text())
    old["paired"] = {
        "base": {"accuracy": [0.2, 0.3, 0.0], "under_served": [0.25, 0.5, 0.25], "seeds": [0, 1, 2]}
    }
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "compare.json").write_text(json.dumps(old))
    out = tmp_path / "page.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    assert "+0.167 [-0.213, +0.546]" in out.read_text()
    assert normalise(old)["paired"]["base"]["under_served"]["higher"] == 3
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a lessonloop run" in capsys.readouterr().err
    (folder / "compare.json").rename(folder / "compare_config.yaml")  # a compare whose runs are still going
    assert main(["report", str(folder)]) == 2
    assert "a compare folder without compare.json yet" in capsys.readouterr().err


def test_every_command_s_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("train a model as a config says: SFT or GRPO", "train every arm of a config's compare",
                   "write one HTML page of a run (did the curriculum help?) or of a compare folder",
                   "write a run's pool as a Hugging Face dataset", "print every config key"):  # fmt: skip
        assert phrase in text
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "compare.json" in capsys.readouterr().out
