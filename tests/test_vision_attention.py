"""Grouped vision attention (models/vision_attention.py): the same outputs and gradients as the
per-picture loop of transformers' SDPA path, on both Qwen-VL architectures, with pictures of
several sizes in one batch."""

from types import MethodType

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models import load_model
from models.vision_attention import (
    _grouped_forward,
    _rotary_of,
    attend_segments,
    group_vision_attention,
    ungroup_vision_attention,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _per_segment(q, k, v, cu, scale):
    outs = []
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        parts = [t[start:end].transpose(0, 1)[None] for t in (q, k, v)]
        outs.append(F.scaled_dot_product_attention(*parts, scale=scale)[0].transpose(0, 1))
    return torch.cat(outs)


@pytest.mark.parametrize("lengths", [[4, 4, 4], [3, 5, 3, 2, 5], [7]])
def test_segments_attend_as_one_call_per_segment_does(lengths):
    torch.manual_seed(0)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    q, k, v = (torch.randn(cu[-1], 2, 8, requires_grad=True) for _ in range(3))
    got = attend_segments(q, k, v, cu, 0.3)
    want = _per_segment(q, k, v, cu, 0.3)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got.square().sum(), (q, k, v))
    torch.testing.assert_close(grads, torch.autograd.grad(want.square().sum(), (q, k, v)))


def test_boundaries_that_do_not_cover_the_sequence_are_refused():
    q = torch.randn(6, 1, 4)
    with pytest.raises(ValueError, match="cu_seqlens"):
        attend_segments(q, q, q, torch.tensor([0, 4]), 1.0)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_grouped_tower_matches_the_loop_in_outputs_and_gradients(arch, arch_checkpoints):
    model, processor = load_model(arch_checkpoints[arch], device="cpu", dtype="float32")
    assert sum("forward" in vars(m) for m in model.modules()) == model.config.vision_config.depth
    # two sizes of picture: segments of two lengths in one call (and windows, on Qwen2.5-VL)
    images = [Image.new("RGB", (64, 64), (i * 40, 90, 200 - i * 30)) for i in range(3)]
    images.append(Image.effect_noise((128, 96), 60).convert("RGB"))
    pixels = processor.image_processor(images=images, return_tensors="pt")
    tower = model.model.visual

    def run():
        tower.zero_grad()
        out = tower(pixels["pixel_values"], grid_thw=pixels["image_grid_thw"])
        out = getattr(out, "pooler_output", out)
        out = torch.cat(list(out)) if isinstance(out, (list, tuple)) else out
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in tower.parameters() if p.grad is not None]

    grouped, grouped_grads = run()
    assert ungroup_vision_attention(model) == model.config.vision_config.depth
    native, native_grads = run()
    torch.testing.assert_close(grouped, native, rtol=1e-5, atol=1e-6)
    assert len(grouped_grads) == len(native_grads) > 0
    for a, b in zip(grouped_grads, native_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_eager_attention_keeps_its_own_forward(arch_checkpoints):
    model, _ = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu", attn_implementation="eager")
    assert group_vision_attention(model) == 0
    assert not any("forward" in vars(m) for m in model.modules())


def test_a_call_the_grouped_forward_does_not_know_goes_to_the_class_forward(arch_checkpoints):
    """Older transformers passed ``rotary_pos_emb`` before ``position_embeddings``: a positional
    argument, or no position embeddings, is handed to transformers' own forward unchanged."""
    model, _ = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu", dtype="float32")
    attn = next(m for m in model.modules() if "forward" in vars(m))
    seen = []
    native = type(attn).forward
    type(attn).forward = lambda self, *a, **kw: seen.append((a, kw)) or "native"
    try:
        attn.forward = MethodType(_grouped_forward(_rotary_of(attn), type(attn).forward), attn)
        hidden, cu = torch.zeros(4, attn.qkv.in_features), torch.tensor([0, 4])
        assert attn(hidden, cu, "rotary") == "native"
        assert attn(hidden, cu) == "native"
        assert len(seen) == 2
    finally:
        type(attn).forward = native
