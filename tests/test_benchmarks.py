"""The diagnostic benchmarks run end to end on CPU at toy sizes."""

import json

from tests.helpers import benchmark


def _script(name: str):
    return benchmark(name)


def test_skill_alone_writes_a_curve_against_the_skills_prior(tmp_path):
    out = tmp_path / "shape.json"
    argv = ["--skill", "shape", "--steps", "4", "--eval-every", "2", "--test-size", "12", "--image-size", "32",
            "--params", '{"distractors": [0, 0]}', "--vision", '{"patch_size": 4}', "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert _script("skill_alone").main(argv) == 0
    result = json.loads(out.read_text())
    assert [point["step"] for point in result["curve"]] == [2, 4]
    assert 0.0 <= result["prior"] <= 1.0
    assert all(0.0 <= point["accuracy"] <= 1.0 and point["loss"] > 0 for point in result["curve"])
    assert result["args"]["params"] == '{"distractors": [0, 0]}'


def test_skill_alone_can_pretrain_the_vision_tower_first(tmp_path):
    out = tmp_path / "colour.json"
    argv = ["--skill", "colour", "--steps", "2", "--eval-every", "2", "--test-size", "8", "--image-size", "32",
            "--pretrain-vision", "2", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert _script("skill_alone").main(argv) == 0
    assert json.loads(out.read_text())["args"]["pretrain_vision"] == 2


def test_skill_alone_starts_from_a_saved_model_and_scores_it_first(tmp_path, arch_checkpoints):
    out = tmp_path / "compare.json"
    argv = ["--skill", "compare", "--from", arch_checkpoints["qwen2_5_vl"], "--freeze-vision", "--steps", "2",
            "--eval-every", "2", "--test-size", "8", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert _script("skill_alone").main(argv) == 0
    result = json.loads(out.read_text())
    assert [point["step"] for point in result["curve"]] == [0, 2]
    assert result["curve"][0]["loss"] is None and result["curve"][1]["loss"] > 0


def test_probe_tower_fits_a_shape_probe_on_the_object_token(tmp_path):
    out = tmp_path / "probe.json"
    argv = ["--train", "40", "--test", "20", "--image-size", "32", "--out", str(out)]
    assert _script("probe_tower").main(argv) == 0
    result = json.loads(out.read_text())
    assert result["train_accuracy"] > result["chance"]  # 40 points in 192 dimensions: separable
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0.2 <= result["chance"] <= 1.0


def test_sweep_curves_keep_the_sampled_pass_rate_beside_greedy(tmp_path):
    rows = [
        {
            "step": 0,
            "eval/accuracy": 0.3,
            "eval/skill/count": 0.5,
            "eval/sampled": 0.2,
            "eval/pass_at_k": 0.6,
        },
        {
            "step": 10,
            "train/reward_mean": 0.4,
            "train/loss": 0.1,
            "train/reward/correct": 0.3,
            "train/lr": 1.0,
        },
        {"step": 10, "eval/accuracy": 0.35, "eval/skill/count": 0.55},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = _script("sweep").curves(tmp_path)
    assert got["evals"] == [
        {"step": 0, "accuracy": 0.3, "skills": {"count": 0.5}, "sampled": 0.2, "pass_at_k": 0.6},
        {"step": 10, "accuracy": 0.35, "skills": {"count": 0.55}},
    ]
    assert got["train"] == [{"step": 10, "loss": 0.1, "reward_mean": 0.4, "reward/correct": 0.3}]


def test_prompt_sharing_times_both_ways_of_a_grpo_step(tmp_path):
    out = tmp_path / "sharing.json"
    argv = ["--image-size", "32", "--prompts", "2", "--group", "3", "--new-tokens", "2", "--repeats", "1",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert _script("prompt_sharing").main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {"rollout_generate", "rollout_shared", "update_full", "update_shared"}
    assert all(v > 0 for v in result["median_s"].values()) and all(r > 0 for r in result["ratios"].values())
    assert result["max_logprob_difference"] < 1e-4  # the two updates compute the same thing


def test_world_throughput_measures_each_variant_of_one_built_model(tmp_path):
    out = tmp_path / "throughput.json"
    argv = ["--steps", "2", "--log-every", "1", "--batch-size", "4", "--image-size", "32", "--train-size", "16",
            "--test-size", "9", "--device", "cpu", "--work", str(tmp_path / "work"), "--out", str(out),
            "--variant", "plain:", "--variant", "small_lr:train.lr=1e-5"]  # fmt: skip
    assert _script("world_throughput").main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"plain", "small_lr"}
    assert result["variants"]["small_lr"]["overrides"] == ["train.lr=1e-5"]
    for figures in result["variants"].values():
        assert figures["samples_per_s"] > 0 and figures["windows"] == 1 and 0 <= figures["data_fraction"] <= 1
    assert (
        result["fastest"] in result["variants"] and result["goal_met"] is False
    )  # 1000 samples/s on a toy CPU run
    assert len(list((tmp_path / "work").glob("model-tiny"))) == 1  # built once, trained twice


def test_world_throughput_refuses_a_malformed_variant():
    import pytest

    with pytest.raises(SystemExit, match="is not KEY=VALUE"):
        _script("world_throughput").parse_variant("fast:train.steps")
    with pytest.raises(SystemExit, match="expected NAME:KEY=VALUE"):
        _script("world_throughput").parse_variant("fast")
