"""What the loop must know about the distributed backend (DDP, DeepSpeed ZeRO-2/3, FSDP).

Accelerate hides most of it; these helpers cover the rest: the DeepSpeed config fields that
Accelerate would fill from a dataloader the loop does not have, several backward passes per
optimizer step (GRPO's chunks) that DeepSpeed would otherwise step after each, and the full
state dict of a sharded model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def deepspeed_config(accelerator: Any) -> dict[str, Any] | None:
    """The run's DeepSpeed config (a live dict Accelerate passes on), or None without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin.deepspeed_config if plugin is not None else None


def zero_stage(accelerator: Any) -> int:
    """The DeepSpeed ZeRO stage (0 without DeepSpeed)."""
    config = deepspeed_config(accelerator)
    return int(config.get("zero_optimization", {}).get("stage", 0)) if config else 0


def shards_parameters(accelerator: Any) -> bool:
    """True when no rank holds the whole model (ZeRO-3, FSDP)."""
    return zero_stage(accelerator) == 3 or accelerator.distributed_type.name == "FSDP"


def synced_generation(accelerator: Any) -> bool:
    """True when every rank must run each decoding step until all ranks are done: several ranks
    whose forward passes gather sharded parameters (ZeRO-3, FSDP)."""
    return accelerator.num_processes > 1 and shards_parameters(accelerator)


def fill_deepspeed_config(accelerator: Any, batch_size: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed fields left ``auto`` that Accelerate cannot fill without a prepared
    dataloader: the micro-batch (``train.batch_size``) and the clipping norm (``train.max_grad_norm``)."""
    config = deepspeed_config(accelerator)
    if config is None:
        return
    if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        config["train_micro_batch_size_per_gpu"] = batch_size
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = max_grad_norm
    if config.get("train_batch_size") == "auto":
        accum = config.get("gradient_accumulation_steps", 1)
        accum = accelerator.gradient_accumulation_steps if accum == "auto" else accum
        config["train_batch_size"] = batch_size * accum * accelerator.num_processes


@contextlib.contextmanager
def backward_pass(accelerator: Any, model: Any, last: bool) -> Iterator[None]:
    """One of several backward passes that make up one optimizer step: gradients are reduced
    across ranks (DDP) and DeepSpeed steps only on the ``last``."""
    accelerator.sync_gradients = last
    try:
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            yield
    finally:
        accelerator.sync_gradients = True


def agree_on_failure(accelerator: Any, error: BaseException | None, what: str) -> None:
    """Make every rank raise when any rank failed ``what``; call it on every rank after the local
    work and before the next collective. A rank that raised on its own would leave the others
    waiting in that collective forever; here they all learn of it and raise together, so the
    caller (a curriculum round, an evaluation) fails the same way on every rank."""
    if accelerator.num_processes > 1:
        flag = torch.tensor([1.0 if error is not None else 0.0], device=accelerator.device)
        failed = int(accelerator.reduce(flag, reduction="sum").item())
    else:
        failed = int(error is not None)
    if not failed:
        return
    if error is not None:
        raise RuntimeError(f"{what} failed on rank {accelerator.process_index}: {error}") from error
    raise RuntimeError(f"{what} failed on {failed} other rank(s); this rank stops with them")


def full_state_dict(accelerator: Any, model: Any) -> dict[str, torch.Tensor] | None:
    """The whole model's weights gathered from every rank's shard (every rank must call this;
    the main process gets them), or None when each rank already holds them all."""
    if not shards_parameters(accelerator):
        return None
    return accelerator.get_state_dict(model)
