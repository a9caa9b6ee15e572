"""Model FLOPs and utilisation: the count equals a hand count from the config of a tiny
Qwen2.5-VL, the peak comes from the config, the environment or the GPU's name (never guessed), and
``train/mfu`` reaches metrics.jsonl when a peak is given."""

import json

import pytest
import torch

from train.flops import PEAK_ENV, FlopCounter, peak_flops
from train.loop import window_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_count(config, lengths, images, image_tokens, head, vision_trains):
    """Forward and backward FLOPs of a full fine-tune, from the config's sizes alone."""
    t, v = config.text_config, config.vision_config
    d, hd = t.hidden_size, t.hidden_size // t.num_attention_heads
    q, kv = t.num_attention_heads * hd, t.num_key_value_heads * hd
    lm = t.num_hidden_layers * (d * q + 2 * d * kv + q * d + 3 * d * t.intermediate_size)
    lm_head = t.vocab_size * d
    vd, p, ts = v.hidden_size, v.patch_size, v.temporal_patch_size
    patch_embed = vd * v.in_channels * ts * p * p
    block = vd * 3 * vd + vd * vd + 3 * vd * v.intermediate_size  # qkv, proj, gated MLP
    vision = patch_embed + v.depth * block
    merged = vd * v.spatial_merge_size**2
    merger = merged * merged + merged * v.out_hidden_size
    pairs = sum(n * (n + 1) // 2 for n in lengths)
    attention = 4 * q * t.num_hidden_layers * pairs
    window = (v.window_size // p) ** 2
    full = len(v.fullatt_block_indexes)
    vision_attention = 4 * vd * sum(full * n * n + (v.depth - full) * n * min(n, window) for n in images)
    tokens, patches = sum(lengths), sum(images)
    text = 6 * (lm * tokens + lm_head * head + merger * image_tokens) + 3 * attention
    if vision_trains:
        return text + 6 * vision * patches + 3 * vision_attention
    return text + 2 * vision * patches + vision_attention


@pytest.mark.parametrize("freeze", [False, True])
def test_the_count_equals_a_hand_count_from_the_config(freeze, arch_checkpoints):
    from models import load_model

    model, _ = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu", freeze_vision=freeze)
    config = model.config
    image = config.image_token_id
    # Two rows, right-padded: 20 and 13 tokens; 16 and 4 image tokens from 64- and 16-patch images.
    ids = torch.full((2, 20), 7)
    ids[0, 2:18] = image
    ids[1, 1:5] = image
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    inputs = {
        "input_ids": ids,
        "attention_mask": mask,
        "image_grid_thw": torch.tensor([[1, 8, 8], [1, 4, 4]]),
    }
    counter = FlopCounter(model)
    got = counter.flops(counter.batch(inputs, head=9), train=True)
    assert got == _hand_count(config, [20, 13], [64, 16], 20, 9, vision_trains=not freeze)
    forward = counter.flops(counter.batch(inputs, head=9), train=False)
    assert 2.9 < got / forward <= 3.0 if not freeze else 2.0 < got / forward < 3.0


def test_the_peak_is_configured_or_known_never_guessed(monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert peak_flops("cpu") is None  # no figure for a CPU: no utilisation
    assert peak_flops("cpu", 5e12) == 5e12
    monkeypatch.setenv(PEAK_ENV, "2e12")
    assert peak_flops("cpu") == 2e12 and peak_flops("cpu", 5e12) == 5e12
    monkeypatch.setenv(PEAK_ENV, "fast")
    with pytest.raises(ValueError, match=PEAK_ENV):
        peak_flops("cpu")
    window = {"model_flops": 6e12, "samples": 4.0}
    assert "train/mfu" not in window_metrics(window, {"model_flops": 2, "samples": 2}, 2.0, 1)
    out = window_metrics(window, {"model_flops": 2, "samples": 2}, 2.0, 1, peak=1e13)
    assert out["train/model_tflops_per_s"] == 3.0 and out["train/mfu"] == pytest.approx(0.3)


@pytest.mark.parametrize("packing", [False, True])
def test_mfu_reaches_the_metrics_when_a_peak_is_given(tmp_path, tiny_qwen, packing):
    from tests.conftest import tiny_run_overrides
    from train.config import load_config
    from train.loop import run

    overrides = [*tiny_run_overrides(tmp_path, tiny_qwen), "run.name=mfu", "train.steps=2",
                 "train.peak_flops=1e12", "eval.at_start=false", "eval.max_examples=4",
                 f"train.packing={str(packing).lower()}"]  # fmt: skip
    run(load_config(None, overrides))
    metrics = [json.loads(x) for x in (tmp_path / "mfu" / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in metrics if "train/loss" in m]
    assert len(train) == 2
    for m in train:
        assert 0 < m["train/mfu"] == pytest.approx(m["train/model_tflops_per_s"] * 1e12 / 1e12)


def test_rollouts_count_each_prompt_once_and_each_decoding_step_against_its_cache(arch_checkpoints):
    from models import load_model
    from train.flops import Work, rollout_work, update_work

    model, _ = load_model(arch_checkpoints["llava"], device="cpu")
    counter = FlopCounter(model)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # prompts of 5 and 3 tokens, left-padded
    inputs = {"input_ids": torch.full((2, 5), 7), "attention_mask": mask}
    ids = torch.ones(4, 4, dtype=torch.long)  # two completions of four tokens per prompt
    # Prompt passes: 15 + 6 pairs; three decoding steps of four rows after contexts 5, 5, 3, 3.
    assert rollout_work(counter, inputs, ids) == Work(8 + 12, 21 + 16 * 3 + 4 * 6, 2 + 12, 0, ())
    done = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    shared = update_work(counter, inputs, ids, done, shared=True, chunk=8)
    assert shared == Work(8 + 12, 21 + 16 * 3 + 4 * 6, 2 + 7 + 4, 0, ())  # 7 scored after the first
    repeated = update_work(counter, inputs, ids, done, shared=False, chunk=0)  # logits at every position
    assert repeated == Work(16 + 16, 2 * (15 + 15 + 6 + 6) // 2 + 16 * 4 + 4 * 10, 4 * 5, 0, ())


def test_sample_lengths_of_padded_and_packed_batches():
    from train.flops import sample_lengths

    padded = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}
    assert sample_lengths(padded) == [3, 4]
    packed = {"position_ids": torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0, 1]])}  # three samples in one row
    assert sample_lengths(packed) == [3, 4, 2]
    mrope = {
        "position_ids": torch.stack([packed["position_ids"], *[torch.zeros(1, 9, dtype=torch.long)] * 3])
    }
    assert sample_lengths(mrope) == [3, 4, 2]  # (4, rows, tokens): the 1D positions mark the samples
