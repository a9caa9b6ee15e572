"""The memory-lean losses give today's numbers: the SFT loss on the answer tokens and GRPO's
per-token log-probabilities from hidden states, a few positions at a time, equal the full-logits
loss and log-probabilities, and their gradients, on every architecture, with LoRA too."""

import pytest
import torch

from models.tiny import ARCHS
from train.collate import VLMCollator
from train.grpo import token_logprobs
from train.losses import OutputHead, answer_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _grads(model):
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _same_grads(a, b):
    assert a.keys() == b.keys() and a
    for name, grad in a.items():
        scale = float(grad.abs().max()) + 1e-6
        assert float((b[name] - grad).abs().max()) <= 1e-4 * scale + 1e-7, (
            name,
            float((b[name] - grad).abs().max()),
            scale,
        )


def _load(path, lora=False):
    from models import LoraSettings, load_model

    model, processor = load_model(path, device="cpu", lora=LoraSettings(r=4, dropout=0.0) if lora else None)
    model.train()
    return model, processor


@pytest.mark.parametrize("arch,lora", [(a, False) for a in ARCHS] + [("qwen2_5_vl", True)])
def test_answer_loss_and_grpo_logprobs_equal_the_full_logits_ones(arch, lora, arch_checkpoints, arch_world):
    model, processor = _load(arch_checkpoints[arch], lora)
    collator = VLMCollator(processor, question_first=True)
    examples = [arch_world["train"][i] for i in (0, 3, 7)]

    # SFT: the model's own loss over full logits against the answer tokens' hidden states.
    batch = collator(examples)
    full = model(**batch).loss
    full.backward()
    full_grads = _grads(model)
    lean = answer_loss(model, batch, chunk=2)  # several chunks
    lean.backward()
    assert torch.allclose(lean, full, atol=1e-6), (float(lean), float(full))
    _same_grads(full_grads, _grads(model))

    # GRPO: log-probabilities of completions, prompts shared or (checkpointing) repeated.
    inputs = collator.prompts(examples[:2])
    torch.manual_seed(0)
    ids = torch.randint(10, 200, (6, 4))
    mask = torch.ones_like(ids)
    mask[1, 2:] = 0
    mask[4, 1:] = 0
    weights = torch.randn(ids.shape)
    suppressed = [5, 6]

    def run(chunk):
        logp = token_logprobs(model, inputs, ids, mask, 0.7, suppressed, chunk)
        (logp * mask * weights).sum().backward()
        return torch.where(mask.bool(), logp.detach(), 0.0), _grads(model)

    ref, ref_grads = run(0)
    got, got_grads = run(3)
    assert torch.allclose(got, ref, atol=1e-5)
    _same_grads(ref_grads, got_grads)
    if not lora:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        again, again_grads = run(3)
        assert torch.allclose(again, ref, atol=1e-5)
        _same_grads(ref_grads, again_grads)


def test_the_head_applies_the_configs_logit_soft_cap(arch_checkpoints):
    """Where the text config soft-caps logits, the lean path caps them as the model's forward does."""
    model, _ = _load(arch_checkpoints["qwen2_5_vl"])
    head = OutputHead(model)
    hidden = torch.randn(3, model.config.text_config.hidden_size) * 50
    plain = head(hidden)
    head.softcap = 2.0
    capped = head(hidden)
    assert plain.abs().max() > 2.0 and capped.abs().max() <= 2.0
    assert torch.allclose(capped, torch.tanh(plain / 2.0) * 2.0)
