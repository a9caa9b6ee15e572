"""The run report answers first and flags what a reader must see, on run folders written by hand
(no training): a skill at or below its prior is flagged, the run without the curriculum is found
(a ``-off`` twin, or the base arm of a compare) and compared with its noise, warnings fire on
crafted round records, weaknesses are followed by id, and no open table runs down the page."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from curriculum.report import write_report
from curriculum.report_answer import find_twin, skill_rows
from curriculum.report_follow import follow, warnings
from curriculum.report_html import OPEN_ROWS
from curriculum.run_records import read_run

N = 20  # test items per skill


def fake_run(
    root: Path, name: str, right: dict[str, int], prior: dict[str, float], rounds=(), wrong_first=False
):
    """A finished run: ``right[s]`` of the ``N`` test items of skill ``s`` answered right (the
    first ones, or the last ones with ``wrong_first``), its prior, and round records."""
    d = root / name
    (d / "curriculum").mkdir(parents=True)
    rows = []
    for s, k in right.items():
        for i in range(N):
            ok = i >= N - k if wrong_first else i < k
            rows.append(
                {"id": f"{s}-{i}", "skill": s, "prediction": "x", "answer": "x", "exact": ok, "correct": ok}
            )
    (d / "eval_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = sum(right.values()) / (N * len(right))
    end = {"accuracy": total, **{f"skill/{s}": k / N for s, k in right.items()}}
    prior_all = {"accuracy": sum(prior.values()) / len(prior), **{f"skill/{s}": p for s, p in prior.items()}}
    start = {"step": 0, "accuracy": 0.0, **{f"skill/{s}": 0.0 for s in right}}
    summary = {"run": name, "steps": 8, "start": start, "end": end, "prior_baseline": prior_all,
               "history": [start, {"step": 4, **end}, {"step": 8, **end}]}  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text("train:\n  steps: 8\ncurriculum:\n  enabled: true\n  every: 4\n")
    for k, r in enumerate(rounds, 1):
        folder = d / "curriculum" / f"round_{k:05d}"
        folder.mkdir()
        (folder / "round.json").write_text(
            json.dumps({"round": k, "step": 4 * k, "status": "ok", **r.get("summary", {})})
        )
        (folder / "analysis.json").write_text(json.dumps(r.get("weaknesses", [])))
        for file, key in (("candidates.jsonl", "candidates"), ("failures.jsonl", "failures")):
            (folder / file).write_text("".join(json.dumps(c) + "\n" for c in r.get(key, [])))
    return d


def weakness(wid: str, skill: str, failures: int, n: int, **extra) -> dict:
    return {"id": wid, "skill": skill, "slice": extra.pop("slice", {}), "failure_rate": failures / n,
            "lower_bound": 0.5, "n": n, "failures": failures, "failure_ids": [],
            "diagnosis": f"{skill}: fails {failures} of {n} (probe overall 74 %).", "confusions": [],
            "spec": extra.pop("spec", None), **extra}  # fmt: skip


def candidate(i: int, skill: str, wid: str, kept: bool = True, dropped_by: str | None = None) -> dict:
    return {"id": f"c{i}", "weakness": wid, "generator": "world", "skill": skill, "question": f"q{i}?",
            "answer": "1", "kept": kept, "dropped_by": None if kept else dropped_by,
            "verdicts": {} if kept else {dropped_by: "a near duplicate"}, "meta": {}}  # fmt: skip


def _row_of(page: str, skill: str) -> str:
    """The answer table's row of ``skill`` (its cells' text)."""
    answer = page.split('<section id="answer">', 1)[1].split("</section>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", answer):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if cells and re.sub("<[^>]+>", "", cells[0]) == skill:
            return " | ".join(re.sub("<[^>]+>", "", c) for c in cells)
    raise AssertionError(f"no row of {skill}")


def test_a_skill_at_or_below_its_prior_is_flagged(tmp_path):
    # count: 16 of 20 against a prior of 0.2, far above it; spatial 11 of 20 against 0.6 (below);
    # colour 10 of 20 against 0.5 (at); shape 7 of 20 against 0.3 (above by 0.05, SE 0.107: within noise).
    run = fake_run(tmp_path, "r", {"count": 16, "spatial": 11, "colour": 10, "shape": 7},
                   {"count": 0.2, "spatial": 0.6, "colour": 0.5, "shape": 0.3})  # fmt: skip
    page = write_report(run).read_text()
    flag = {s: _row_of(page, s).split(" | ")[6] for s in ("count", "spatial", "colour", "shape", "overall")}
    assert flag == {"count": "", "spatial": "at or below prior", "colour": "at or below prior",
                    "shape": "within noise of prior", "overall": ""}  # fmt: skip
    se = math.sqrt(0.8 * 0.2 / N)
    assert _row_of(page, "count").startswith(
        f"count | {N} | 0.0 % | 80.0 % ± {100 * se:.1f} | 20.0 % | +60.0"
    )
    lead = page.split('<div class="answer">', 1)[1].split("</div>", 1)[0]
    assert "2 of 4 skills end at or below the prior" in lead and "colour, spatial" in lead
    # The answer comes before anything else the page shows.
    assert page.index('id="answer"') < min(page.index(x) for x in ('id="progress"', 'id="rounds"'))
    assert "No run without the curriculum found" in page


def test_the_run_without_the_curriculum_is_compared_where_there_is_one(tmp_path):
    right = {"count": 14, "spatial": 8}
    prior = {"count": 0.2, "spatial": 0.5}
    run = fake_run(tmp_path, "demo", right, prior)
    # The twin got 10 count items right: the run's first 10 of its 14 (paired: 4 items differ).
    fake_run(tmp_path, "demo-off", {"count": 10, "spatial": 8}, prior)
    twin = find_twin(run)
    assert twin is not None and twin.root.name == "demo-off" and twin.how == "-off twin"
    rows = {r.skill: r for r in skill_rows(read_run(run, require_pool=False), twin)}
    count = rows["count"]
    assert count.diff == pytest.approx(0.2)
    diffs = [1.0] * 4 + [0.0] * 16
    mean = sum(diffs) / N
    assert count.diff_se == pytest.approx(
        math.sqrt(sum((d - mean) ** 2 for d in diffs) / (N - 1)) / math.sqrt(N)
    )
    assert count.twin_flag == "higher"  # 0.2 against a paired SE of 0.092
    assert rows["spatial"].diff == 0 and rows["spatial"].twin_flag == "noise"
    page = write_report(run).read_text()
    assert "<code>demo-off</code>, -off twin" in page
    assert _row_of(page, "count").startswith(
        "count | 20 | 0.0 % | 70.0 % ± 10.2 | 20.0 % | +50.0 |  | 50.0 % ± 11.2 | +20.0 ± 9.2 | curriculum higher"
    )
    assert "No run without the curriculum found" not in page
    # The twin's own report has no twin: it is the run without the curriculum.
    assert find_twin(tmp_path / "demo-off") is None


def test_an_arm_of_a_compare_is_compared_with_the_base_arm_of_its_seed(tmp_path):
    (tmp_path / "compare.json").write_text("{}")
    run = fake_run(tmp_path, "targeted-s1", {"count": 12}, {"count": 0.2})
    fake_run(tmp_path, "base-s0", {"count": 2}, {"count": 0.2})
    assert find_twin(run) is None  # no base arm of seed 1 yet
    fake_run(tmp_path, "base-s1", {"count": 9}, {"count": 0.2})
    twin = find_twin(run)
    assert twin is not None and twin.root.name == "base-s1" and twin.how == "base arm of the compare"
    assert find_twin(tmp_path / "base-s1") is None


def _round(weaknesses, candidates, pool_size, **summary):
    return {"weaknesses": weaknesses, "candidates": candidates,
            "summary": {"metrics": {"curriculum/pool_size": pool_size, "curriculum/kept": sum(c["kept"] for c in candidates),
                                    "curriculum/probe_skill/count": 0.4}, **summary}}  # fmt: skip


def test_warnings_fire_on_rounds_that_drop_most_shrink_the_pool_or_file_examples_off_target(tmp_path):
    w1, w2 = (
        weakness("count/num_objects=7-9", "count", 18, 18),
        weakness("spatial/answer=no", "spatial", 10, 12),
    )
    clean = [candidate(i, "count", w1["id"]) for i in range(8)] + [
        candidate(8, "count", w1["id"], False, "dedup")
    ]
    # Round 2: 155 of 192 dropped (150 by dedup), and 3 kept count examples filed under spatial.
    busy = ([candidate(i, "count", w1["id"]) for i in range(34)] + [candidate(34 + i, "count", w2["id"]) for i in range(3)]
            + [candidate(40 + i, "count", w1["id"], False, "dedup") for i in range(150)]
            + [candidate(200 + i, "count", w1["id"], False, "student") for i in range(5)])  # fmt: skip
    run = fake_run(tmp_path, "r", {"count": 10}, {"count": 0.2}, [
        _round([w1], clean, 8),
        _round([w1, w2], busy, 45),
        _round([w1], [candidate(500, "count", w1["id"])], 30),  # the pool shrank: 45 -> 30
    ])  # fmt: skip
    ws = warnings(read_run(run, require_pool=False).rounds)
    assert [(w.round, w.kind) for w in ws] == [(2, "dropped_most"), (2, "off_target"), (3, "pool_shrank")]
    assert ws[0].text == "its filters dropped 155 of 192 candidates (81 %): dedup 150, student 5"
    assert ws[1].text.startswith(
        "3 kept examples are filed under a weakness of another skill (3 count examples for spatial/"
    )
    assert ws[2].text == "the pool shrank from 45 to 30 live examples"
    page = write_report(run).read_text()
    warned = page.split('<section id="warnings">', 1)[1].split("</section>", 1)[0]
    assert "Warnings (3)" in warned and "dropped 155 of 192 candidates" in warned
    assert '<a href="#round-2">round 2</a>' in warned and 'id="round-2"' in page
    # The round marks the off-target examples where they are shown, first under their weakness.
    round2 = page.split('id="round-2"', 1)[1].split('id="round-3"', 1)[0]
    assert f"<code>{w2['id']}</code> · 3 kept · 3 off target" in round2
    cards_and_summary = 3 + 1
    assert round2.count('<span class="badge warn">off target</span>') == cards_and_summary
    # A clean run warns of nothing.
    quiet = fake_run(
        tmp_path, "q", {"count": 10}, {"count": 0.2}, [_round([w1], clean, 8), _round([w1], clean, 16)]
    )
    assert warnings(read_run(quiet, require_pool=False).rounds) == []
    assert "None: no round dropped most" in write_report(quiet).read_text()


def test_a_weakness_is_followed_across_rounds_by_its_id_and_reads_as_a_failure_rate(tmp_path):
    wid = "count/num_objects=7-9"
    spec = {"skill": "count", "params": {"num_objects": [7, 9]}}
    first = weakness(wid, "count", 18, 18, slice={"num_objects": [7, 9]}, spec=spec)
    run = fake_run(tmp_path, "r", {"count": 10}, {"count": 0.2}, [
        _round([first, weakness("cluster/2", "count", 5, 8)], [candidate(i, "count", wid) for i in range(6)], 6),
        _round([weakness("cluster/2", "count", 4, 9)], [], 6),
        _round([weakness(wid, "count", 9, 18)], [], 6),
    ])  # fmt: skip
    followed = {f.id: f for f in follow(read_run(run, require_pool=False).rounds)}
    assert sorted(followed) == ["cluster/2 (round 1)", "cluster/2 (round 2)", wid]  # clusters: one round each
    f = followed[wid]
    assert sorted(f.seen) == [1, 3] and f.first.rate == 1.0 and f.last.rate == 0.5 and f.first.kept == 6
    page = write_report(run).read_text()
    section = page.split('<section id="weaknesses">', 1)[1].split("</section>", 1)[0]
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", section) if wid in r)
    text = re.sub("<[^>]+>", " ", row)
    assert "100 %  fail (18/18)" in text and "found · kept 6/6" in text
    assert "not diagnosed again" in text and "count: 60 % fail" in text  # round 2: its skill's probe
    assert "50 %  fail (9/18)" in text and "-50 pts" in text
    # A round that records the rate of earlier weaknesses on its probe (round.json's "followed")
    # measures them without diagnosing them again.
    summary = run / "curriculum" / "round_00002" / "round.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "followed": {wid: [12, 18]}}))
    again = {f.id: f for f in follow(read_run(run, require_pool=False).rounds)}[wid]
    assert sorted(again.seen) == [1, 2, 3] and again.seen[2].rate == 12 / 18 and not again.seen[2].diagnosed
    assert "67 %  fail (12/18) measured" in re.sub("<[^>]+>", " ", write_report(run).read_text())
    # "(probe overall 74 %)" is a failure rate: it never reads as an accuracy.
    assert "probe overall" not in page and "(the whole probe: 74 % wrong)" in page
    # Slices and specs read as words, not JSON.
    assert "num objects 7–9" in page and "count: num objects 7–9" in page and "{&quot;" not in page


class _Tables(HTMLParser):
    """Row counts of every table, and whether it is folded away: inside a <details> element other
    than a round's own (a round opened shows its tables, so they count as open)."""

    def __init__(self) -> None:
        super().__init__()
        self.folds: list[bool] = []
        self.tables: list[list] = []

    def handle_starttag(self, tag, attrs):
        if tag == "details":
            self.folds.append(dict(attrs).get("class") != "round")
        elif tag == "table":
            self.tables.append([any(self.folds), 0])
        elif tag == "tr" and self.tables:
            self.tables[-1][1] += 1

    def handle_endtag(self, tag):
        if tag == "details":
            self.folds.pop()


