"""The speed benchmarks run end to end on CPU at toy sizes: benchmarks/generation.py answers every
item every way (lessonloop's decoder with batched generate's answers), benchmarks/loss_memory.py
finds the hidden-state losses lighter than the full logits with the same numbers."""

import json

import pytest

from tests.helpers import benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_generation_benchmark_times_each_way_and_checks_the_answers_agree(tmp_path, arch_checkpoints):
    out = tmp_path / "gen.json"
    argv = ["--model", arch_checkpoints["llava"], "--device", "cpu", "--items", "6", "--batch-size", "4",
            "--one-at-a-time-items", "2", "--image-size", "64", "--max-new-tokens", "3", "--out", str(out)]  # fmt: skip
    assert benchmark("generation").main(argv) == 0
    result = json.loads(out.read_text())
    ways = result["ways"]
    assert set(ways) == {"one_at_a_time", "batched_generate", "static"}  # no compiled way on a CPU
    assert ways["one_at_a_time"]["items"] == 2 and ways["static"]["items"] == 6
    assert ways["static"]["agree_with_batched_generate"] == 1.0
    assert all(w["items_per_s"] > 0 for w in ways.values())
    assert result["speedup_over_batched_generate"]["batched_generate"] == 1.0


def test_the_loss_memory_benchmark_measures_less_memory_for_the_same_numbers(tmp_path):
    out = tmp_path / "memory.json"
    argv = ["--preset", "tiny", "--vocab", "16384", "--device", "cpu", "--image-size", "32", "--batch-size", "2",
            "--group-size", "2", "--completion-tokens", "8", "--chunk", "4", "--out", str(out)]  # fmt: skip
    assert benchmark("loss_memory").main(argv) == 0
    result = json.loads(out.read_text())
    for name in ("sft", "grpo"):
        row = result[name]
        assert 0 < row["hidden_states_peak_mib"] < row["full_logits_peak_mib"], name
        assert row["max_abs_difference"] < 1e-4, name


def test_the_vision_tower_benchmark_counts_fewer_attention_calls_for_the_same_features(
    tmp_path, arch_checkpoints
):
    out = tmp_path / "tower.json"
    argv = ["--model", arch_checkpoints["qwen2_5_vl"], "--device", "cpu", "--dtype", "float32",
            "--pictures", "3", "--repeats", "1", "--out", str(out)]  # fmt: skip
    assert benchmark("vision_tower").main(argv) == 0
    result = json.loads(out.read_text())
    native, grouped = result["ways"]["native"], result["ways"]["grouped"]
    assert grouped["attention_calls_per_forward"] == 4  # one per layer: every picture is one size
    assert native["attention_calls_per_forward"] > 3 * grouped["attention_calls_per_forward"]
    assert result["max_abs_difference"] < 1e-5
    assert all(v > 0 for v in (*native.values(), *grouped.values()))


def test_the_step_profile_times_each_phase_and_lists_the_costliest_operators(tmp_path, arch_checkpoints):
    out = tmp_path / "profile.json"
    argv = ["--model", arch_checkpoints["qwen2_5_vl"], "--device", "cpu", "--dtype", "float32", "--batch-size", "2",
            "--steps", "1", "--warmup", "1", "--freeze-vision", "--top", "5", "--out", str(out)]  # fmt: skip
    assert benchmark("step_profile").main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["phase_ms_synchronised"]) == {"batch", "to_device", "forward", "backward", "optimizer"}
    assert result["step_ms"] > 0 and result["trainable_parameters"] < result["parameters"]  # the tower frozen
    assert 0 < len(result["host_ops"]) <= 5 and all(op["ms_per_step"] > 0 for op in result["host_ops"])
    assert "device_ops" not in result  # no device on a CPU
