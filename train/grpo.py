"""Group Relative Policy Optimization: the step that ``train.mode: grpo`` runs in the loop.

One optimizer step (``GRPOStep.__call__``) trains on ``train.grad_accum`` draws of
``train.batch_size`` prompts per device (logged as ``train/prompts``):

1. Each draw takes ``batch_size`` prompts from the stream and samples ``group_size`` completions
   for each (temperature, top-p, ``max_new_tokens``), all from the policy as it is before the step.
2. Score every completion with the reward functions, called as TRL calls them
   (``train/rewards.py``); a group whose rewards do not vary teaches nothing. With dynamic sampling
   such groups are dropped and the draw takes more prompts, up to ``refill_tries`` times; when it
   is still short it is filled with dropped groups (zero advantage, zero gradient), so every rank
   does the same work.
3. Advantages: each reward minus its group's mean, divided by the group's standard deviation
   (``scale_rewards: group``) or not (``none``); a completion no reward function scored (all
   returned None) is left out of both and gets advantage 0.
4. Loss: the clipped surrogate ``min(r A, clip(r, 1 - eps, 1 + eps_high) A)`` per completion token,
   where ``r`` is the probability ratio to the policy that sampled (``old``: recomputed once when a
   batch serves ``updates`` > 1 optimizer steps, else the detached current log-probabilities), plus
   ``kl_coef`` times the k3 estimate of the KL to the reference model (with LoRA the adapter
   switched off, so no second model is held). Averaged per sequence then over sequences
   (``loss_norm: sequence``) or over all completion tokens (``token``) of the whole step, all
   draws together: ``grad_accum`` draws of ``batch_size`` prompts give the update of one batch of
   ``grad_accum * batch_size`` prompts. ``accelerator.backward`` (and DeepSpeed's engine) divide
   every loss by the accumulation steps; the step multiplies them back, so the gradient, its
   clipping and its logged norm are those of that loss.

Log-probabilities are taken of the sampled token ids themselves (no re-tokenisation), at the
sampling temperature. Each prompt, its image included, is encoded once per pass and its keys and
values serve all of its completions (``train/prompt_sharing.py``). The arithmetic (advantages,
the loss) is in ``train/grpo_objective.py``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from curriculum.scoring import is_correct
from curriculum.types import Example
from train.collate import VLMCollator
from train.distributed import backward_pass, shards_parameters, synced_generation
from train.flops import FlopCounter, rollout_work, update_work
from train.grpo_objective import group_advantages, group_std, policy_loss, zero_spread
from train.losses import completion_logprobs
from train.prompt_sharing import (
    checkpointing,
    full_logits,
    per_prompt,
    repeat_prompts,
    sample_completions,
    shared_prompt_logits,
)
from train.rewards import Rewards, RewardState, example_columns

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- rollouts


def completion_mask(ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 for each generated token up to and including the first end-of-sequence, 0 after."""
    if eos_id is None:
        return torch.ones_like(ids)
    is_eos = ids == eos_id
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first eos
    return (~after).long()


