"""The decoder with a cache allocated once answers exactly as ``generate``'s greedy decoding, on
every architecture: rows that end at different steps, left padding, suppressed tokens, multimodal
rotary positions."""

import pytest
import torch

from models.tiny import ARCHS
from train.collate import VLMCollator
from train.decode import greedy_decode
from train.evaluate import generate_answers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("arch", ARCHS)
def test_static_cache_decoding_gives_generates_greedy_answers(arch, arch_checkpoints, arch_world):
    from models import load_model

    model, processor = load_model(arch_checkpoints[arch], device="cpu")
    model.eval()
    collator = VLMCollator(processor, question_first=True)
    examples = [arch_world["probe"][i] for i in (0, 5, 17, 3)]
    inputs = collator.prompts(examples)
    assert (inputs["attention_mask"] == 0).any()  # some rows are left-padded
    pad, suppressed = collator.tokenizer.pad_token_id, collator.media_token_ids
    start = inputs["input_ids"].shape[1]

    def generate(eos, n=6):
        return model.generate(**inputs, do_sample=False, max_new_tokens=n, pad_token_id=pad, eos_token_id=eos,
                              suppress_tokens=suppressed or None)[:, start:]  # fmt: skip

    free = generate(None)  # every row decodes all six steps
    assert torch.equal(greedy_decode(model, inputs, 6, None, pad, suppressed), free)
    # An end token some rows emit and others not: those rows end and are padded, the rest go on.
    firsts = free[:, 0].tolist()
    eos = next((t for t in firsts if firsts.count(t) < len(firsts)), firsts[0])
    want = generate(eos)
    assert torch.equal(greedy_decode(model, inputs, 6, eos, pad, suppressed), want)
    # A longer cache (as a compiled step rounds it up) only adds keys that are masked out.
    assert torch.equal(greedy_decode(model, inputs, 6, eos, pad, suppressed, bucket=64), want)
    synced = greedy_decode(model, inputs, 6, eos, pad, suppressed, synced=True)  # all steps, same answers
    assert synced.shape[1] == 6 and torch.equal(synced[:, : want.shape[1]], want)
    answers = generate_answers(model, collator, examples, 3, 4, torch.device("cpu"), decoder="static")
    assert answers == generate_answers(model, collator, examples, 3, 4, torch.device("cpu"))
    # the next batch's prompts built in a thread while this one decodes: the same answers
    assert answers == generate_answers(model, collator, examples, 3, 4, torch.device("cpu"), decoder="static",
                                       ahead=True)  # fmt: skip