def test_no_open_table_is_longer_than_a_screen(tmp_path):
    wid = "count/num_objects=7-9"
    failures = [{"id": f"p{i}", "skill": "count", "params": {"num_objects": 8}, "question": f"How many {i}?",
                 "answer": "8", "prediction": "1", "new": True} for i in range(96)]  # fmt: skip
    weaknesses = [weakness(f"count/w{i}", "count", 5, 9) for i in range(30)]
    rounds = [{**_round([weakness(wid, "count", 18, 18), *weaknesses], [candidate(i, "count", wid) for i in range(40)], 40),
               "failures": failures} for _ in range(13)]  # fmt: skip
    run = fake_run(
        tmp_path, "r", {f"skill{i}": 10 for i in range(14)}, {f"skill{i}": 0.1 for i in range(14)}, rounds
    )
    page = write_report(run).read_text()
    answer, rest = page.split("</section>", 1)  # the answer's table of 14 skills and overall stays whole
    assert 'id="answer"' in answer and "skill13" in answer
    parser = _Tables()
    parser.feed(rest)
    open_rows = [rows - 1 for folded, rows in parser.tables if not folded]  # less the header row
    assert len(open_rows) > 13 * 3 and max(open_rows) <= OPEN_ROWS  # a round opened shows short tables
    assert sum(rows for folded, rows in parser.tables if folded) > 13 * 96  # the rest is there, folded
    assert all(f"How many {i}?" in page for i in range(96))
