"""A frozen vision tower runs without autograd: its outputs are the same, no graph holds its
activations, and the loss and gradients of what trains are unchanged."""

import pytest
import torch

from models import LoraSettings, load_model
from models.load import _grad_off
from train.collate import VLMCollator

pytestmark = pytest.mark.usefixtures("one_thread")


def _no_graph_modules(model):
    return [m for m in model.modules() if any(h is _grad_off for h in m._forward_pre_hooks.values())]


def _run(model, modules, batch):
    """Loss, trainable gradients, ``modules``' outputs and the bytes autograd saved."""
    outputs, saved = [], [0]
    handles = [m.register_forward_hook(lambda m, a, o: outputs.append(o)) for m in modules]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    for h in handles:
        h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    tensors = [o if isinstance(o, torch.Tensor) else o[0] for o in outputs]
    return loss.detach(), grads, tensors, saved[0]


def _unhooked(model):
    """The same model with the no-graph hooks taken off (the tower as it ran before), and the
    modules that had them."""
    modules = _no_graph_modules(model)
    for m in modules:
        for key, hook in list(m._forward_pre_hooks.items()):
            if hook is _grad_off:
                del m._forward_pre_hooks[key]
    return model, modules


@pytest.mark.parametrize("arch,lora", [("qwen2_5_vl", False), ("qwen2_5_vl", True), ("llava", True)])
def test_a_frozen_tower_runs_without_a_graph_and_changes_nothing_else(
    arch, lora, arch_checkpoints, arch_world
):
    kwargs = {"freeze_vision": True, "device": "cpu"}
    if lora:  # LoRA with checkpointing marks every embedding's output as needing grad
        kwargs.update(gradient_checkpointing=True, lora=LoraSettings(r=4, dropout=0.0))
    torch.manual_seed(0)  # the same LoRA initialisation in both models
    model, processor = load_model(arch_checkpoints[arch], **kwargs)
    hooked = _no_graph_modules(model)
    assert hooked
    if arch == "qwen2_5_vl" and not lora:  # the projector inside the tower still trains
        assert not any("merger" in n for n, m in model.named_modules() if m in hooked)
    batch = VLMCollator(processor, question_first=True)([arch_world["train"][i] for i in (0, 1)])
    loss, grads, outs, saved = _run(model, hooked, batch)
    assert outs and all(o.grad_fn is None for o in outs)

    torch.manual_seed(0)
    reference, _ = load_model(arch_checkpoints[arch], **kwargs)
    ref_loss, ref_grads, ref_outs, ref_saved = _run(*_unhooked(reference), batch)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        assert torch.allclose(grads[name], grad, atol=1e-6, rtol=1e-4), name
    for out, ref in zip(outs, ref_outs, strict=True):
        assert torch.equal(out, ref)
    if lora:  # before, the tower's activations were kept for a backward pass that computed nothing
        assert any(o.grad_fn is not None for o in ref_outs) and saved < ref_saved
    assert saved <= ref_saved
