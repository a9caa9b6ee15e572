"""Every buildable architecture, end to end: what a training batch lets the model see, what it
answers with, and a short run of the real loop with the curriculum on.

The models are the tiny presets at the built-in world's default image size (64x64, 16 image
tokens); each is built once per test process (``arch_checkpoints`` in conftest.py).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from curriculum.types import Example
from models.tiny import ARCHS
from train.collate import IGNORE_INDEX, VLMCollator

IMAGE_SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


def _examples(arch_world) -> list[Example]:
    """Three training examples with answers of different lengths (rows get padded)."""
    train = arch_world["train"]
    long = Example("long", train[0].image, train[0].question, "twenty two red circles")
    return [long, train[1], train[2]]


def _answer_spans(batch: dict[str, torch.Tensor]) -> list[range]:
    """Each row's supervised positions, as a range (the collator keeps them contiguous)."""
    spans = []
    for labels in batch["labels"]:
        kept = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert kept == list(range(kept[0], kept[-1] + 1))
        spans.append(range(kept[0], kept[-1] + 1))
    return spans


def _forward(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _load(arch_checkpoints, arch):
    from models import load_model

    model, processor = load_model(arch_checkpoints[arch], device="cpu")
    model.eval()
    return model, processor


@pytest.mark.parametrize("arch", ARCHS)
def test_no_position_of_a_training_batch_sees_a_later_answer_token(arch, arch_checkpoints, arch_world):
    """The loss on an answer token cannot be lowered by looking at the answer: changing the answer
    token at position j leaves the logits at every position before j unchanged, whatever the
    processor's extra inputs say (token types, image masks, multimodal positions)."""
    model, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    batch = collator(_examples(arch_world))
    base = _forward(model, batch)
    tok = collator.tokenizer
    replacement = tok.convert_tokens_to_ids("Ġblue") if "Ġblue" in tok.get_vocab() else 300
    for row, span in enumerate(_answer_spans(batch)):
        for j in span:
            changed = {k: v.clone() for k, v in batch.items()}
            changed["input_ids"][row, j] = replacement if batch["input_ids"][row, j] != replacement else 301
            logits = _forward(model, changed)
            torch.testing.assert_close(logits[row, :j], base[row, :j], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(logits[row, j:], base[row, j:], atol=1e-5)  # the token is read


@pytest.mark.parametrize("arch", ARCHS)
def test_the_loss_is_taken_on_the_answer_tokens_only(arch, arch_checkpoints, arch_world):
    """Supervised: exactly the tokens after the generation prompt (the prompt as ``prompts`` encodes
    it for answering), up to the row's end: the answer and one end-of-turn token."""
    _, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    examples = _examples(arch_world)
    batch = collator(examples)
    tok = collator.tokenizer
    prompts = collator.prompts(examples)
    for row, (ex, span) in enumerate(zip(examples, _answer_spans(batch), strict=True)):
        ids = batch["input_ids"][row]
        prompt = prompts["input_ids"][row][prompts["attention_mask"][row] == 1]
        assert torch.equal(ids[: span.start], prompt)  # the prompt the model answers from
        assert span.stop == int(batch["attention_mask"][row].sum())
        assert tok.decode(ids[span], skip_special_tokens=True) == ex.target
        assert ids[span].tolist().count(tok.eos_token_id) == 1 and ids[span.stop - 1] == tok.eos_token_id


@pytest.mark.parametrize("arch", ARCHS)
def test_a_training_row_reads_its_answer_as_the_model_reads_what_it_generates(
    arch, arch_checkpoints, arch_world
):
    """At each answer token a training row gives the logits the model gives when it answers the
    same prompt (left-padded, as ``prompts`` encodes it) and has produced the answer so far: read
    with a copy of the prompt per completion, with the prompt encoded once and its cache shared,
    and by ``generate``'s own scores. So the model is trained on what it does when it answers."""
    from train.prompt_sharing import full_logits, shared_prompt_logits

    model, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    examples = _examples(arch_world)
    batch = collator(examples)
    base = _forward(model, batch)
    spans = _answer_spans(batch)
    pad = collator.tokenizer.pad_token_id
    ids = torch.full((len(examples), max(map(len, spans))), pad)
    mask = torch.zeros_like(ids)
    for row, span in enumerate(spans):
        ids[row, : len(span)] = batch["input_ids"][row, span]
        mask[row, : len(span)] = 1
    prompts = collator.prompts(examples)
    with torch.no_grad():
        copy = full_logits(model, prompts, ids, mask)
        shared = shared_prompt_logits(model, prompts, ids, mask, 1)
        scores = model.generate(**prompts, do_sample=False, max_new_tokens=1, output_scores=True,
                                return_dict_in_generate=True, pad_token_id=pad).scores[0]  # fmt: skip
    for row, span in enumerate(spans):
        expected = base[row, span.start - 1 : span.stop - 1]  # the logits that predict each answer token
        torch.testing.assert_close(copy[row, : len(span)], expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(shared[row, : len(span)], expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores[row], expected[0], atol=1e-4, rtol=1e-4)


def _losses(run_dir) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


STEPS = 8


@pytest.mark.parametrize("arch", ARCHS)
def test_a_short_run_with_the_curriculum_learns_pools_and_evaluates(arch, arch_checkpoints, tmp_path):
    """The real loop on each architecture: SFT steps, a curriculum round (greedy probe, offline
    analyzer, generators, student check) that commits examples to the pool, the final evaluation
    with sampled answers as well as greedy ones; the training loss falls."""
    from train.config import load_config
    from train.loop import run

    cfg = load_config(None, [
        f"run.output_dir={tmp_path}", "run.name=run", f"model.name_or_path={arch_checkpoints[arch]}",
        f"data.world.image_size={IMAGE_SIZE}", "data.world.train_size=64", "data.world.probe_size=32",
        "data.world.test_size=32", "train.cpu=true", f"train.steps={STEPS}", "train.batch_size=8", "train.lr=3e-3",
        "train.warmup_steps=1", "train.log_every=1", "train.save_model=false", "eval.at_start=false",
        "eval.batch_size=32", "eval.max_new_tokens=3", "eval.samples=2", "curriculum.enabled=true",
        "curriculum.every=4", "curriculum.budget=16", "curriculum.mix.ratio=0.5",
    ])  # fmt: skip
    summary = run(cfg)
    assert summary["steps"] == STEPS
    rounds = summary["curriculum"]["rounds"]
    assert [r["status"] for r in rounds] == ["ok"], rounds
    assert summary["curriculum"]["pool_size"] == rounds[0]["kept"] > 0
    record = json.loads((tmp_path / "run" / "curriculum" / "round_00001" / "round.json").read_text())
    assert record["step"] == 4 and record["metrics"]["curriculum/kept"] == rounds[0]["kept"]
    losses = _losses(tmp_path / "run")
    assert sorted(losses) == list(range(1, STEPS + 1))
    first, last = (losses[1] + losses[2]) / 2, (losses[STEPS - 1] + losses[STEPS]) / 2
    assert last < 0.8 * first, (first, last)
    end = summary["end"]
    assert 0.0 <= end["accuracy"] <= 1.0 and 0.0 <= end["sampled"] <= end["pass_at_k"] <= 1.0
    assert len((tmp_path / "run" / "eval_predictions.jsonl").read_text().splitlines()) == 32


def shorter(completions, **_):
    """A GRPO test reward with spread from the first step: shorter completions are better."""
    return [-float(len(c)) for c in completions]


@pytest.mark.parametrize("arch", ARCHS)
def test_grpo_steps_sample_what_they_score_on_every_architecture(arch, arch_checkpoints, tmp_path):
    """GRPO in the loop, under gradient checkpointing (so the update reads a copy of the prompt per
    completion, with the per-token inputs continued over the completion as generation continues
    them): the log-probability the update gives each sampled token is the one the sampler drew
    it with, at every step, and the run ends with its evaluation."""
    from train.config import load_config
    from train.loop import run

    cfg = load_config(None, [
        f"run.output_dir={tmp_path}", "run.name=grpo", f"model.name_or_path={arch_checkpoints[arch]}",
        "model.gradient_checkpointing=true", f"data.world.image_size={IMAGE_SIZE}", "data.world.train_size=64",
        "data.world.probe_size=32", "data.world.test_size=32", "train.cpu=true", "train.mode=grpo", "train.steps=2",
        "train.batch_size=2", "train.log_every=1", "train.save_model=false", "grpo.group_size=4",
        "grpo.max_new_tokens=4", "grpo.rewards={tests.test_architectures:shorter: 1.0}", "eval.at_start=false",
        "eval.batch_size=32", "eval.max_new_tokens=3",
    ])  # fmt: skip
    summary = run(cfg)
    assert summary["steps"] == 2 and 0.0 <= summary["end"]["accuracy"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "train/sampler_logprob_gap" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["train/sampler_logprob_gap"] < 1e-4, m["train/sampler_logprob_gap"]
        assert m["train/reward_std"] > 0 and math.isfinite(m["train/loss"])
