"""The collator processes each batch once: its labels, measured from the text alone, equal those
of encoding every prompt (and every earlier turn of a conversation) again with its images, on
every architecture, for one-turn items, conversations and the prefix-LM suffix path."""

from __future__ import annotations

import pytest
import torch

from curriculum.types import as_pil
from models.tiny import ARCHS
from tests.test_conversations import conversation
from train.collate import IGNORE_INDEX, VLMCollator, _text_positions

pytestmark = pytest.mark.usefixtures("one_thread")


def reencoded(collator: VLMCollator, examples) -> dict[str, torch.Tensor]:
    """The batch as the collator built it before: the full rows, then every prompt encoded again
    for its length, then each earlier answer of a conversation measured by encoding its prefixes."""
    images = [[as_pil(im) for im in ex.images] for ex in examples]
    turns = [collator._turns(ex) for ex in examples]
    prompts = [collator._render(conv, prompt=True) for conv in turns]
    fulls = [collator._render(conv, ex.target) for conv, ex in zip(turns, examples, strict=True)]
    if collator.answer_as_suffix:
        answers = [collator._suffix(p, f) for p, f in zip(prompts, fulls, strict=True)]
        batch = collator._encode(prompts, images, "right", answers)
    else:
        batch = collator._encode(fulls, images, "right")
    prompt_lens = collator._encode(prompts, images, "right")["attention_mask"].sum(dim=1)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = IGNORE_INDEX
    for row, n in enumerate(prompt_lens.tolist()):
        labels[row, :n] = IGNORE_INDEX
        if not collator.answer_as_suffix:
            for start, end in collator._earlier_answers(turns[row], images[row], batch["input_ids"][row]):
                labels[row, start:end] = batch["input_ids"][row, start:end]
    batch["labels"] = labels
    return batch


def _processor(arch_checkpoints, arch):
    from models import load_model

    return load_model(arch_checkpoints[arch], device="cpu")[1]


def _count_encodings(collator: VLMCollator, monkeypatch) -> list[int]:
    """A list that grows by one at each processor call the collator makes."""
    calls: list[int] = []
    encode = collator._encode
    monkeypatch.setattr(collator, "_encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    return calls


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("arch", ARCHS)
def test_one_encoding_gives_the_batch_of_encoding_again(arch, arch_checkpoints, arch_world, monkeypatch):
    processor = _processor(arch_checkpoints, arch)
    conv = conversation(arch_world)
    for question_first in (False, True):
        collator = VLMCollator(processor, question_first=question_first, question_suffix=" Briefly.")
        for examples in ([*arch_world["train"][:3], conv, arch_world["train"][5]], arch_world["train"][6:9]):
            expected = reencoded(collator, examples)
            calls = _count_encodings(collator, monkeypatch)
            _same(collator(examples), expected)
            assert len(calls) == 1  # the images went through the processor once
            monkeypatch.undo()


def test_rows_that_do_not_line_up_with_their_text_are_encoded_again(
    arch_checkpoints, arch_world, monkeypatch
):
    """A processor whose rows are not the text with its placeholders expanded (here: a tokenizer
    that tokenizes differently without images) is measured the slow way, with the same labels."""
    collator = VLMCollator(_processor(arch_checkpoints, "qwen2_5_vl"))
    examples = [*arch_world["train"][:2], conversation(arch_world)]
    expected = reencoded(collator, examples)
    tokenizer = collator.tokenizer
    collator.tokenizer = lambda texts: {"input_ids": [[1, *t] for t in tokenizer(texts)["input_ids"]]}
    calls = _count_encodings(collator, monkeypatch)
    _same(collator(examples), expected)
    assert len(calls) > 2  # the rows, then the prompts and the conversation's prefixes again


def test_text_positions_follow_expanded_placeholders():
    # text: a b <img> c d <img> e    (placeholder 9 expands to 3 and 2 copies of 8 in the row)
    text = [1, 2, 9, 3, 4, 9, 5]
    row = [1, 2, 8, 8, 8, 3, 4, 8, 8, 5]
    where = _text_positions(text, row, {9})
    assert where == {0: 0, 1: 1, 2: 2, 3: 5, 4: 6, 5: 7, 6: 9, 7: 10}
    assert _text_positions(text, [1, 2, 8, 3, 4, 8, 6], {9}) is None  # the last run differs
    assert _text_positions(text, [0, 1, 2, 8, 3, 4, 8, 5], {9}) is None  # something before the first
    assert _text_positions([1, 2], [1, 2], {9}) == {0: 0, 1: 1, 2: 2}
    assert _text_positions([1, 2], [0, 1, 2], {9}) is None
