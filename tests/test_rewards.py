"""Reward functions as TRL writes them: keyword arguments, dataset columns by name, None for items
a function does not score; and what a GRPO step gives them and makes of their values."""

import dataclasses
import logging
import math
import re

import pytest
import torch

from train.grpo import group_advantages, zero_spread
from train.rewards import FIELDS, Rewards, conversational, example_columns

# ----------------------------------------------------------------------------- TRL-style functions
# Written the way TRL's GRPOTrainer documentation writes them (standard format: strings).


def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    matches = [re.match(pattern, content) for content in completions]
    return [1.0 if match else 0.0 for match in matches]


def accuracy_reward(completions, solution, **kwargs):
    """The content of <answer>...</answer> equals the dataset's ``solution`` column."""
    matches = [re.search(r"<answer>(.*?)</answer>", completion) for completion in completions]
    contents = [match.group(1) if match else "" for match in matches]
    return [1.0 if c == gt else 0.0 for c, gt in zip(contents, solution, strict=True)]


def math_reward_func(prompts, completions, task, **kwargs):
    """Scores math items only; None for the others (TRL's multi-task example)."""
    rewards = []
    for completion, t in zip(completions, task, strict=True):
        if t == "math":
            rewards.append(1.0 if any(ch.isdigit() for ch in completion) else -1.0)
        else:
            rewards.append(None)
    return rewards


