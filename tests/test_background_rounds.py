"""Async rounds run whole in the worker thread on a frozen copy of the model
(``curriculum.snapshot``): the same round as a sync one, the live policy never asked, the pool
changed only at the injection step, a checkpoint in flight resumable, a failure skipped."""

import json
import threading

import torch

from curriculum.engine import Curriculum
from tests.test_curriculum import ScriptedPolicy
from train.config import CurriculumConfig


class SnapshotPolicy(ScriptedPolicy):
    """A live policy whose snapshots are scripted policies that note the threads that ask them."""

    def __init__(self, knows=("colour", "shape"), broken=False):
        super().__init__(knows)
        self.copies, self.broken = [], broken

    def snapshot(self):
        copy = ScriptedPolicy(self.knows)
        copy.threads = set()
        answer = copy.answer

        def noted(examples):
            copy.threads.add(threading.current_thread().name)
            if self.broken:
                raise RuntimeError("the copy could not answer")
            return answer(examples)

        copy.answer = noted
        self.copies.append(copy)
        return copy


def _curriculum(tmp_path, world, fresh=True, **overrides):
    cfg = CurriculumConfig(enabled=True, every=10, budget=48, max_failures=32, pool_cap=500, **overrides)
    return Curriculum(cfg, tmp_path / "curriculum", world["train"], world["probe"], {"test": world["test"]}, 32,
                      seed=0, fresh=fresh)  # fmt: skip


def _ids(cur):
    return [ex.id for ex in cur.pool.examples]


def test_a_background_round_is_the_sync_round_applied_at_its_injection(tmp_path, world_small):
    sync = _curriculum(tmp_path / "sync", world_small)
    sync.update(10, ScriptedPolicy())
    cur = _curriculum(tmp_path / "bg", world_small, mode="async", max_staleness=3)
    live = SnapshotPolicy()
    assert cur.update(10, live) is None
    cur._pending.future.result()  # the worker committed round 1 to disk ...
    assert cur.store.on_disk(1) and cur.pool.version < 1 and len(cur.pool) == 0  # ... the pool waits
    assert cur.poll(12, live) is None and len(cur.pool) == 0
    result = cur.poll(13, live)
    assert result.status == "ok" and result.metrics["curriculum/kept"] == len(cur.pool) > 0
    assert _ids(cur) == _ids(sync) and cur.pool.version == 1
    assert live.calls == 0 and len(live.copies) == 1  # probe and student check asked the copy ...
    assert live.copies[0].threads == {"curriculum_0"}  # ... in the worker thread only
    record = json.loads((tmp_path / "bg" / "curriculum" / "round_00001" / "round.json").read_text())
    assert record["inject_step"] == 13 and {"snapshot_s", "probe_s", "student_s"} <= set(record["timings"])
    for cur_ in (sync, cur):
        cur_.close()


def test_a_checkpoint_with_a_round_in_flight_resumes_into_the_same_pool(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small, mode="async", max_staleness=3)
    live = SnapshotPolicy()
    cur.update(10, live)
    state = cur.state_dict()  # waits for the worker's commit
    cur.poll(13, live)
    want = _ids(cur)
    cur.close()
    resumed = _curriculum(tmp_path, world_small, mode="async", max_staleness=3, fresh=False)
    resumed.load_state_dict(state)
    other = SnapshotPolicy()
    assert resumed.poll(11, other) is None and resumed.poll(12, other) is None
    result = resumed.poll(13, other)
    assert result.status == "restored" and _ids(resumed) == want and other.copies == []
    resumed.close()


def test_a_copy_that_cannot_answer_skips_the_round(tmp_path, world_small):
    cur = _curriculum(tmp_path, world_small, mode="async", max_staleness=3)
    live = SnapshotPolicy(broken=True)
    assert cur.update(10, live) is None
    result = cur.poll(13, live)
    assert result.status == "failed" and "could not answer" in result.error and len(cur.pool) == 0
    assert cur.update(20, SnapshotPolicy()) is None and cur.poll(23, live).status == "ok"  # the next one runs
    cur.close()


def test_sampled_rounds_and_snapshot_off_keep_the_model_work_in_the_loop(tmp_path, world_small):
    for name, extra in (("off", {"snapshot": False}), ("band", {"student_check": "band"})):
        cur = _curriculum(tmp_path / name, world_small, mode="async", max_staleness=3, **extra)
        live = SnapshotPolicy()
        cur.update(10, live)
        assert live.copies == [] and live.calls == 1  # the probe, asked in the loop
        cur.close()


def test_the_model_policy_snapshot_answers_alike_from_its_own_weights(tiny_qwen, world_small):
    from accelerate import Accelerator

    from models import load_model
    from models.load import compile_blocks
    from train.collate import VLMCollator
    from train.evaluate import ModelPolicy

    model, processor = load_model(str(tiny_qwen), device="cpu")
    policy = ModelPolicy(model, VLMCollator(processor), Accelerator(cpu=True), 8, 3)
    items = world_small["probe"][:8]
    want = policy.answer(items)
    next(model.parameters()).grad = torch.ones_like(next(model.parameters()))
    compile_blocks(model)
    snap = policy.snapshot()
    assert snap.answer(items) == want
    assert not any("_compiled_call_impl" in m.__dict__ for m in snap.model.modules())  # eager in the copy
    live = dict(model.named_parameters())
    for name, p in snap.model.named_parameters():
        assert not p.requires_grad and p.grad is None and p.data_ptr() != live[name].data_ptr()
        assert torch.equal(p, live[name])
    assert model.training or not snap.model.training
