"""Packed SFT batches give the loss and gradients of the padded ones, on every architecture that
packs; the others are refused in one line naming them."""

from __future__ import annotations

import pickle

import pytest
import torch

from models.tiny import ARCHS
from tests.test_conversations import conversation
from train.collate import VLMCollator
from train.packing import PACKABLE, Packer, RopePositions

pytestmark = pytest.mark.usefixtures("one_thread")


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_batches_train_as_padded_ones(arch, arch_checkpoints, arch_world):
    from models import load_model

    model, processor = load_model(arch_checkpoints[arch], device="cpu")
    collator = VLMCollator(processor)
    if arch not in PACKABLE:
        with pytest.raises(ValueError, match=rf"^train.packing: {arch} cannot be packed") as err:
            Packer(model, collator.tokenizer.pad_token_id)
        assert "\n" not in str(err.value)
        return
    model.eval()  # no dropout: the two passes see the same function
    examples = [*arch_world["train"][:3], conversation(arch_world), arch_world["train"][7]]
    batch = collator(examples)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) > 1  # there is padding to remove
    want_loss, want_grads = _loss_and_grads(model, batch)
    for budget in (0, max(lengths) + 5):
        packer = pickle.loads(
            pickle.dumps(Packer(model, collator.tokenizer.pad_token_id, budget))
        )  # as workers get it
        packed = packer(batch)
        rows = packer.rows(lengths)
        assert packed["input_ids"].shape[0] == len(rows) and (budget == 0) == (len(rows) == 1)
        assert packed["input_ids"].numel() < batch["input_ids"].numel()
        loss, grads = _loss_and_grads(model, packed)
        torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
        assert grads.keys() == want_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_positions_computed_with_the_batch_train_as_the_forward_computes_them(
    arch, arch_checkpoints, arch_world
):
    from models import load_model

    model, processor = load_model(arch_checkpoints[arch], device="cpu")
    rope = RopePositions.of(model)
    if arch not in ("qwen2_vl", "qwen2_5_vl"):  # no M-RoPE: the model counts positions itself
        assert rope is None
        return
    pickled = pickle.dumps(rope)  # as data worker processes get it: the config, not the weights
    assert len(pickled) < 20_000 < 4 * sum(p.numel() for p in model.parameters())
    rope = pickle.loads(pickled)
    model.eval()
    batch = VLMCollator(processor)([*arch_world["train"][:3], conversation(arch_world)])
    with_positions = rope(batch)
    assert (
        with_positions["position_ids"].shape == (3, *batch["input_ids"].shape) and "position_ids" not in batch
    )
    want_loss, want_grads = _loss_and_grads(model, batch)
    loss, grads = _loss_and_grads(model, with_positions)
    assert torch.equal(loss, want_loss) and grads.keys() == want_grads.keys()
    for name, grad in grads.items():
        assert torch.equal(grad, want_grads[name]), name


def test_positions_restart_in_every_sample_and_rows_keep_to_the_budget(arch_checkpoints, arch_world):
    from models import load_model

    model, processor = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu")
    collator = VLMCollator(processor)
    batch = collator(arch_world["train"][:4])
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    packer = Packer(model, collator.tokenizer.pad_token_id, lengths[0] + lengths[1])
    assert packer.rows(lengths)[0] == [0, 1]
    assert all(sum(lengths[i] for i in row) <= packer.max_tokens for row in packer.rows(lengths))
    packed = packer(batch)
    text = packed["position_ids"][0, 0]
    assert text[lengths[0]] == 0 and text[lengths[0] - 1] == lengths[0] - 1
    alone = collator(arch_world["train"][1:2])  # the second sample's M-RoPE positions, computed alone
    rope, _ = packer.rope.rope_index(alone["input_ids"], mm_token_type_ids=alone["mm_token_type_ids"],
                                image_grid_thw=alone["image_grid_thw"], attention_mask=alone["attention_mask"])  # fmt: skip
    assert torch.equal(
        packed["position_ids"][1:, 0, lengths[0] : lengths[0] + lengths[1]], rope[:, 0, : lengths[1]]
    )
    assert Packer(model, 0, 1).rows([3, 2, 4]) == [[0], [1], [2]]  # longer than the budget: a row each


def test_a_packed_run_trains_as_a_padded_one(tmp_path, tiny_qwen, monkeypatch):
    import json

    from tests.conftest import tiny_run_overrides
    from train.config import load_config
    from train.loop import run

    rows = []
    pack = Packer.__call__

    def counted(self, batch):
        out = pack(self, batch)
        rows.append(out["input_ids"].shape[0])
        return out

    monkeypatch.setattr(Packer, "__call__", counted)
    losses = {}
    for name, extra in (("padded", []), ("packed", ["train.packing=true", "train.pack_tokens=160"])):
        cfg = load_config(None, [f"run.name={name}", *tiny_run_overrides(tmp_path, tiny_qwen), "train.steps=4",
                                 "eval.at_start=false", "eval.max_examples=8", *extra])  # fmt: skip
        run(cfg)
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [(m["train/loss"], m["train/tokens_per_s"] > 0) for m in lines if "train/loss" in m]
    assert len(losses["packed"]) == 4 and len(rows) == 4 and max(rows) > 1  # 8 samples in 2 or more rows
    for (got, _), (want, _) in zip(losses["packed"], losses["padded"], strict=True):
        assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["train.mode=grpo", "train.packing=true"], "train.packing"),
        (["train.pack_tokens=64"], "train.pack_tokens"),
        (["train.packing=true", "train.pack_tokens=-1"], "train.pack_tokens"),
    ],
)
def test_packing_settings_that_cannot_work_are_refused(overrides, field):
    from train.config import load_config

    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(None, overrides)
