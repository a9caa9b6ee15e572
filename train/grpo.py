"""Group Relative Policy Optimization: the step that ``train.mode: grpo`` runs in the loop.

One optimizer step (``GRPOStep.__call__``):

1. Draw ``batch_size`` prompts from the stream and sample ``group_size`` completions for each
   (temperature, top-p, ``max_new_tokens``).
2. Score every completion with the reward functions (``train/rewards.py``); a group whose rewards
   do not vary teaches nothing. With dynamic sampling such groups are dropped and more prompts are
   drawn, up to ``refill_tries`` times; when the batch is still short it is filled with dropped
   groups (zero advantage, zero gradient), so every rank does the same work.
3. Advantages: each reward minus its group's mean, divided by the group's standard deviation
   (``scale_rewards: group``) or not (``none``).
4. Loss: the clipped surrogate ``min(r A, clip(r, 1 - eps, 1 + eps_high) A)`` per completion token,
   where ``r`` is the probability ratio to the policy that sampled (``old``: recomputed once when a
   batch serves ``updates`` > 1 optimizer steps, else the detached current log-probabilities), plus
   ``kl_coef`` times the k3 estimate of the KL to the reference model (with LoRA the adapter
   switched off, so no second model is held). Averaged per sequence then over sequences
   (``loss_norm: sequence``) or over all completion tokens of the batch (``token``).

Log-probabilities are taken of the sampled token ids themselves (no re-tokenisation), at the
sampling temperature. Each prompt, its image included, is encoded once per pass and its keys and
values serve all of its completions (``train/prompt_sharing.py``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from curriculum.scoring import is_correct
from curriculum.types import Example
from train.collate import VLMCollator
from train.distributed import backward_pass, shards_parameters, synced_generation
from train.prompt_sharing import (
    checkpointing,
    full_logits,
    per_prompt,
    repeat_prompts,
    sample_completions,
    shared_prompt_logits,
)
from train.rewards import Rewards

# ----------------------------------------------------------------------------- the arithmetic


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Advantages of a flat ``[groups * group_size]`` reward vector, normalised within each group."""
    r = rewards.view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (r.std(dim=1, keepdim=True, unbiased=False) + eps)
    return centred.reshape(-1)


def zero_spread(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group: true when all its rewards are equal (no learning signal)."""
    r = rewards.view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values) <= 1e-9


def completion_mask(ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 for each generated token up to and including the first end-of-sequence, 0 after."""
    if eos_id is None:
        return torch.ones_like(ids)
    is_eos = ids == eos_id
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first eos
    return (~after).long()


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    norm: str = "sequence",
    total: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped GRPO loss over completion tokens (``[N, T]`` tensors, ``advantages`` ``[N]``).

    ``total``: the batch's number of sequences (``sequence``) or completion tokens (``token``)
    when these rows are one part of it, so that the parts' losses add up to the batch's loss."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    unclipped, clipped = ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_coef:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, always >= 0
        per_token = per_token + kl_coef * kl
    if norm == "token":
        loss = (per_token * mask).sum() / (total or mask.sum().clamp(min=1))
    else:
        loss = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum() / (total or len(mask))
    n = mask.sum().clamp(min=1)
    stats = {
        # Tokens where the clipped term wins the min: their gradient is cut.
        "clip_fraction": float(((clipped < unclipped).to(mask.dtype) * mask).sum() / n),
        "kl": float((kl * mask).sum() / n),
    }
    return loss, stats


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    examples: list[Example]  # each prompt repeated group_size times, group by group
    inputs: dict[str, torch.Tensor]  # the prompts as the model reads them, one row each (left-padded)
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T]
    texts: list[str]
    logprobs: torch.Tensor  # [N, T] of each drawn token, under the distribution it was drawn from


