"""Config sections ``train``, ``grpo`` and ``eval``: the optimisation and its measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from train.config.fields import Section, require


@dataclass
class TrainConfig(Section):
    SECTION = "train"

    mode: Literal["sft", "grpo"] = "sft"
    """Training objective: ``sft`` (cross-entropy on the answers) or ``grpo`` (Group Relative
    Policy Optimization on sampled answers, settings under ``grpo``)."""
    steps: int = 100
    """Optimizer steps."""
    batch_size: int = 8
    """Examples per device per micro-batch (``grpo``: prompts per device per draw)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (``grpo``: draws of ``batch_size`` prompts that one
    optimizer step trains on as one batch)."""
    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (never on biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warm-up from ``min_lr_ratio`` x ``lr`` to ``lr`` over these steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr`` (cosine and linear)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Autocast precision. ``auto``: bf16 where the device supports it, else none."""
    log_every: int = 10
    """Steps between metric lines."""
    save_every: int = 0
    """Steps between checkpoints (0: only at the end)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept on disk."""
    resume: str = "auto"
    """``auto``: continue from the newest checkpoint of this run if there is one; ``never``;
    or a checkpoint folder."""
    cpu: bool = False
    """Train on CPU even when a GPU is present."""
    save_model: bool = True
    """Write the final model (and processor) to ``<run>/model`` at the end."""
    loss_chunk: int = 1024
    """Compute the loss from the final hidden states of the scored tokens only (``sft``: the answer
    tokens; ``grpo``: the completion tokens), projecting this many at a time onto the vocabulary, so
    the whole ``[tokens, vocabulary]`` logits are never held; same loss and gradients. 0: the
    model's own full-logits loss."""

    peak_flops: float = 0.0
    """Peak dense bf16 FLOP/s of one device, for the model FLOPs utilisation ``train/mfu``. 0: the
    ``LESSONLOOP_PEAK_FLOPS`` environment variable, else the vendor figure for the GPU's name
    (``train/flops.py``); on a device neither names (a CPU), ``train/mfu`` is left out."""
    prefetch: Literal["auto", "always", "never"] = "auto"
    """SFT: build the next micro-batch in a background thread while this one trains (the same
    batches as without; on a GPU its tensors are pinned and copied without blocking). ``auto``:
    on a GPU only (on a CPU the thread takes cores from the step itself)."""
    data_workers: int = 0
    """SFT: processes that collate micro-batches ahead (pictures processed, text tokenized), each
    with its own copy of the processor, ``2 x data_workers`` batches in flight; the same batches
    as without. For a GPU host whose cores outnumber what the step uses. 0: batches are built in
    the training process (ahead in a thread, per ``prefetch``)."""
    packing: bool = False
    """SFT: lay the samples of each micro-batch end to end instead of padding them, each with its
    own positions and no token attending to another sample's (the same loss and gradients, no
    compute on padding). Qwen2-VL, Qwen2.5-VL, LLaVA, Idefics3 and SmolVLM; others are refused."""
    pack_tokens: int = 0
    """With ``packing``: the most tokens in one packed row (0: the whole micro-batch in one row);
    a sample longer than that has a row of its own."""

    def check(self) -> None:
        require(self.steps > 0, "steps", "must be positive")
        require(self.batch_size > 0, "batch_size", "must be positive")
        require(self.grad_accum > 0, "grad_accum", "must be positive")
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "must be positive")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
                "must hold two numbers in [0, 1)")  # fmt: skip
        require(0 <= self.warmup_steps <= self.steps, "warmup_steps", "must lie in [0, train.steps]")
        require(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must lie in [0, 1]")
        require(self.max_grad_norm >= 0 and math.isfinite(self.max_grad_norm), "max_grad_norm",
                "must be >= 0 (0: no clipping)")  # fmt: skip
        require(self.log_every > 0, "log_every", "must be positive")
        require(self.save_every >= 0, "save_every", "must be >= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        require(self.peak_flops >= 0 and math.isfinite(self.peak_flops), "peak_flops",
                "must be >= 0 (0: by the device's name)")  # fmt: skip
        require(self.loss_chunk >= 0, "loss_chunk", "must be >= 0 (0: the model's own full-logits loss)")
        require(bool(self.resume.strip()), "resume", "must be 'auto', 'never' or a checkpoint folder")
        require(not self.packing or self.mode == "sft", "packing", "is for train.mode=sft only")
        require(self.data_workers >= 0, "data_workers", "must be >= 0 (0: batches built in this process)")
        require(not self.data_workers or self.mode == "sft", "data_workers", "is for train.mode=sft only")
        require(not self.data_workers or self.prefetch != "never", "data_workers",
                "builds batches ahead; it cannot be used with train.prefetch=never")  # fmt: skip
        require(self.pack_tokens >= 0, "pack_tokens", "must be >= 0 (0: one row per micro-batch)")
        require(self.pack_tokens == 0 or self.packing, "pack_tokens", "needs train.packing=true")


@dataclass
class GRPOConfig(Section):
    SECTION = "grpo"

    group_size: int = 8
    """Completions sampled per prompt (G); ``train.batch_size`` x ``train.grad_accum`` prompts per
    step and device."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (log-probabilities are taken at the same one)."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    max_new_tokens: int = 16
    """Longest completion."""
    rewards: dict[str, float] = field(default_factory=lambda: {"correct": 1.0})
    """Reward functions and their weights: built in ``exact``, ``correct``, ``numeric``,
    ``choice``, ``format``, or ``module:function`` for your own (TRL's signature)."""
    scale_rewards: Literal["group", "none"] = "group"
    """Divide advantages by the group's reward standard deviation (``group``) or not."""
    updates: int = 1
    """Optimizer steps per batch of rollouts; above 1 the ratio to the sampling policy is clipped."""
    clip_eps: float = 0.2
    """Lower clip of the probability ratio (1 - eps)."""
    clip_eps_high: float | None = None
    """Upper clip (1 + eps_high); null: ``clip_eps``."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the reference model (with LoRA: the adapter switched off)."""
    loss_norm: Literal["sequence", "token"] = "sequence"
    """Average the loss per completion then over completions, or over all completion tokens."""
    forward_groups: int = 4
    """Groups (of one rollout) per forward and backward pass in the update: more is faster and
    takes more memory; the loss is the same."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards all agree and draw more prompts in their place."""
    refill_tries: int = 3
    """Extra draws per step at most when refilling; still short, the batch keeps dropped groups."""
    log_completions: int = 4
    """Completions (with images in W&B) logged at each log step."""

    def check(self) -> None:
        require(self.group_size >= 2, "group_size", "must be at least 2 (advantages compare within a group)")
        require(self.temperature > 0, "temperature", "must be positive")
        require(0.0 < self.top_p <= 1.0, "top_p", "must lie in (0, 1]")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be positive")
        require(bool(self.rewards), "rewards", "must name at least one reward function")
        require(all(math.isfinite(w) for w in self.rewards.values()), "rewards", "weights must be finite")
        require(self.updates >= 1, "updates", "must be >= 1")
        require(0.0 < self.clip_eps < 1.0, "clip_eps", "must lie in (0, 1)")
        require(self.clip_eps_high is None or self.clip_eps_high > 0, "clip_eps_high", "must be positive")
        require(self.kl_coef >= 0, "kl_coef", "must be >= 0")
        require(self.forward_groups >= 1, "forward_groups", "must be >= 1")
        require(self.refill_tries >= 0, "refill_tries", "must be >= 0")
        require(self.log_completions >= 0, "log_completions", "must be >= 0")


@dataclass
class EvalConfig(Section):
    SECTION = "eval"

    every: int = 0
    """Steps between evaluations (0: only at the start and the end)."""
    at_start: bool = True
    """Evaluate before the first step."""
    max_examples: int = 0
    """Evaluate on at most this many items of the eval split (0: all)."""
    batch_size: int = 32
    """Prompts per generation batch per device."""
    max_new_tokens: int = 8
    """Generated tokens per answer."""
    samples: int = 0
    """Also sample this many answers per item at ``temperature`` and report their mean pass rate
    (``sampled``: pass@1 averaged over the samples, as GRPO work reports it) and ``pass_at_k``
    (any sample right), overall and per skill; 0: greedy answers only."""
    temperature: float = 1.0
    """Sampling temperature of ``samples``."""
    sample_seed: int = 0
    """Seed of the sampled answers: every evaluation draws from the same seed, and the training
    run's random state is left as it was."""
    decoder: Literal["static", "generate"] = "static"
    """How greedy answers (evaluation, curriculum probes) are decoded: ``static``, batched with a
    key-value cache allocated once for the longest answer and written in place
    (``train/decode.py``); ``generate``, transformers' ``generate``. The answers are the same."""
    compile: bool = False
    """With ``decoder: static`` on a GPU: compile the decoding step (``torch.compile``, CUDA graphs);
    the first evaluation pays for compiling. Elsewhere decoding runs uncompiled."""

    def check(self) -> None:
        require(self.every >= 0, "every", "must be >= 0 (0: only at the start and the end)")
        require(self.max_examples >= 0, "max_examples", "must be >= 0 (0: all)")
        require(self.batch_size > 0, "batch_size", "must be positive")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be positive")
        require(self.samples >= 0, "samples", "must be 0 or more")
        require(self.temperature > 0, "temperature", "must be positive")
