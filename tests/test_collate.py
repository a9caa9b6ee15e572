"""The collator masks everything but the answer, for every supported architecture."""

import pytest
import torch

from curriculum.types import Example
from models.tiny import ARCHS
from train.collate import IGNORE_INDEX, VLMCollator


def _examples(world_small, n=3):
    return world_small["train"][:n]


def _check_masks(processor, examples, question_first=False):
    collator = VLMCollator(processor, question_first=question_first)
    batch = collator(examples)
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    assert labels.shape == ids.shape
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    eos = collator.tokenizer.eos_token_id
    for row, ex in enumerate(examples):
        kept = ids[row][labels[row] != IGNORE_INDEX]
        assert kept[-1].item() == eos and kept.tolist().count(eos) == 1
        text = collator.tokenizer.decode(kept, skip_special_tokens=True).strip()
        assert text == ex.answer
        # the supervised tokens are the tail of the real (unpadded) sequence
        n_real = int(mask[row].sum())
        supervised = (labels[row, :n_real] != IGNORE_INDEX).nonzero().flatten()
        assert supervised.max().item() <= n_real - 1
        assert (labels[row, supervised.min() : supervised.max() + 1] != IGNORE_INDEX).all()
    prompts = collator.prompts(examples)
    assert (prompts["attention_mask"][:, -1] == 1).all()  # left padded: the prompt ends every row
    assert "labels" not in prompts  # nothing the model's forward would take as a training target
    return batch


def test_qwen_collator_masks_prompt_and_padding(tiny_qwen, world_small):
    from models import load_model

    _, processor = load_model(str(tiny_qwen))
    examples = _examples(world_small, 4)
    examples[0] = Example("long", examples[0].image, examples[0].question + " Answer briefly.", "twenty two")
    batch = _check_masks(processor, examples)
    assert "pixel_values" in batch and "image_grid_thw" in batch


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "qwen2_5_vl"])
def test_other_architectures_mask_the_same_way(arch, tmp_path, world_small):
    from models import build_tiny_vlm, load_model

    corpus = [t for ex in world_small["train"] for t in (ex.question, ex.answer)]
    path = build_tiny_vlm(tmp_path / arch, arch=arch, preset="tiny", image_size=32, corpus=corpus)
    model, processor = load_model(str(path))
    batch = _check_masks(processor, _examples(world_small))
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_question_first_puts_the_question_before_the_image(tiny_qwen, world_small):
    from models import load_model

    _, processor = load_model(str(tiny_qwen))
    ex = world_small["train"][0]
    collator = VLMCollator(processor, question_first=True)
    text = collator._render(collator._turns(ex), prompt=True)
    assert text.index(ex.question) < text.index("<|vision_start|>")
    _check_masks(processor, world_small["train"][:3], question_first=True)


def test_a_prefix_lm_gets_the_answer_as_its_causal_suffix(tmp_path, world_small):
    """PaliGemma reads what its token_type_ids mark 0 as one bidirectional prefix: the training
    batch marks exactly the supervised tokens (answer and end-of-turn) 1, the prompts for
    generation are all prefix, and the processor's own labels are replaced by the collator's."""
    from models import build_tiny_vlm, load_model

    corpus = [t for ex in world_small["train"] for t in (ex.question, ex.answer)]
    path = build_tiny_vlm(tmp_path / "pg", arch="paligemma", image_size=32, corpus=corpus)
    _, processor = load_model(str(path))
    collator = VLMCollator(processor)
    assert collator.answer_as_suffix
    batch = _check_masks(processor, _examples(world_small))
    supervised = batch["labels"] != IGNORE_INDEX
    assert torch.equal(batch["token_type_ids"].bool(), supervised)
    assert not collator.prompts(_examples(world_small))["token_type_ids"].any()


def test_other_processors_encode_the_whole_conversation(tiny_qwen):
    from models import load_model

    _, processor = load_model(str(tiny_qwen))
    assert not VLMCollator(processor).answer_as_suffix
