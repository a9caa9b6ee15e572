"""The demo's closing table says whether the curriculum's difference is beyond the noise, paired
over the same test items, overall and on the under-served skills."""

from __future__ import annotations

import json
from pathlib import Path

from train.demo import paired, report


def _run(root: Path, name: str, right: dict[str, list[bool]]) -> Path:
    run = root / name
    run.mkdir()
    rows = [
        {"id": f"{skill}-{i}", "skill": skill, "prediction": "x", "answer": "x", "exact": ok, "correct": ok}
        for skill, marks in right.items()
        for i, ok in enumerate(marks)
    ]
    (run / "eval_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    end = {f"skill/{s}": sum(m) / len(m) for s, m in right.items()}
    end["accuracy"] = sum(r["correct"] for r in rows) / len(rows)
    summary = {"prior_baseline": {k: 0.25 for k in end}, "end": end, "steps": 10,
               "curriculum": {"rounds": [{"status": "ok"}], "mode": "sync", "pool_size": 3}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_the_difference_is_paired_item_by_item_and_judged_against_its_interval(tmp_path):
    # spatial: the curriculum run answers 30 more of 60 items right; colour: the same items.
    off = _run(tmp_path, "demo-off", {"spatial": [False] * 60, "colour": [True, False] * 30})
    on = _run(tmp_path, "demo", {"spatial": [True] * 30 + [False] * 30, "colour": [True, False] * 30})
    overall = paired(on, off)
    assert overall["n"] == 120 and abs(overall["mean"] - 0.25) < 1e-9 and overall["low"] > 0
    assert paired(on, off, ["colour"])["mean"] == 0.0 and paired(on, off, ["count"]) is None
    text = report(on, off, ["spatial"])
    assert "under-served skills (spatial): +0.500, 95 % interval" in text
    assert "over 60 items (beyond the noise)" in text
    # The same answers on both sides: zero, and within the noise.
    twin = _run(tmp_path, "twin", {"spatial": [False] * 60, "colour": [True, False] * 30})
    assert "overall: +0.000, 95 % interval +0.000 to +0.000 over 120 items (within the noise)" in report(
        twin, off
    )
