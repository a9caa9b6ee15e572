"""Batches built ahead in the background are the batches built on demand: across micro-batches,
pool changes (curriculum rounds), a checkpoint's state and a resume, and in a whole training run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from curriculum.mixer import Mixer
from tests.conftest import tiny_run_overrides
from train.collate import VLMCollator
from train.config import load_config
from train.loop import run
from train.packing import RopePositions
from train.prefetch import BatchSource


def _walk(source: BatchSource, world, restore_at: int | None = None) -> list:
    """What a loop of 6 steps of 2 micro-batches sees: a new pool after step 1 and step 3, the
    stream's state read after step 2 and, with ``restore_at``, a new source resumed from it."""
    seen, saved, pool = [], None, None
    for step in range(6):
        if restore_at is not None and step == restore_at:
            fresh = BatchSource(
                Mixer(world["train"], 0, lambda s: 0.5), source.collator, 2, source.background,
                transform=source.transform, workers=source.workers,
            )  # fmt: skip
            fresh.load_state_dict(saved)
            fresh.set_pool(*pool)
            source.close()
            source = fresh
        for _ in range(2):
            built = source.next_collated(3, step)
            seen.append((step, built.samples, built.from_pool, built.batch, source.epoch))
        if step in (1, 3):
            pool = (world["probe"][step * 4 : step * 4 + 8], [1.0] * 8)
            source.set_pool(*pool)
        if step == 2:
            saved = source.state_dict()
    seen.append(source.next_collated(5, 9).batch)  # a request it did not predict
    source.close()
    if source.background and restore_at is None:
        # the first batch, the first after each of two pools and the state read, and the last
        assert source.on_demand == 5
    return seen


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        x, y = (x, y) if isinstance(x, tuple) else ((x,), (y,))
        for u, v in zip(x, y, strict=True):
            if isinstance(u, dict):
                assert u.keys() == v.keys() and all(torch.equal(u[k], v[k]) for k in u)
            else:
                assert u == v


def test_batches_built_ahead_are_the_batches_built_on_demand(tiny_qwen, world_small):
    from models import load_model

    model, processor = load_model(str(tiny_qwen), device="cpu")
    collator, rope = VLMCollator(processor), RopePositions.of(model)

    def source(background, workers=0):
        mixer = Mixer(world_small["train"], 0, lambda s: 0.5)
        return BatchSource(mixer, collator, 2, background, transform=rope, workers=workers)

    on_demand = _walk(source(False), world_small)
    assert sum(x[2] for x in on_demand[:-1]) > 0  # the pool was drawn from
    assert on_demand[0][3]["position_ids"].shape[0] == 3  # the M-RoPE positions came with it
    _same(_walk(source(True), world_small), on_demand)
    _same(_walk(source(True), world_small, restore_at=3), on_demand)
    _same(_walk(source(False), world_small, restore_at=3), on_demand)
    # collated, and given their positions, in two worker processes, four micro-batches in flight
    _same(_walk(source(False, workers=2), world_small), on_demand)


def test_a_run_with_batches_built_ahead_trains_as_one_without(tmp_path, tiny_qwen):
    """Also when resumed from a checkpoint written with a batch built ahead, across a round."""
    losses = {}
    runs = (("always", "always"), ("never", "never"), ("resumed", "always"), ("workers", "auto"))
    for name, prefetch in runs:
        extra = ["train.data_workers=2"] if name == "workers" else []
        if name == "resumed":  # the run "always" as it stood at its checkpoint of step 4
            shutil.copytree(tmp_path / "always", tmp_path / name)
            (tmp_path / name / "metrics.jsonl").unlink()
            extra = [f"train.resume={tmp_path / name / 'checkpoints' / 'step_00000004'}"]
        cfg = load_config(None, [f"run.name={name}", *tiny_run_overrides(tmp_path, tiny_qwen),
                                 "train.steps=7", "train.grad_accum=2", "train.batch_size=4", "eval.at_start=false",
                                 "eval.max_examples=8", f"train.prefetch={prefetch}",
                                 "curriculum.enabled=true", "curriculum.every=3", "curriculum.budget=16",
                                 "curriculum.mix.ratio=0.5", "train.save_every=2", "train.keep_checkpoints=4",
                                 *extra])  # fmt: skip
        run(cfg)
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [(m["step"], m["train/loss"], m["train/pool_fraction"], m["train/epoch"])
                        for m in lines if "train/loss" in m]  # fmt: skip
    assert any(pool > 0 for _, _, pool, _ in losses["never"])  # a round's pool reached the stream
    assert len(losses["always"]) == 7
    assert len(losses["workers"]) == 7
    assert [m[0] for m in losses["resumed"]] == [5, 6, 7]
    for got, want in zip(
        losses["always"] + losses["resumed"] + losses["workers"],
        losses["never"] + losses["never"][4:] + losses["never"],
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.data_workers=-1"],
        ["train.data_workers=2", "train.mode=grpo"],
        ["train.data_workers=2", "train.prefetch=never"],
    ],
)
def test_worker_settings_that_cannot_work_are_refused(overrides):
    with pytest.raises(ValueError, match=r"^train\.data_workers "):
        load_config(None, overrides)