@dataclass
class Rollout:
    examples: list[Example]  # each prompt repeated group_size times, group by group
    inputs: dict[str, torch.Tensor]  # the prompts as the model reads them, one row each (left-padded)
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T]
    texts: list[str]
    logprobs: torch.Tensor  # [N, T] of each drawn token, under the distribution it was drawn from
    extra: dict[str, list[Any]] = field(default_factory=dict)  # reward functions' log_extra columns


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
    chunk: int = 0,
) -> torch.Tensor:
    """Log-probabilities ``[N, T]`` of the completion tokens ``ids`` after their prompts, in the
    distribution the rollouts sampled from (``suppressed`` tokens excluded).

    ``chunk`` > 0: from the final hidden states, ``chunk`` completion tokens at a time, never the
    whole ``[N, T, vocabulary]`` logits (``train/losses.py``); positions ``mask`` leaves out are 0.

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
    if chunk:
        return completion_logprobs(model, inputs, ids, mask, group, temperature, suppressed, chunk,
                                   shared=not checkpointing(model))  # fmt: skip
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
    step's metrics. The step's groups come from ``draws`` draws (the Accelerator's gradient
    accumulation steps, ``train.grad_accum``); up to ``forward_groups`` groups of one rollout share
    a forward pass. The losses are normalised over all of the step's groups, so neither the draws
    nor the chunking change the update. Gradients synchronise across ranks on the last pass only.

    ``column_names`` (dataset column -> example field, ``train.data.column_names``) gives reward
    functions the fields under the dataset's names too; ``max_steps`` is the run's length, for
    rewards that shape by progress (``trainer_state.max_steps``); ``loss_chunk``: see
    ``token_logprobs`` (``train.loss_chunk``); ``flops``: a ``FlopCounter`` of the model, for the
    step's ``model_flops`` (rollouts, the update's passes and their backward)."""

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
        column_names: dict[str, str] | None = None,
        max_steps: int = 0,
        loss_chunk: int = 0,
        flops: FlopCounter | None = None,
    ) -> None:
        self.gc, self.model, self.collator = gc, model, collator
        self.optimizer, self.accelerator, self.stream = optimizer, accelerator, stream
        self.batch_size, self.max_grad_norm = batch_size, max_grad_norm
        self.column_names, self.max_steps = column_names, max_steps
        self.chunk = loss_chunk  # log-probabilities from hidden states, this many tokens at a time
        self.flops = flops  # counts each step's model FLOPs (model_flops) when given
        # accelerator.backward divides each loss by this (DeepSpeed's engine by its own value,
        # which Accelerate adopts when it prepares the model): each draw is one of those micro-steps.
        self.draws = int(accelerator.gradient_accumulation_steps)
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
        log.info(
            "GRPO: %d prompts per optimizer step and device (train.grad_accum %d x train.batch_size %d), "
            "%d completions each; %d prompts a step over %d device(s)",
            self.draws * batch_size, self.draws, batch_size, gc.group_size,
            self.draws * batch_size * accelerator.num_processes, accelerator.num_processes,
        )  # fmt: skip

    def _score(self, ro: Rollout, step: int) -> torch.Tensor:
        """The rollout's rewards (NaN where no function scored), with TRL's arguments."""
        suffix = self.collator.question_suffix
        values = self.rewards(
            ro.texts,
            prompts=[ex.question + suffix for ex in ro.examples],
            completion_ids=[
                ids[m.bool()].tolist() for ids, m in zip(ro.completion_ids, ro.mask, strict=True)
            ],
            trainer_state=RewardState(step, self.max_steps, float(getattr(self.stream, "epoch", 0))),
            **example_columns(ro.examples, self.column_names),
        )
        ro.extra = dict(self.rewards.extra)
        return torch.tensor(values, dtype=torch.float32)

    def _draw(self, step: int, tally: dict[str, Any]) -> list[Group]:
        """One draw: ``batch_size`` groups with their rewards, refilled past zero-spread groups.
        Counts and reward values go to ``tally``."""
        gc, g = self.gc, self.gc.group_size
        unwrapped = self.accelerator.unwrap_model(self.model)
        kept: list[Group] = []
        spare: list[Group] = []
        for attempt in range(1 + (gc.refill_tries if gc.dynamic_sampling else 0)):
            if attempt > 0:  # every rank draws again as long as any rank misses groups
                missing = torch.tensor(self.batch_size - len(kept), device=self.accelerator.device)
                if int(self.accelerator.reduce(missing, reduction="sum")) == 0:
                    break
            prompts = self.stream.next_batch(self.batch_size, step)
            tally["drawn"] += len(prompts)
            tally["from_pool"] += self.stream.last_from_pool
            ro = rollout(unwrapped, self.collator, prompts, g, gc.max_new_tokens, gc.temperature, gc.top_p,
                         self.accelerator.device, self.synced)  # fmt: skip
            if self.flops is not None:
                tally["flops"] += self.flops.flops(
                    rollout_work(self.flops, ro.inputs, ro.completion_ids), False
                )
            rewards = self._score(ro, step)
            tally["completions"] += len(rewards)
            tally["unscored"] += self.rewards.unscored
            for name, values in self.rewards.last.items():
                tally["parts"].setdefault(name, []).extend(values)
            for name, values in self.rewards.metrics.items():
                tally["metrics"].setdefault(name, []).extend(values)
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
        tally["dropped"] += len(spare)
        tally["filler"] += len(filler)
        return kept + filler

    def _groups(self, step: int) -> tuple[list[Group], dict[str, float]]:
        """The step's groups, ``draws`` draws of ``batch_size``, and what drawing them took."""
        tally: dict[str, Any] = {"drawn": 0, "from_pool": 0, "completions": 0, "unscored": 0, "dropped": 0,
                                 "filler": 0, "parts": {}, "metrics": {}, "flops": 0.0}  # fmt: skip
        groups = [grp for _ in range(self.draws) for grp in self._draw(step, tally)]
        drawn = max(1, tally["drawn"])
        stats = {
            "prompts_drawn": float(tally["drawn"]),
            "pool_fraction": tally["from_pool"] / drawn,
            "groups_dropped": float(tally["dropped"]),
            "zero_spread_fraction": tally["dropped"] / drawn,
            "filler_groups": float(tally["filler"]),
            "unscored_fraction": tally["unscored"] / max(1, tally["completions"]),
        }
        if self.flops is not None:
            stats["model_flops"] = tally["flops"]
        for name, values in tally["parts"].items():  # each function's mean over what it scored
            scored = [v for v in values if not math.isnan(v)]
            if scored:
                stats[f"reward/{name}"] = sum(scored) / len(scored)
        for name, values in tally["metrics"].items():
            stats[f"reward_metrics/{name}"] = sum(values) / len(values)
        return groups, stats

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
        # The whole step's sequences or tokens, all draws together: the loss of one big batch.
        total = float(lengths.sum().clamp(min=1)) if gc.loss_norm == "token" else float(len(lengths))
        eps_high = gc.clip_eps_high if gc.clip_eps_high is not None else gc.clip_eps
        old = ref = None
        with torch.no_grad():
            if gc.updates > 1:  # the sampling policy, before the first update moves it
                old = [
                    token_logprobs(self.model, *b, gc.temperature, self.suppressed, self.chunk)
                    for b in batches
                ]
            if gc.kl_coef:
                ref = [self._reference_logprobs(*b) for b in batches]
        sampled = [torch.cat([groups[i].ro.logprobs[groups[i].rows] for i in chunk]) for chunk in chunks]
        loss_total, clip, kls, gaps, grad_norm = 0.0, [], [], [], None
        for update in range(gc.updates):
            for c, (inputs, ids, mask) in enumerate(batches):
                with backward_pass(acc, self.model, last=c == len(batches) - 1):
                    logp = token_logprobs(
                        self.model, inputs, ids, mask, gc.temperature, self.suppressed, self.chunk
                    )
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
                    # The chunks' losses already add up to the step's loss: undo the division by
                    # the accumulation steps that accelerator.backward (or DeepSpeed) applies.
                    acc.backward(loss * self.draws)
                loss_total += float(loss.detach()) / gc.updates
                clip.append(s["clip_fraction"])
                kls.append(s["kl"])
            if self.max_grad_norm > 0:  # under DeepSpeed: its engine clipped, this reads the norm
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        t_update = time.perf_counter() - t0 - t_gen
        if self.flops is not None:  # each pass trains `updates` times; the old and reference passes
            works = [update_work(self.flops, *b, not checkpointing(self.model), self.chunk) for b in batches]
            trained = sum(self.flops.flops(w, True) for w in works) * gc.updates
            forward = sum(self.flops.flops(w, False) for w in works) * ((gc.updates > 1) + bool(gc.kl_coef))
            stats["model_flops"] += trained + forward
        passed = [is_correct(grp.ro.texts[k], grp.ro.examples[k].answer) for grp in groups for k in grp.range]
        logged = groups[: gc.log_completions]
        extra = list(dict.fromkeys(k for grp in logged for k in grp.ro.extra))
        self.samples = [grp.sample(extra) for grp in logged]
        out = {
            "loss": loss_total,
            # Over the completions some reward function scored (NaN when none was).
            "reward_mean": float(torch.nanmean(rewards)),
            "reward_std": float(torch.nanmean(group_std(rewards, g))),
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
            "prompts": float(len(groups)),  # prompts trained on (this device), all draws
            **stats,
        }
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        return out

    def _reference_logprobs(
        self, inputs: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        if self.reference is not None:
            return token_logprobs(self.reference, inputs, ids, mask, self.gc.temperature, self.suppressed,
                                  self.chunk)  # fmt: skip
        unwrapped = self.accelerator.unwrap_model(self.model)
        with unwrapped.disable_adapter():
            return token_logprobs(
                unwrapped, inputs, ids, mask, self.gc.temperature, self.suppressed, self.chunk
            )


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

    def sample(self, extra: Sequence[str] = ()) -> dict[str, Any]:
        """The group's first completion for the log, with the ``extra`` columns reward functions
        logged for it (None where a column has no value for it)."""
        k = self.rows.start
        ex = self.ro.examples[k]
        row = {"question": ex.question, "answer": ex.answer, "completion": self.ro.texts[k],
               "reward": float(self.rewards[0]), "image": ex.image}  # fmt: skip
        for column in extra:
            values = self.ro.extra.get(column, [])
            row[column] = values[k] if k < len(values) else None
        return row
