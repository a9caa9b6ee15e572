"""The arithmetic of the GRPO objective: advantages from a step's rewards, and the clipped loss.

Plain tensor functions, no model: ``train/grpo.py`` runs the step that uses them. Rewards may be
NaN where no reward function scored a completion (``train/rewards.py``); such a completion is
left out of its group's statistics and its advantage is 0.
"""

from __future__ import annotations

import math

import torch


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Advantages of a flat ``[groups * group_size]`` reward vector, normalised within each group.

    A NaN reward (no reward function scored that completion) is left out of its group's mean and
    standard deviation, and its advantage is 0, as TRL does."""
    r = rewards.view(-1, group_size)
    scored = ~torch.isnan(r)
    count = scored.sum(dim=1, keepdim=True).clamp(min=1)
    mean = torch.where(scored, r, 0.0).sum(dim=1, keepdim=True) / count
    centred = torch.where(scored, r - mean, 0.0)
    if scale == "group":
        centred = centred / ((centred**2).sum(dim=1, keepdim=True) / count).sqrt().add(eps)
    return centred.reshape(-1)


def group_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each group's standard deviation over its scored rewards (NaN for a group with none)."""
    r = rewards.view(-1, group_size)
    mean = torch.nanmean(r, dim=1, keepdim=True)
    return torch.nanmean((r - mean) ** 2, dim=1).sqrt()


def zero_spread(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group: true when its scored rewards are all equal, or fewer than two (no learning signal)."""
    r = rewards.view(-1, group_size)
    scored = ~torch.isnan(r)
    high = torch.where(scored, r, -math.inf).max(dim=1).values
    low = torch.where(scored, r, math.inf).min(dim=1).values
    return ~(high - low > 1e-9)  # no scored reward: -inf - inf, not > 0


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
