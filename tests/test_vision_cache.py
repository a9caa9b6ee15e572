"""The frozen vision tower's per-picture cache (models/vision_cache.py, ``model.vision_cache_mib``)."""

import copy
import json

import pytest
import torch

from models import load_model
from models.load import find_vision_tower
from models.vision_cache import FeatureStore, cache_vision_features, feature_store
from tests.conftest import tiny_run_overrides
from train.collate import VLMCollator
from train.config import ConfigError, load_config


def _batches(processor, world):
    """Two batches that share half their pictures, so the second meets some cached ones."""
    collate = VLMCollator(processor)
    train = world["train"]
    return [collate(train[:8]), collate(train[4:8] + train[8:12])]


def _step(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.loss.detach(), grads


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_cached_tower_gives_the_same_logits_and_gradients(arch, arch_checkpoints, arch_world):
    plain, processor = load_model(arch_checkpoints[arch], device="cpu", freeze_vision=True)
    cached, _ = load_model(arch_checkpoints[arch], device="cpu", freeze_vision=True, vision_cache_mib=16)
    assert cached.state_dict().keys() == plain.state_dict().keys()  # checkpoints unchanged
    batches = _batches(processor, arch_world)
    for batch in [*batches, batches[0]]:  # all new, half cached, all cached
        (want_logits, want_loss, want_grads), (logits, loss, grads) = (
            _step(plain, batch),
            _step(cached, batch),
        )
        torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-6)
        assert grads.keys() == want_grads.keys() and any("merger" in n for n in grads)  # the projector trains
        for name in grads:
            torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-4, atol=1e-6)
    stats = feature_store(cached).stats()
    assert (stats["misses"], stats["hits"], stats["pictures"]) == (12, 12, 12)
    assert stats["hit_rate"] == pytest.approx(0.5) and stats["mib"] > 0


def test_a_copy_of_the_model_shares_the_store_and_answers_alike(arch_checkpoints, arch_world):
    model, processor = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu", freeze_vision=True,
                                  vision_cache_mib=16)  # fmt: skip
    batch = _batches(processor, arch_world)[0]
    with torch.no_grad():
        first = model(**batch).logits
        twin = copy.deepcopy(model)  # an async round's snapshot
        again = twin(**batch).logits
    assert feature_store(twin) is feature_store(model) and feature_store(model).stats()["hits"] == 8
    torch.testing.assert_close(again, first)


def test_trainable_blocks_run_the_tower_uncached(arch_checkpoints, arch_world):
    model, processor = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu")  # nothing frozen
    store = cache_vision_features(find_vision_tower(model)[1], 16)
    _step(model, _batches(processor, arch_world)[0])
    assert store.stats()["hits"] + store.stats()["misses"] == 0 and len(store) == 0


def test_the_store_keeps_the_most_recent_pictures_within_its_cap():
    store = FeatureStore(max_bytes=3 * 400)
    for i in range(5):
        store.put(bytes([i]), torch.zeros(100))  # 400 bytes each
    assert len(store) == 3 and store.bytes == 1200 and store.stats()["evicted"] == 2
    assert store.get(bytes([0])) is None and store.get(bytes([4])) is not None
    store.put(b"big", torch.zeros(1000))  # larger than the whole cap: not kept
    assert store.get(b"big") is None and len(store) == 3


def test_a_tower_without_a_merger_is_refused_by_name(arch_checkpoints):
    with pytest.raises(ValueError, match="model.vision_cache_mib"):
        load_model(arch_checkpoints["llava"], device="cpu", freeze_vision=True, vision_cache_mib=8)


def test_config_refuses_a_cache_for_a_tower_that_trains():
    with pytest.raises(ConfigError, match="vision_cache_mib"):
        load_config(None, ["model.vision_cache_mib=64"])
    with pytest.raises(ConfigError, match="vision_cache_mib"):
        load_config(None, ["model.vision_cache_mib=-1", "model.freeze_vision=true"])
    assert (
        load_config(None, ["model.vision_cache_mib=64", "model.lora.enabled=true"]).model.vision_cache_mib
        == 64
    )


def test_a_run_with_the_cache_trains_as_one_without(tmp_path, tiny_qwen):
    from train.loop import run

    losses = {}
    for name, mib in (("plain", 0), ("cached", 32)):
        overrides = [f"run.name={name}", *tiny_run_overrides(tmp_path, tiny_qwen), "model.freeze_vision=true",
                     f"model.vision_cache_mib={mib}", "data.world.train_size=16", "train.steps=6"]  # fmt: skip
        run(load_config(None, overrides))
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["train/loss"] for r in rows if "train/loss" in r]
        hits = [r["train/vision_cache_hit_rate"] for r in rows if "train/vision_cache_hit_rate" in r]
        # 54 test pictures at the start, then batches of 8 from 16 train pictures: hits from step 3
        assert hits == pytest.approx([0, 0, 4 / 39, 8 / 43, 12 / 47, 16 / 51]) if mib else not hits
    assert losses["cached"] == pytest.approx(losses["plain"], rel=1e-4)
