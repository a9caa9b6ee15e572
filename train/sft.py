"""Supervised fine-tuning: the step that ``train.mode: sft`` runs in the loop.

One optimizer step is ``grad_accum`` micro-batches of ``batch_size`` examples from the stream,
cross-entropy on the answer tokens only (the collator masks everything else), computed from
those tokens' hidden states alone (``train/losses.py``). The batches come collated from a
``BatchSource`` (train/prefetch.py), built ahead in the background when asked.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from train.losses import answer_loss
from train.prefetch import BatchSource


class SFTStep:
    def __init__(self, model: Any, optimizer: Any, accelerator: Any, source: BatchSource, tc: Any) -> None:
        self.model, self.optimizer = model, optimizer
        self.accelerator, self.source, self.tc = accelerator, source, tc

    def __call__(self, step: int) -> dict[str, float]:
        tc, acc = self.tc, self.accelerator
        out = {"samples": 0.0, "tokens": 0.0, "answer_tokens": 0.0, "data_s": 0.0, "pool_samples": 0.0}
        step_loss = torch.zeros((), device=acc.device)
        for _ in range(tc.grad_accum):
            t_data = time.perf_counter()
            built = self.source.next_collated(tc.batch_size, step)
            # Counted on the host when built: on a GPU reading them here would wait for the step before.
            out["pool_samples"] += built.from_pool
            out["samples"] += built.samples
            out["tokens"] += built.tokens
            out["answer_tokens"] += built.answer_tokens
            if built.model_flops is not None:
                out["model_flops"] = out.get("model_flops", 0.0) + built.model_flops
            batch = {k: v.to(acc.device, non_blocking=True) for k, v in built.batch.items()}
            out["data_s"] += time.perf_counter() - t_data
            with acc.accumulate(self.model):
                # No full logits (train.loss_chunk), no key/value cache: training never reads it, and
                # with one a packed batch's positions would not be read as separate samples.
                loss = answer_loss(self.model, batch, tc.loss_chunk)
                acc.backward(loss)
                if acc.sync_gradients and tc.max_grad_norm > 0:
                    # Under DeepSpeed its engine clipped already; this reads the norm (None at first).
                    norm = acc.clip_grad_norm_(self.model.parameters(), tc.max_grad_norm)
                    if norm is not None:
                        out["grad_norm"] = float(norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            step_loss += loss.detach() / tc.grad_accum
        out["loss"] = float(step_loss)
        return out
