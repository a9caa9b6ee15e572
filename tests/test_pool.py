"""The curriculum pool: exact replay of committed rounds, and no loss or duplicate under kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from curriculum.pool import Pool
from curriculum.types import Example, StoredImage, image_hash

REPO = Path(__file__).resolve().parents[1]


def _ex(i: str, colour: tuple[int, int, int] = (10, 20, 30), weight: float | None = None, mode: str = "RGB"):
    meta = {"generator": "world"} if weight is None else {"generator": "world", "weight": weight}
    image = Image.new("RGB", (8, 6), colour).convert(mode)
    return Example(
        i, image, f"how many in {i}?", "3", skill="count", params={"n": 3}, source="synthetic", meta=meta
    )


def _snapshot(pool: Pool) -> tuple:
    rows = [
        (e.id, e.question, e.answer, e.skill, e.params, e.meta, image_hash(e.image)) for e in pool.examples
    ]
    return pool.version, rows, list(pool.weights.items()), sorted(pool.retired)


def _no_tmp(root: Path) -> bool:
    return not list(root.glob(".tmp-*")) and not list((root / "images").glob(".tmp-*"))


def test_round_trip_upto_and_apply_round(tmp_path):
    pool = Pool(tmp_path)
    assert pool.commit_round(0, [_ex("a", weight=2.0), _ex("b", (1, 2, 3)), _ex("c", mode="L")]) == []
    # round 1 failed and committed nothing: gaps are allowed
    assert pool.commit_round(2, [_ex("d", (9, 9, 9), weight=0.5)], retired=["b"]) == ["b"]
    pool.commit_round(3, [])  # an empty round is still a committed round
    pool.commit_round(5, [_ex("e", (9, 9, 9))], retired=["a"])
    full = _snapshot(pool)
    assert pool.ids() == ["c", "d", "e"] and len(pool) == 3 and pool.retired == {"a", "b"}
    assert pool.weights == {"c": 1.0, "d": 0.5, "e": 1.0} and pool.get("d").meta["weight"] == 0.5
    assert isinstance(pool.get("c").image, StoredImage) and pool.get("c").image.size == (8, 6)
    assert pool.get("c").meta == {"generator": "world", "weight": 1.0}
    assert pool.get("a") is None and pool.state_dict() == {"version": 5}
    with pytest.raises(ValueError, match="not after"):
        pool.commit_round(5, [_ex("z")])

    again = Pool(tmp_path)
    assert _snapshot(again) == full and again.committed_rounds() == [0, 2, 3, 5]
    grey = _ex("c", mode="L").image.convert("RGB")  # stored as RGB, the form readers decode to
    assert image_hash(again.get("c").image) == image_hash(grey)
    assert {p.name for p in (tmp_path / "images").iterdir()} == {
        f"{image_hash(im)}.png"
        for im in [_ex("a").image, _ex("b", (1, 2, 3)).image, grey, _ex("d", (9, 9, 9)).image]
    }  # "e" has the pixels of "d": one file for both
    assert [e.id for e in again.round_examples(0)] == ["a", "b", "c"]  # retired ones too

    early = Pool.open(tmp_path, upto=0)  # what a checkpoint taken after round 0 saw
    assert early.version == 0 and early.ids() == ["a", "b", "c"] and early.weights["a"] == 2.0
    assert early.has_round(2) and early.has_round(5) and not early.has_round(1)
    with pytest.raises(ValueError, match="not applied"):  # would fork the history on disk
        early.commit_round(1, [_ex("z")])
    with pytest.raises(ValueError, match="next committed round"):  # skipping 2
        early.apply_round(3)
    early.apply_round(2)
    assert early.ids() == ["a", "c", "d"]  # "a" retires in round 5
    for k in (3, 5):
        early.apply_round(k)
    assert _snapshot(early) == full
    with pytest.raises(ValueError, match="next committed round"):
        early.apply_round(6)


def test_refusals(tmp_path):
    pool = Pool(tmp_path)
    pool.commit_round(1, [_ex("a"), _ex("b")])
    pool.commit_round(2, [_ex("c")], retired=["a"])
    with pytest.raises(ValueError, match="already in the pool"):
        pool.commit_round(3, [_ex("b")])  # live
    with pytest.raises(ValueError, match="already in the pool"):
        pool.commit_round(3, [_ex("a")])  # retired earlier
    with pytest.raises(ValueError, match="already in the pool"):
        pool.commit_round(3, [_ex("x"), _ex("x")])  # twice in one round
    with pytest.raises(ValueError, match="not after"):
        pool.commit_round(2, [_ex("y")])
    with pytest.raises(ValueError, match="not after"):
        pool.commit_round(0, [_ex("y")])
    with pytest.raises(ValueError, match="not live"):
        pool.commit_round(3, [], retired=["a"])
    with pytest.raises(ValueError, match="weight"):
        pool.commit_round(3, [_ex("y", weight=float("nan"))])
    with pytest.raises(ValueError, match="cap"):
        Pool(tmp_path, cap=-1)
    assert pool.version == 2 and pool.committed_rounds() == [1, 2] and pool.ids() == ["b", "c"]
    assert len(list((tmp_path / "images").glob("*.png"))) == 1  # all share one image; refusals wrote none


def test_two_processes_views_of_one_pool_stay_consistent(tmp_path):
    """Rank 0 commits, another rank follows with apply_round; nobody can fork the history."""
    writer, follower = Pool(tmp_path), Pool(tmp_path)
    writer.commit_round(0, [_ex("a")])
    with pytest.raises(ValueError, match="not applied here"):
        follower.commit_round(0, [_ex("b")])
    with pytest.raises(ValueError, match="not applied here"):
        follower.commit_round(1, [_ex("b")])
    follower.apply_round(0)
    follower.commit_round(1, [_ex("b", (4, 4, 4))])
    writer.apply_round(1)
    assert _snapshot(writer) == _snapshot(follower) == _snapshot(Pool(tmp_path))


def test_cap_evicts_oldest_and_replays_identically(tmp_path):
    pool = Pool(tmp_path, cap=4)
    assert pool.commit_round(0, [_ex(f"r0-{i}") for i in range(3)]) == []
    assert pool.commit_round(1, [_ex(f"r1-{i}") for i in range(3)]) == ["r0-0", "r0-1"]
    assert pool.commit_round(2, [_ex(f"r2-{i}") for i in range(2)], retired=["r1-1"]) == ["r1-1", "r0-2"]
    # one round larger than the cap: its own oldest go too
    evicted = pool.commit_round(3, [_ex(f"r3-{i}") for i in range(6)])
    assert evicted == ["r1-0", "r1-2", "r2-0", "r2-1", "r3-0", "r3-1"]
    assert pool.ids() == ["r3-2", "r3-3", "r3-4", "r3-5"]
    assert _snapshot(Pool(tmp_path, cap=0)) == _snapshot(pool)  # replay follows the files, not today's cap
    mid = Pool(tmp_path, cap=100, upto=2)
    assert mid.ids() == ["r1-0", "r1-2", "r2-0", "r2-1"]
    assert mid.retired == {"r0-0", "r0-1", "r1-1", "r0-2"}


def test_interrupted_commit_leaves_the_pool_as_it_was(tmp_path, monkeypatch):
    pool = Pool(tmp_path)
    pool.commit_round(0, [_ex("a")])
    before = _snapshot(pool)
    real_replace = os.replace

    def fail_on_round_file(src, dst):
        if Path(dst).name.startswith("round_"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_round_file)
    with pytest.raises(OSError, match="disk full"):
        pool.commit_round(1, [_ex("b", (7, 7, 7))], retired=["a"])
    monkeypatch.undo()
    assert _snapshot(pool) == before and not pool.has_round(1) and _no_tmp(tmp_path)
    (tmp_path / ".tmp-crashed-round").write_text('{"round": 1, "added": 9')  # what kill -9 mid-write leaves
    (tmp_path / "images" / ".tmp-crashed-image").write_bytes(b"\x89PNG")
    again = Pool(tmp_path)
    assert _snapshot(again) == before and _no_tmp(tmp_path)
    again.commit_round(1, [_ex("b", (7, 7, 7))], retired=["a"])  # its image is on disk already
    assert again.ids() == ["b"]


def _noise_round(k: int) -> list[Example]:
    """Round ``k`` of the crash test: three noise images (big, slow PNGs widen the write window)."""
    added = []
    for i in range(3):
        image = Image.frombytes("RGB", (160, 160), random.Random(k * 10 + i).randbytes(160 * 160 * 3))
        added.append(Example(f"r{k}-{i}", image, f"q{k}-{i}", str(i), meta={"weight": float(i)}))
    return added


CHILD = """
import sys
from curriculum.pool import Pool
from tests.test_pool import _noise_round

