"""A checkpoint of a model with tied weights is written without the shared-tensor warning, and
resumes with the tie and the weights as they were; a tie the model does not declare still warns."""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator

from train.checkpoint import load_checkpoint, save_checkpoint

SHARED = "Removed shared tensor"


def _prepared(model):
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return accelerator, *accelerator.prepare(model, optimizer)


def test_a_declared_tie_saves_quietly_and_resumes_tied(tmp_path, tiny_qwen, caplog):
    from models import load_model

    model, _ = load_model(str(tiny_qwen), device="cpu")
    assert model.lm_head.weight is model.get_input_embeddings().weight
    accelerator, model, _ = _prepared(model)
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(0.5)  # a trained value, not the checkpoint's
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    # At INFO on accelerate's own logger: a training loop run earlier in this process sets it to WARNING.
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="accelerate"):
        path = save_checkpoint(accelerator, tmp_path, 1, {}, keep=1)
    assert "Model weights saved" in caplog.text  # Accelerate's log is heard,
    assert SHARED not in caplog.text  # its warning about the declared tie is not

    fresh, _ = load_model(str(tiny_qwen), device="cpu")
    accelerator, fresh, _ = _prepared(fresh)
    with caplog.at_level(logging.WARNING):
        load_checkpoint(accelerator, path)
    assert fresh.lm_head.weight is fresh.get_input_embeddings().weight
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


class _Shared(torch.nn.Module):
    """Two layers sharing one weight, tied at run time: a rebuilt model would not have the tie."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight


def test_a_tie_the_model_does_not_declare_still_warns(tmp_path, caplog):
    accelerator, _, _ = _prepared(_Shared())
    with caplog.at_level(logging.WARNING):
        save_checkpoint(accelerator, tmp_path, 1, {}, keep=1)
    assert SHARED in caplog.text and "b.weight" in caplog.text
