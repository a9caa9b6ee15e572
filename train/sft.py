"""Supervised fine-tuning: the step that ``train.mode: sft`` runs in the loop.

One optimizer step is ``grad_accum`` micro-batches of ``batch_size`` examples from the stream,
cross-entropy on the answer tokens only (the collator masks everything else), computed from
those tokens' hidden states alone (``train/losses.py``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from train.collate import IGNORE_INDEX, VLMCollator
from train.flops import FlopCounter
from train.losses import answer_loss


class SFTStep:
    flops: FlopCounter | None = None  # given (by the loop), each step reports its model FLOPs

    def __init__(
        self, model: Any, collator: VLMCollator, optimizer: Any, accelerator: Any, stream: Any, tc: Any
    ) -> None:
        self.model, self.collator, self.optimizer = model, collator, optimizer
        self.accelerator, self.stream, self.tc = accelerator, stream, tc

    def __call__(self, step: int) -> dict[str, float]:
        tc, acc = self.tc, self.accelerator
        out = {"samples": 0.0, "tokens": 0.0, "answer_tokens": 0.0, "data_s": 0.0, "pool_samples": 0.0}
        step_loss = torch.zeros((), device=acc.device)
        for _ in range(tc.grad_accum):
            t_data = time.perf_counter()
            examples = self.stream.next_batch(tc.batch_size, step)
            out["pool_samples"] += self.stream.last_from_pool
            batch = {k: v.to(acc.device) for k, v in self.collator(examples).items()}
            out["data_s"] += time.perf_counter() - t_data
            out["samples"] += len(examples)
            out["tokens"] += int(batch["attention_mask"].sum())
            out["answer_tokens"] += int((batch["labels"] != IGNORE_INDEX).sum())
            if self.flops is not None:
                out["model_flops"] = out.get("model_flops", 0.0) + self.flops.sft(batch, tc.loss_chunk)
            with acc.accumulate(self.model):
                loss = answer_loss(self.model, batch, tc.loss_chunk)  # no full logits (train.loss_chunk)
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