def conversational_format_reward(completions, **kwargs):
    """TRL's documented format reward for the conversational format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


wrapped_format_reward = conversational(conversational_format_reward)

CALLS: list[dict] = []


def recording_reward(prompts, completions, completion_ids, trainer_state, log_metric, log_extra, **kwargs):
    """Keeps what it was given, logs a metric and a column, and scores nothing."""
    CALLS.append({"prompts": prompts, "completions": completions, "completion_ids": completion_ids,
                  "trainer_state": trainer_state, **kwargs})  # fmt: skip
    log_metric("mean_chars", sum(len(c) for c in completions) / len(completions))
    log_extra("chars", [len(c) for c in completions])
    return [None] * len(completions)


def only_math(completions, task, **kwargs):
    """No signal at all on items that are not math (and shorter is better on math)."""
    return [-float(len(c)) if t == "math" else None for c, t in zip(completions, task, strict=True)]


def needs_ground_truth(completions, ground_truth, **kwargs):
    return [0.0] * len(completions)


def without_kwargs(completions):
    return [0.0] * len(completions)


# ----------------------------------------------------------------------------- the weighted sum


def test_trl_style_functions_combine_with_none_ignored_as_trl_does(caplog):
    completions = ["<think>2+2</think><answer>4</answer>", "four", "<think>x</think><answer>blue</answer>"]
    columns = {
        "prompts": ["2+2?", "2+2?", "sky?"],
        "solution": ["4", "4", "red"],
        "task": ["math", "math", "art"],
    }
    rewards = Rewards(
        {
            "tests.test_rewards:format_reward_func": 0.5,
            "tests.test_rewards:accuracy_reward": 1.0,
            "tests.test_rewards:math_reward_func": 2.0,
        }  # fmt: skip
    )
    total = rewards(completions, **columns)
    # math_reward_func returned None for the art item: it adds nothing there (nansum).
    assert total == pytest.approx([0.5 + 1.0 + 2.0, 0.0 + 0.0 - 2.0, 0.5 + 0.0])
    assert rewards.last["tests.test_rewards:math_reward_func"][:2] == [1.0, -1.0]
    assert math.isnan(rewards.last["tests.test_rewards:math_reward_func"][2]) and rewards.unscored == 0
    # When no function scores an item it has no reward (NaN), and a warning names it.
    only = Rewards({"tests.test_rewards:math_reward_func": 1.0})
    with caplog.at_level(logging.WARNING, logger="train.rewards"):
        out = only(completions, **columns)
    assert out[:2] == [1.0, -1.0] and math.isnan(out[2]) and only.unscored == 1
    assert any(
        "no reward function scored 1 of 3" in r.getMessage() and "blue" in r.getMessage()
        for r in caplog.records
    )


def test_a_conversational_reward_works_wrapped():
    completions = ["<think>a</think><answer>b</answer>", "b"]
    rewards = Rewards({"tests.test_rewards:wrapped_format_reward": 1.0})
    assert rewards(completions, prompts=["q", "q"], image=[None, None]) == [1.0, 0.0]


def test_a_reward_that_cannot_take_the_arguments_is_refused_by_name():
    with pytest.raises(ValueError, match=r"needs_ground_truth'.*missing a required argument: 'ground_truth'"):
        Rewards({"tests.test_rewards:needs_ground_truth": 1.0})(["a"], prompts=["q"], answer=["a"])
    with pytest.raises(ValueError, match=r"without_kwargs'.*\*\*kwargs"):
        Rewards({"tests.test_rewards:without_kwargs": 1.0})(["a"], prompts=["q"])
    with pytest.raises(ValueError, match="returned inf for completion 0"):
        Rewards({"tests.test_rewards:infinite": 1.0})(["a"])
    with pytest.raises(ValueError, match="returned 2 values for 1 completions"):
        Rewards({"tests.test_rewards:infinite": 1.0})(["a"], n=2)


def infinite(completions, n=None, **kwargs):
    return [math.inf] * (n or len(completions))


def test_unscored_completions_are_left_out_of_their_group():
    nan = math.nan
    rewards = torch.tensor([1.0, nan, 0.0, 0.0, nan, nan, nan, nan, 2.0, nan, 2.0, 2.0])
    adv = group_advantages(rewards, 4, "none")
    # Group 1: mean of 1, 0, 0 is 1/3; the unscored completion gets 0. Groups 2, 3: no signal.
    assert torch.allclose(adv[:4], torch.tensor([2 / 3, 0.0, -1 / 3, -1 / 3]))
    assert torch.all(adv[4:] == 0)
    scaled = group_advantages(rewards, 4, "group")
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 3)
    assert torch.allclose(scaled[:4], torch.tensor([2 / 3, 0.0, -1 / 3, -1 / 3]) / (std + 1e-4), atol=1e-5)
    assert zero_spread(rewards, 4).tolist() == [False, True, True]


def test_example_columns_give_fields_dataset_names_and_extra_columns(world_small):
    a, b = world_small["probe"][:2]
    a = dataclasses.replace(a, meta={"task": "math", "difficulty": 0.5})
    b = dataclasses.replace(b, source="synthetic", meta={"generator": "world", "answer": "shadowed"})
    cols = example_columns([a, a, b], {"solution": "answer", "q": "question"})
    assert set(cols) == {*FIELDS, "solution", "q", "task", "difficulty", "generator"}
    assert cols["solution"] == cols["answer"] == [a.answer, a.answer, b.answer]  # real or synthetic alike
    assert cols["task"] == ["math", "math", None] and cols["generator"] == [None, None, "world"]
    assert cols["source"] == ["real", "real", "synthetic"] and cols["image"][0] is cols["image"][1]


# ----------------------------------------------------------------------------- inside a GRPO step


def test_a_step_calls_rewards_with_trls_arguments_and_ignores_none(tiny_qwen, world_small, caplog):
    """The step gives every function TRL's arguments and the examples' columns (the dataset's
    names too); a group no function scored gets no reward, no advantage and no gradient, and the
    step's loss and gradient stay finite."""
    from tests.test_grpo import _step

    CALLS.clear()
    probe = world_small["probe"]
    math_item = dataclasses.replace(probe[0], meta={"task": "math"})
    art_item = dataclasses.replace(probe[1], meta={"task": "art"})
    step, _ = _step(tiny_qwen, [[math_item, art_item]], max_new_tokens=5, dynamic_sampling=False,
                    rewards={"tests.test_rewards:recording_reward": 1.0, "tests.test_rewards:only_math": 1.0})  # fmt: skip
    step.column_names = {"solution": "answer"}
    step.max_steps = 10
    step.optimizer.step = lambda: None
    with caplog.at_level(logging.WARNING, logger="train.rewards"):
        out = step(3)
    (call,) = CALLS
    expected = {"prompts", "completions", "completion_ids", "trainer_state", "log_metric", "log_extra",
                *FIELDS, "solution", "task"}  # fmt: skip
    assert set(call) | {"log_metric", "log_extra"} == expected
    ro = step.groups[0].ro
    assert call["completions"] == ro.texts and len(call["completions"]) == 8
    assert call["prompts"] == [ex.question for ex in ro.examples]
    ids = [row[: int(m.sum())].tolist() for row, m in zip(ro.completion_ids, ro.mask, strict=True)]
    assert call["completion_ids"] == ids
    assert call["solution"] == call["answer"] == [ex.answer for ex in ro.examples]
    assert call["task"] == ["math"] * 4 + ["art"] * 4
    assert (call["trainer_state"].global_step, call["trainer_state"].max_steps) == (3, 10)
    # The art group: neither function scored it.
    math_rewards, art_rewards = step.groups[0].rewards, step.groups[1].rewards
    assert torch.equal(math_rewards, torch.tensor([-float(len(t)) for t in ro.texts[:4]]))
    assert torch.isnan(art_rewards).all() and out["unscored_fraction"] == 0.5
    assert any("no reward function scored 4 of 8" in r.getMessage() for r in caplog.records)
    assert out["reward_mean"] == pytest.approx(float(math_rewards.mean()))
    assert out["reward/tests.test_rewards:only_math"] == pytest.approx(float(math_rewards.mean()))
    assert "reward/tests.test_rewards:recording_reward" not in out  # it scored nothing
    assert out["reward_metrics/mean_chars"] == pytest.approx(sum(len(t) for t in ro.texts) / 8)
    assert math.isfinite(out["loss"]) and math.isfinite(out["grad_norm"])
    assert step.samples[0]["chars"] == len(ro.texts[0]) and step.samples[1]["chars"] == len(ro.texts[4])