@torch.no_grad()
def rollout(
    model: Any,
    collator: VLMCollator,
    prompts: list[Example],
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    device: torch.device,
    synced: bool = False,
) -> Rollout:
    """``group_size`` sampled completions per prompt (``sample_completions``). ``synced``: all
    ranks decode in step (sharded parameters)."""
    examples = [ex for ex in prompts for _ in range(group_size)]
    inputs = {k: v.to(device) for k, v in collator.prompts(prompts).items()}
    was_training = model.training
    model.eval()
    tokenizer = collator.tokenizer
    ids, logprobs = sample_completions(model, inputs, group_size, max_new_tokens, temperature, top_p,
                                       collator.media_token_ids, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, synced)  # fmt: skip
    model.train(was_training)
    mask = completion_mask(ids, tokenizer.eos_token_id)
    texts = collator.decode(ids)  # the sampler already pads what follows each end-of-sequence
    return Rollout(examples, inputs, ids, mask, texts, logprobs)


def token_logprobs(
    model: Any,
    inputs: dict[str, torch.Tensor],
    ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    suppressed: list[int] | None = None,
) -> torch.Tensor:
    """Log-probabilities ``[N, T]`` of the completion tokens ``ids`` after their prompts, in the
    distribution the rollouts sampled from (``suppressed`` tokens excluded).

    ``inputs`` hold each prompt once (left-padded rows); ``ids`` and ``mask`` hold the same number
    of completions for every prompt, prompt by prompt. Each prompt, its image included, is encoded
    once and its keys and values are shared by all its completions (``shared_prompt_logits``);
    under gradient checkpointing, which drops the cache, every completion is encoded with its own
    copy of the prompt instead. Both give the same numbers."""
    group = ids.shape[0] // inputs["input_ids"].shape[0]
    if group * inputs["input_ids"].shape[0] != ids.shape[0]:
        raise ValueError(
            f"{ids.shape[0]} completions do not split evenly over {inputs['input_ids'].shape[0]} prompts"
        )
    if checkpointing(model):
        logits = full_logits(model, repeat_prompts(inputs, group), ids, mask)
    else:
        logits = shared_prompt_logits(model, inputs, ids, mask, group)
    logits = logits.float() / temperature
    if suppressed:
        logits[..., suppressed] = float("-inf")
    return torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


# ----------------------------------------------------------------------------- the step


