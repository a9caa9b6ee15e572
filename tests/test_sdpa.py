"""``model.sdpa_backends``: the attention kernels PyTorch may pick, set for the process, with the
same outputs; a bad name is refused with the field named."""

import json

import pytest
import torch
import torch.nn.functional as F

from models.sdpa import allow_sdpa_backends, allowed_sdpa_backends
from tests.helpers import benchmark
from train.config import ConfigError, load_config


@pytest.fixture
def restore_backends():
    before = allowed_sdpa_backends()
    yield
    allow_sdpa_backends(before)


def _attention_kernels(q: torch.Tensor) -> tuple[torch.Tensor, set[str]]:
    with torch.profiler.profile() as prof:
        out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    return out, {e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")}


def test_allowing_only_the_plain_kernel_changes_the_kernel_not_the_result(restore_backends):
    q = torch.randn(2, 4, 10, 16, generator=torch.Generator().manual_seed(0))
    allow_sdpa_backends(["flash", "math"])
    fused, fused_ops = _attention_kernels(q)
    before = allow_sdpa_backends(["math"])
    assert set(before) == {"flash", "math"} and allowed_sdpa_backends() == ["math"]
    plain, plain_ops = _attention_kernels(q)
    assert fused_ops == {"aten::_scaled_dot_product_flash_attention_for_cpu"}
    assert plain_ops == {"aten::_scaled_dot_product_attention_math"}
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


def test_unknown_or_no_backends_are_refused(restore_backends):
    with pytest.raises(ValueError, match=r"unknown \['fast'\]"):
        allow_sdpa_backends(["flash", "fast"])
    with pytest.raises(ValueError, match="at least one"):
        allow_sdpa_backends([])
    assert load_config(None, ["model.sdpa_backends=[flash,efficient,math]"]).model.sdpa_backends == [
        "flash", "efficient", "math"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.sdpa_backends.*not \['fast'\]"):
        load_config(None, ["model.sdpa_backends=[fast]"])


def test_a_variant_keeps_a_list_value_whole():
    name, overrides = benchmark("world_throughput").parse_variant(
        "nocudnn:model.sdpa_backends=[flash,efficient,math],train.data_workers=4"
    )
    assert name == "nocudnn" and overrides == [
        "model.sdpa_backends=[flash,efficient,math]",
        "train.data_workers=4",
    ]


def test_the_step_profile_records_the_kernels_it_allowed(tmp_path, arch_checkpoints, restore_backends):
    out = tmp_path / "profile.json"
    argv = ["--model", arch_checkpoints["qwen2_5_vl"], "--device", "cpu", "--dtype", "float32", "--batch-size", "2",
            "--steps", "1", "--warmup", "0", "--sdpa-backends", "math", "--top", "3", "--out", str(out)]  # fmt: skip
    assert benchmark("step_profile").main(argv) == 0
    assert json.loads(out.read_text())["sdpa_backends"] == ["math"]  # read back from torch's switches