if len(sys.argv) > 3:  # hold still just before round argv[3]'s commit point: the kill lands mid-commit
    import os, time

    real_replace, target = os.replace, f"round_{int(sys.argv[3]):05d}.jsonl"

    def stalling_replace(src, dst):
        if os.path.basename(dst) == target:
            print("stall", flush=True)
            time.sleep(60)
        return real_replace(src, dst)

    os.replace = stalling_replace
pool = Pool(sys.argv[1], cap=int(sys.argv[2]))
k = pool.version + 1
while True:
    pool.commit_round(k, _noise_round(k))
    print(k, flush=True)
    k += 1
"""


def _check_recovered(root: Path, cap: int, reported: list[int], known: list[int]) -> list[int]:
    """Reopen after a kill; assert nothing committed was lost or doubled, return the committed rounds."""
    pool = Pool(root, cap=cap)
    assert _no_tmp(root)
    rounds = pool.committed_rounds()
    assert set(known) | set(reported) <= set(rounds)  # every reported commit survived
    extra = sorted(set(rounds) - set(known) - set(reported))
    assert extra == [] or extra == [max(known + reported) + 1]  # at most the round in flight
    assert rounds == list(range(len(rounds))) and pool.version == rounds[-1]
    on_disk = []
    for k in rounds:  # each round whole, each example once across all files
        lines = (root / f"round_{k:05d}.jsonl").read_text().splitlines()
        assert json.loads(lines[0])["added"] == 3 == len(lines) - 1
        on_disk += [json.loads(line)["id"] for line in lines[1:]]
    expected = [f"r{k}-{i}" for k in rounds for i in range(3)]
    assert on_disk == expected
    assert pool.ids() == expected[-cap:] and pool.retired == set(expected[:-cap])
    for ex in pool.examples:
        k, i = map(int, ex.id[1:].split("-"))
        assert image_hash(ex.image) == image_hash(_noise_round(k)[i].image)
        assert pool.weights[ex.id] == float(i) and ex.question == f"q{k}-{i}"
    nxt = pool.version + 1  # the parent can carry on from the recovered state
    pool.commit_round(nxt, _noise_round(nxt))
    return rounds + [nxt]


@pytest.mark.slow
def test_kill9_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root, cap = tmp_path / "pool", 7
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    delays = [0.0, 0.002, 0.005, "stall", *(rng.uniform(0, 0.04) for _ in range(6)), 0.08]  # a round: ~25 ms
    known: list[int] = []
    for delay in delays:
        stall = [str(known[-1] + 2)] if delay == "stall" else []  # its second round stops at the rename
        child = subprocess.Popen(
            [sys.executable, str(script), str(root), str(cap), *stall], stdout=subprocess.PIPE, env=env
        )
        try:
            out = [child.stdout.readline()]  # the child is in its commit loop
            assert out[0].strip().isdigit(), "child died before committing a round"
            if stall:
                out.append(child.stdout.readline())
                assert out[-1] == b"stall\n"  # images and the round's temp file are written, not renamed
                in_flight = set(root.glob(".tmp-*"))
                assert in_flight and Pool(root).version == int(stall[0]) - 1
                assert set(root.glob(".tmp-*")) == in_flight  # opening spares a commit in progress
            else:
                time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            out.append(child.communicate(timeout=10)[0])
            assert child.returncode == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        reported = [int(x) for x in b"".join(out).split() if x.isdigit()]
        known = _check_recovered(root, cap, reported, known)
        if stall:
            assert known[-2] == int(stall[0]) - 1  # the stalled round was not committed
    assert len(known) >= 20


def test_outcome_plan_and_the_hook_before_the_commit_point(tmp_path):
    pool = Pool(tmp_path, cap=2)
    pool.commit_round(1, [_ex("a"), _ex("b", (1, 2, 3))])
    assert pool.plan_round([_ex("c", (4, 4, 4))], ["a"]) == ["a"]
    assert pool.plan_round([_ex("c", (4, 4, 4)), _ex("d", (5, 5, 5))]) == ["a", "b"]  # the cap's evictions
    with pytest.raises(ValueError, match="not live"):
        pool.plan_round([], ["zz"])
    with pytest.raises(ValueError, match="already in the pool"):
        pool.plan_round([_ex("a")])
    assert pool.ids() == ["a", "b"] and pool.version == 1  # planning changes nothing

    seen = []

    def hook() -> None:  # everything is durable under temporary names; the round is not committed yet
        seen.append(
            (pool.has_round(2), len(list(tmp_path.glob(".tmp-*"))), len(list(tmp_path.glob("images/*.png"))))
        )

    outcome = {"status": "ok", "failures": ["p1", "p2"], "metrics": {"curriculum/kept": 1}}
    assert pool.commit_round(2, [_ex("c", (4, 4, 4))], ["a"], outcome=outcome, before_commit=hook) == ["a"]
    assert seen == [(False, 1, 3)]
    assert pool.round_outcome(2) == outcome and pool.round_outcome(1) is None
    again = Pool(tmp_path, cap=2)
    assert _snapshot(again) == _snapshot(pool) and again.round_outcome(2) == outcome

    def broken() -> None:
        raise OSError("record could not be written")

    with pytest.raises(OSError, match="record"):  # no record, no round
        pool.commit_round(3, [_ex("e", (6, 6, 6))], outcome={"status": "ok"}, before_commit=broken)
    assert not pool.has_round(3) and pool.version == 2 and _no_tmp(tmp_path) and pool.ids() == ["b", "c"]
    pool.commit_round(3, [_ex("e", (6, 6, 6))])
    assert pool.ids() == ["c", "e"] and pool.round_outcome(3) is None