class GRPOStep:
    """One GRPO optimizer step per call (``updates`` of them when a batch is reused); returns the
    step's metrics. Up to ``forward_groups`` groups of one rollout share a forward pass; the
    losses are normalised over the whole batch, so the chunking does not change the update.
    Gradients synchronise across ranks on the last pass only."""

    def __init__(
        self,
        gc: Any,
        model: Any,
        collator: VLMCollator,
        optimizer: Any,
        accelerator: Any,
        stream: Any,
        batch_size: int,
        max_grad_norm: float,
        lora: bool,
    ) -> None:
        self.gc, self.model, self.collator = gc, model, collator
        self.optimizer, self.accelerator, self.stream = optimizer, accelerator, stream
        self.batch_size, self.max_grad_norm = batch_size, max_grad_norm
        self.rewards = Rewards(gc.rewards)
        self.suppressed = collator.media_token_ids
        self.synced = synced_generation(accelerator)
        self.reference = None
        if gc.kl_coef and not lora and shards_parameters(accelerator):
            raise ValueError(
                "grpo.kl_coef without LoRA needs a frozen copy of the whole model, which ZeRO-3 and FSDP "
                "do not hold: enable model.lora (the adapter switched off is the reference) or use ZeRO-2"
            )
        if gc.kl_coef and not lora:  # a frozen copy; with LoRA the base model is the reference
            self.reference = copy.deepcopy(accelerator.unwrap_model(model)).eval().requires_grad_(False)
        self.samples: list[dict[str, Any]] = []  # a few completions of the last step, for logging
        self.groups: list[Group] = []  # the last step's groups

    def _groups(self, step: int) -> tuple[list[Group], dict[str, float]]:
        """``batch_size`` groups with their rewards, refilled past zero-spread groups."""
        gc, g = self.gc, self.gc.group_size
        unwrapped = self.accelerator.unwrap_model(self.model)
        kept: list[Group] = []
        spare: list[Group] = []
        drawn = from_pool = 0
        parts: dict[str, list[float]] = {}
        for attempt in range(1 + (gc.refill_tries if gc.dynamic_sampling else 0)):
            if attempt > 0:  # every rank draws again as long as any rank misses groups
                missing = torch.tensor(self.batch_size - len(kept), device=self.accelerator.device)
                if int(self.accelerator.reduce(missing, reduction="sum")) == 0:
                    break
            prompts = self.stream.next_batch(self.batch_size, step)
            drawn += len(prompts)
            from_pool += self.stream.last_from_pool
            ro = rollout(unwrapped, self.collator, prompts, g, gc.max_new_tokens, gc.temperature, gc.top_p,
                         self.accelerator.device, self.synced)  # fmt: skip
            rewards = torch.tensor(self.rewards(ro.texts, **columns(ro.examples)), dtype=torch.float32)
            for name, values in self.rewards.last.items():
                parts.setdefault(name, []).extend(values)
            flat = zero_spread(rewards, g)
            for i in range(len(prompts)):
                group = Group(ro, slice(i * g, (i + 1) * g), rewards[i * g : (i + 1) * g])
                if gc.dynamic_sampling and bool(flat[i]):
                    spare.append(group)
                elif len(kept) < self.batch_size:
                    kept.append(group)
            if not gc.dynamic_sampling:
                break
        filler = spare[: self.batch_size - len(kept)]  # still short: zero-advantage groups
        stats = {
            "prompts_drawn": float(drawn),
            "pool_fraction": from_pool / max(1, drawn),
            "groups_dropped": float(len(spare)),
            "zero_spread_fraction": len(spare) / max(1, drawn),
            "filler_groups": float(len(filler)),
            **{f"reward/{k}": sum(v) / len(v) for k, v in parts.items()},
        }
        return kept + filler, stats

    def __call__(self, step: int) -> dict[str, float]:
        gc, g, acc = self.gc, self.gc.group_size, self.accelerator
        t0 = time.perf_counter()
        groups, stats = self._groups(step)
        self.groups = groups
        t_gen = time.perf_counter() - t0
        rewards = torch.cat([grp.rewards for grp in groups])
        advantages = group_advantages(rewards, g, gc.scale_rewards).to(acc.device).view(len(groups), g)
        # Groups of one rollout share their padding: up to forward_groups of them per forward pass.
        chunks = forward_chunks(groups, gc.forward_groups)
        batches = [_concat([groups[i].tensors() for i in chunk]) for chunk in chunks]
        adv = [advantages[chunk].reshape(-1) for chunk in chunks]
        lengths = torch.cat([grp.ro.mask[grp.rows].sum(dim=1) for grp in groups]).float()
        total = float(lengths.sum().clamp(min=1)) if gc.loss_norm == "token" else float(len(lengths))
        eps_high = gc.clip_eps_high if gc.clip_eps_high is not None else gc.clip_eps
        old = ref = None
        with torch.no_grad():
            if gc.updates > 1:  # the sampling policy, before the first update moves it
                old = [token_logprobs(self.model, *b, gc.temperature, self.suppressed) for b in batches]
            if gc.kl_coef:
                ref = [self._reference_logprobs(*b) for b in batches]
        sampled = [torch.cat([groups[i].ro.logprobs[groups[i].rows] for i in chunk]) for chunk in chunks]
        loss_total, clip, kls, gaps, grad_norm = 0.0, [], [], [], None
        for update in range(gc.updates):
            for c, (inputs, ids, mask) in enumerate(batches):
                with backward_pass(acc, self.model, last=c == len(batches) - 1):
                    logp = token_logprobs(self.model, inputs, ids, mask, gc.temperature, self.suppressed)
                    if update == 0:  # sampler and trainer should agree: a gap means they do not
                        gap = torch.where(mask.bool(), (logp.detach() - sampled[c]).abs(), 0.0)
                        gaps.append(float(gap.sum() / mask.sum().clamp(min=1)))
                    loss, s = policy_loss(
                        logp,
                        old[c] if old is not None else logp.detach(),
                        adv[c],
                        mask,
                        gc.clip_eps,
                        eps_high,
                        ref[c] if ref is not None else None,
                        gc.kl_coef,
                        gc.loss_norm,
                        total,
                    )
                    acc.backward(loss)
                loss_total += float(loss.detach()) / gc.updates
                clip.append(s["clip_fraction"])
                kls.append(s["kl"])
            if self.max_grad_norm > 0:  # under DeepSpeed: its engine clipped, this reads the norm
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        t_update = time.perf_counter() - t0 - t_gen
        passed = [is_correct(grp.ro.texts[k], grp.ro.examples[k].answer) for grp in groups for k in grp.range]
        self.samples = [grp.sample() for grp in groups[: gc.log_completions]]
        out = {
            "loss": loss_total,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.view(-1, g).std(dim=1, unbiased=False).mean()),
            "pass_rate": sum(passed) / len(passed),
            "kl": sum(kls) / len(kls),
            # Mean |log-prob| difference per completion token between the sampling pass and the
            # update's first pass: zero up to float error unless dropout or precision differ.
            "sampler_logprob_gap": sum(gaps) / len(gaps),
            "clip_fraction": sum(clip) / len(clip),
            "completion_length": float(lengths.mean()),
            "generation_s": t_gen,
            "update_s": t_update,
            "rollout_tokens": float(lengths.sum()),
            "samples": float(len(rewards)),  # completions trained on
            **stats,
        }
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        return out

    def _reference_logprobs(
        self, inputs: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        if self.reference is not None:
            return token_logprobs(self.reference, inputs, ids, mask, self.gc.temperature, self.suppressed)
        unwrapped = self.accelerator.unwrap_model(self.model)
        with unwrapped.disable_adapter():
            return token_logprobs(unwrapped, inputs, ids, mask, self.gc.temperature, self.suppressed)


def forward_chunks(groups: list[Group], size: int) -> list[list[int]]:
    """Indices of consecutive groups from the same rollout, at most ``size`` per chunk."""
    chunks: list[list[int]] = []
    for i, grp in enumerate(groups):
        if chunks and len(chunks[-1]) < size and groups[chunks[-1][-1]].ro is grp.ro:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _concat(
    parts: list[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Several groups' tensors (of one rollout: same padding) as one batch."""
    inputs = {key: torch.cat([p[0][key] for p in parts]) for key in parts[0][0]}
    return inputs, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def columns(examples: list[Example]) -> dict[str, list[Any]]:
    """The example fields a reward function may read, one list each."""
    return {
        "answer": [ex.answer for ex in examples],
        "question": [ex.question for ex in examples],
        "skill": [ex.skill for ex in examples],
        "choices": [ex.params.get("choices") for ex in examples],
    }


@dataclass
class Group:
    """One prompt's ``group_size`` completions: rows ``rows`` of a rollout, and their rewards."""

    ro: Rollout
    rows: slice
    rewards: torch.Tensor

    @property
    def range(self) -> range:
        return range(self.rows.start, self.rows.stop)

    def tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The group's prompt inputs (its prompt's row, once), completion ids and completion mask."""
        g = self.rows.stop - self.rows.start
        return (
            per_prompt(self.ro.inputs)[self.rows.start // g],
            self.ro.completion_ids[self.rows],
            self.ro.mask[self.rows],
        )

    def sample(self) -> dict[str, Any]:
        ex = self.ro.examples[self.rows.start]
        return {"question": ex.question, "answer": ex.answer, "completion": self.ro.texts[self.rows.start],
                "reward": float(self.rewards[0]), "image": ex.image}  # fmt: skip
