"""Conversational examples (several turns, several images) on every buildable architecture: the
loss is on every assistant turn and only there (a prefix-LM: on the last one), no supervised
position sees a later answer token, and the model answers the last turn from the earlier ones."""

from __future__ import annotations

import pytest
import torch

from curriculum.types import Example
from models.tiny import ARCHS
from train.collate import IGNORE_INDEX, VLMCollator

pytestmark = pytest.mark.usefixtures("one_thread")


def conversation(arch_world) -> Example:
    """Two user turns, each with an image (the second's between two pieces of text), two answers."""
    a, b = arch_world["train"][0], arch_world["train"][1]
    turns = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": a.question}]},
        {"role": "assistant", "content": [{"type": "text", "text": a.answer}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and here"},
                {"type": "image"},
                {"type": "text", "text": b.question},
            ],
        },  # fmt: skip
    ]
    return Example(
        "conv", a.image, f"and here\n{b.question}", b.answer, more_images=[b.image], messages=turns
    )


def _spans(labels: torch.Tensor) -> list[range]:
    """The supervised positions of a row as contiguous runs."""
    kept = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    runs: list[list[int]] = []
    for j in kept:
        if runs and runs[-1][-1] == j - 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return [range(r[0], r[-1] + 1) for r in runs]


def _load(arch_checkpoints, arch):
    from models import load_model

    model, processor = load_model(arch_checkpoints[arch], device="cpu")
    model.eval()
    return model, processor


def _forward(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_every_assistant_turn_is_supervised_and_nothing_else(arch, arch_checkpoints, arch_world):
    _, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    conv, single = conversation(arch_world), arch_world["train"][2]
    batch = collator([conv, single])
    tok = collator.tokenizer
    spans = _spans(batch["labels"][0])
    said = [tok.decode(batch["input_ids"][0][s], skip_special_tokens=True).strip() for s in spans]
    if collator.answer_as_suffix:  # a prefix-LM reads earlier turns as its bidirectional prefix
        assert said == [conv.answer]
        assert torch.equal(batch["token_type_ids"].bool(), batch["labels"] != IGNORE_INDEX)
    else:
        assert said == [arch_world["train"][0].answer, conv.answer]
    assert spans[-1].stop == int(batch["attention_mask"][0].sum())
    assert [
        tok.decode(batch["input_ids"][1][s], skip_special_tokens=True) for s in _spans(batch["labels"][1])
    ] == [single.answer]
    # The prompt the model answers from is the row up to its last answer: both turns, both images.
    prompts = collator.prompts([conv, single])
    prompt = prompts["input_ids"][0][prompts["attention_mask"][0] == 1]
    assert torch.equal(batch["input_ids"][0][: spans[-1].start], prompt)
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    assert int((prompt == image_id).sum()) == 2 * int((prompts["input_ids"][1] == image_id).sum())


@pytest.mark.parametrize("arch", ARCHS)
def test_no_supervised_position_of_a_conversation_sees_a_later_answer_token(
    arch, arch_checkpoints, arch_world
):
    """Changing any supervised token leaves the logits at every earlier position unchanged, in
    either answer of the conversation: the loss on an answer cannot be lowered by looking at it."""
    model, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    batch = collator([conversation(arch_world), arch_world["train"][2]])
    base = _forward(model, batch)
    for span in _spans(batch["labels"][0]):
        for j in span:
            changed = {k: v.clone() for k, v in batch.items()}
            changed["input_ids"][0, j] = 300 if batch["input_ids"][0, j] != 300 else 301
            logits = _forward(model, changed)
            torch.testing.assert_close(logits[0, :j], base[0, :j], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(logits[0, j:], base[0, j:], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_last_turn_is_answered_with_the_earlier_ones_as_context(arch, arch_checkpoints, arch_world):
    """Greedy answers come back for a batch mixing a conversation and a single turn, and the
    earlier turns change what the model reads (its logits for the answer's first token)."""
    from train.evaluate import generate_answers

    model, processor = _load(arch_checkpoints, arch)
    collator = VLMCollator(processor)
    conv = conversation(arch_world)
    answers, _ = generate_answers(model, collator, [conv, arch_world["train"][2]], 2, 3, torch.device("cpu"))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    alone = Example("alone", conv.more_images[0], conv.question, conv.answer,
                    messages=[{**conv.messages[-1]}])  # fmt: skip
    first = [_forward(model, collator.prompts([ex]))[0, -1] for ex in (conv, alone)]
    assert not torch.allclose(first[0], first[1], atol=1e-4)
