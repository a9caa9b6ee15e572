"""GRPO: rewards, advantages, the loss by hand, dynamic sampling, steps that move the policy, the loop."""

import dataclasses
import json
import math

import pytest
import torch

from train.grpo import completion_mask, group_advantages, policy_loss, token_logprobs, zero_spread
from train.rewards import Rewards, choice, correct, exact, format_, numeric, resolve


def short(completions, **_):
    """A test reward: shorter completions are better."""
    return [-float(len(c)) for c in completions]


def flat_for_shapes(completions, question, **_):
    """Flat (no signal) on shape questions, shorter-is-better elsewhere."""
    return [1.0 if "shape" in q else -float(len(c)) for c, q in zip(completions, question, strict=True)]


def same(completions, **_):
    """A test reward that cannot tell completions apart."""
    return [1.0] * len(completions)


def test_built_in_rewards():
    answers = ["3", "red", "0.5", "yes"]
    said = ["I count. Answer: three", "Red.", "Answer: 0.52", "no"]
    assert correct(said, answers) == [1.0, 1.0, 0.0, 0.0]
    assert exact(["3", "Answer: red", " 0.5", "Yes"], answers) == [1.0, 1.0, 1.0, 0.0]
    assert numeric(said, answers) == [1.0, 0.0, 1.0, 0.0]  # number words count; 0.52 is within 5 %
    assert numeric(["Answer: 105"], ["100"], tolerance=0.1) == [1.0]
    assert choice(
        ["B", "(A)", "blue"], ["blue", "blue", "blue"], choices=[["red", "blue"], ["red", "blue"], None]
    ) == [
        1.0,
        0.0,
        1.0,
    ]
    assert format_(["so. Answer: 4", "4", "Answer: "]) == [1.0, 0.0, 0.0]


def test_rewards_combine_by_weight_and_take_user_functions():
    rewards = Rewards({"correct": 1.0, "format": 0.5, "tests.test_grpo:short": 0.1})
    total = rewards(["Answer: 3", "4"], answer=["3", "3"], question=["q", "q"])
    assert total == pytest.approx([1.0 + 0.5 - 0.9, -0.1])
    assert rewards.last["format"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown reward 'corect'"):
        resolve("corect")
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve("tests.test_grpo:nowhere")


def test_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(rewards, 4, "group")
    # Group 1: mean 0.25, std sqrt(3)/4; group 2 has no spread.
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25]) / (math.sqrt(3) / 4 + 1e-4)
    assert torch.allclose(adv[:4], expected, atol=1e-5) and torch.all(adv[4:] == 0)
    assert torch.allclose(group_advantages(rewards, 4, "none")[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    assert zero_spread(rewards, 4).tolist() == [False, True]


def test_completion_mask_keeps_tokens_up_to_the_first_eos():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    assert completion_mask(ids, 2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_the_loss_matches_a_hand_computation():
    # Two completions: lengths 1 and 3; advantages +1 and -1; ratio 1.5 everywhere (clipped at 1.2 for +1).
    logp = torch.full((2, 3), math.log(1.5))
    old = torch.zeros(2, 3)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask, 0.2, 0.2, norm="sequence")
    # Sequence 1: -min(1.5, 1.2) = -1.2. Sequence 2: -min(-1.5, -1.2) = 1.5 per token.
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)
    loss, _ = policy_loss(logp, old, adv, mask, 0.2, 0.2, norm="token")
    assert loss.item() == pytest.approx((-1.2 + 3 * 1.5) / 4)
    assert stats["clip_fraction"] == pytest.approx(1 / 4)  # only the +1 token is clipped
    # The k3 KL: exp(d) - d - 1 with d = ref - logp.
    ref = logp + 0.5
    loss_kl, stats = policy_loss(logp, old, adv, mask, 0.2, 0.2, ref, kl_coef=0.1, norm="token")
    k3 = math.exp(0.5) - 0.5 - 1
    assert stats["kl"] == pytest.approx(k3) and loss_kl.item() == pytest.approx(loss.item() + 0.1 * k3)
    # Asymmetric clipping (clip-higher): an upper bound of 1.6 leaves the +1 token unclipped.
    loss, stats = policy_loss(logp, old, adv, mask, 0.2, 0.6, norm="sequence")
    assert loss.item() == pytest.approx((-1.5 + 1.5) / 2) and stats["clip_fraction"] == 0


class FixedStream:
    """Hands out the given batches in turn (then repeats the last)."""

    def __init__(self, batches):
        self.batches, self.calls, self.last_from_pool = batches, 0, 0

    def next_batch(self, batch_size, step):
        batch = self.batches[min(self.calls, len(self.batches) - 1)]
        self.calls += 1
        return batch[:batch_size]


def _step(tiny_qwen, batches, grad_accum=1, **grpo):
    from accelerate import Accelerator

    from models import load_model
    from train.collate import VLMCollator
    from train.config import GRPOConfig
    from train.grpo import GRPOStep

    torch.manual_seed(0)
    model, processor = load_model(str(tiny_qwen), dtype="float32")
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=grad_accum)
    optimizer = torch.optim.Adam(model.parameters(), lr=grpo.pop("lr", 1e-2))
    model, optimizer = accelerator.prepare(model, optimizer)
    gc = GRPOConfig(**{"group_size": 4, "max_new_tokens": 4, **grpo})
    collator = VLMCollator(processor)
    stream = FixedStream(batches)
    return GRPOStep(gc, model, collator, optimizer, accelerator, stream, len(batches[0]), 1.0, False), stream


def _sequence_logprobs(step, groups):
    with torch.no_grad():
        return torch.cat(
            [(token_logprobs(step.model, *g.tensors(), 1.0) * g.tensors()[2]).sum(1) for g in groups]
        )


def test_a_step_moves_probability_toward_the_better_completions(tiny_qwen, world_small):
    step, _ = _step(tiny_qwen, [world_small["probe"][:4]], rewards={"tests.test_grpo:short": 1.0}, lr=1e-3)
    step.optimizer.step = lambda: None  # first take the step's groups without moving the policy
    assert step(0)["sampler_logprob_gap"] < 1e-4  # the update scores what the rollout sampled
    groups = step.groups
    before = _sequence_logprobs(step, groups)
    advantages = group_advantages(torch.cat([g.rewards for g in groups]), 4)
    # Now one real update on exactly those groups.
    del step.optimizer.step
    step._groups = lambda s: (groups, {})
    step(1)
    change = _sequence_logprobs(step, groups) - before
    # To first order the update raises log-probability in proportion to advantage.
    assert float((advantages * change).sum()) > 0
    assert float(change[advantages > 0].mean()) > float(change[advantages < 0].mean())


@pytest.mark.parametrize("norm", ["sequence", "token"])
def test_groups_per_forward_pass_do_not_change_the_update(tiny_qwen, world_small, norm):
    step, _ = _step(
        tiny_qwen, [world_small["probe"][:4]], rewards={"tests.test_grpo:short": 1.0}, loss_norm=norm
    )
    step.optimizer.step = lambda: None  # the model stays put; only the gradients are compared
    step(0)
    groups = step.groups
    step._groups = lambda s: (groups, {})
    seen = []
    for size in (1, 3, 4):
        step.gc.forward_groups = size
        out = step(1)
        seen.append((out["loss"], out["grad_norm"]))
    for loss, norm_ in seen[1:]:
        assert loss == pytest.approx(seen[0][0], abs=1e-6) and norm_ == pytest.approx(seen[0][1], rel=1e-4)


def _capture_gradients(step):
    """Keep the gradients the optimizer would step on (after clipping) and leave the model put."""
    seen = {}
    step.optimizer.step = lambda: seen.update(
        {n: p.grad.clone() for n, p in step.model.named_parameters() if p.grad is not None}
    )
    return seen


def _cut_short(monkeypatch):
    """Rollouts whose completions end after 1 to 6 tokens (a tiny random model rarely samples an
    end-of-sequence), so that token and sequence normalisation differ."""
    import train.grpo

    sample = train.grpo.rollout

    def varied(*args, **kwargs):
        ro = sample(*args, **kwargs)
        for i in range(len(ro.mask)):
            ro.mask[i, 1 + i % ro.mask.shape[1] :] = 0
        return ro

    monkeypatch.setattr(train.grpo, "rollout", varied)


@pytest.mark.parametrize("norm", ["sequence", "token"])
def test_grad_accum_draws_more_prompts_into_one_step_with_the_gradient_of_one_batch(
    tiny_qwen, world_small, norm, monkeypatch
):
    """With train.grad_accum = 2 a step draws batch_size prompts twice and trains on all of them:
    its gradient (and the norm that is clipped and logged) equals that of one batch of twice the
    size on the same sampled completions, for either loss normalisation."""
    _cut_short(monkeypatch)
    probe = world_small["probe"]
    settings = {"rewards": {"tests.test_grpo:short": 1.0}, "loss_norm": norm, "dynamic_sampling": False,
                "max_new_tokens": 6}  # fmt: skip
    accumulated, stream = _step(tiny_qwen, [probe[:2], probe[2:4]], grad_accum=2, **settings)
    grads = _capture_gradients(accumulated)
    out = accumulated(0)
    groups = accumulated.groups
    lengths = {int(g.ro.mask[i].sum()) for g in groups for i in g.range}
    assert out["loss"] != 0.0 and len(lengths) > 1
    one, _ = _step(tiny_qwen, [probe[:4]], **settings)
    one._groups = lambda s: (groups, {})  # the same prompts and completions in one batch
    expected = _capture_gradients(one)
    reference = one(0)
    assert out["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-4)
    assert out["loss"] == pytest.approx(reference["loss"], abs=1e-6)
    assert grads.keys() == expected.keys()
    for name, grad in expected.items():
        assert torch.allclose(grads[name], grad, atol=1e-6, rtol=1e-4), name
    # Both draws trained: four prompts from two rollouts, logged as the step's prompts.
    assert stream.calls == 2 and len({id(g.ro) for g in groups}) == 2 and len(groups) == 4
    assert out["prompts"] == 4 and out["prompts_drawn"] == 4


def test_each_completion_is_scored_under_its_own_prompt_and_image(tiny_qwen, world_small):
    """The update scores every completion against the image it was sampled for: the batched group
    tensors give the same log-probabilities as each prompt encoded alone, and another image gives
    different ones (so the image is read, not only the text)."""
    step, _ = _step(tiny_qwen, [world_small["probe"][:4]], rewards={"tests.test_grpo:short": 1.0})
    step.optimizer.step = lambda: None
    step(0)
    groups = step.groups
    batched = _sequence_logprobs(step, groups)

    def logprobs(ex, grp):
        _, ids, mask = grp.tensors()
        with torch.no_grad():
            return (token_logprobs(step.model, step.collator.prompts([ex]), ids, mask, 1.0) * mask).sum(1)

    own = [grp.ro.examples[grp.rows.start] for grp in groups]
    alone = [logprobs(ex, grp) for ex, grp in zip(own, groups, strict=True)]
    other = [dataclasses.replace(ex, image=own[i - 1].image) for i, ex in enumerate(own)]
    swapped = [logprobs(ex, grp) for ex, grp in zip(other, groups, strict=True)]
    assert torch.allclose(batched, torch.cat(alone), atol=1e-4)
    assert not torch.allclose(batched, torch.cat(swapped), atol=1e-3)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl", "llava", "idefics3", "smolvlm", "paligemma"])
def test_a_prompt_encoded_once_for_its_group_scores_and_trains_as_one_copy_per_completion(arch, world_small):
    """The update encodes each prompt once and shares its keys and values with the prompt's
    completions; log-probabilities and gradients equal those of a copy of the prompt per completion,
    with left padding, completions cut short by end-of-sequence, and M-RoPE positions (Qwen2.5-VL)."""
    from models import build_vlm
    from train.collate import VLMCollator
    from train.prompt_sharing import full_logits, repeat_prompts, shared_prompt_logits

    torch.manual_seed(0)
    model, processor = build_vlm(arch, "tiny", image_size=32, seed=0)
    model.train()
    collator = VLMCollator(processor, question_first=True)
    prompts = [world_small["probe"][i] for i in (0, 5, 17)]  # questions of different lengths
    inputs = collator.prompts(prompts)
    assert (inputs["attention_mask"] == 0).any()  # some rows are left-padded
    g, t = 4, 5
    ids = torch.randint(10, 200, (3 * g, t))
    mask = torch.ones_like(ids)
    mask[1, 2:] = 0  # ended early
    mask[6, 1:] = 0
    weights = torch.randn(ids.shape)

    def run(logits_of):
        model.zero_grad(set_to_none=True)
        logits = logits_of().float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        (logp * mask * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return logp.detach() * mask, grads

    full, full_grads = run(lambda: full_logits(model, repeat_prompts(inputs, g), ids, mask))
    shared, shared_grads = run(lambda: shared_prompt_logits(model, inputs, ids, mask, g))
    assert torch.allclose(shared, full, atol=1e-5)
    assert shared_grads.keys() == full_grads.keys() and any(
        "visual" in n or "vision" in n for n in full_grads
    )
    for name, grad in full_grads.items():
        assert torch.allclose(shared_grads[name], grad, atol=1e-5, rtol=1e-3), name
    # A one-token completion needs the prompt pass alone.
    one = shared_prompt_logits(model, inputs, ids[:, :1], mask[:, :1], g)
    assert torch.allclose(
        one, full_logits(model, repeat_prompts(inputs, g), ids[:, :1], mask[:, :1]), atol=1e-5
    )


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl", "llava", "idefics3", "smolvlm", "paligemma"])
def test_rollouts_encode_each_prompt_once_and_sample_what_the_update_scores(arch, world_small):
    """Rollouts encode each prompt once and decode from its repeated cache. The log-probability the
    sampler gives each drawn token is the one the update computes for it (so the sampled policy is
    the trained one: positions, cache and temperature agree); at a vanishing nucleus sampling is
    greedy and equals ``generate``'s greedy decode for every copy; suppressed tokens never appear."""
    from models import build_vlm
    from train.collate import VLMCollator
    from train.grpo import completion_mask
    from train.prompt_sharing import sample_completions

    torch.manual_seed(0)
    model, processor = build_vlm(arch, "tiny", image_size=32, seed=1)
    model.eval()
    collator = VLMCollator(processor, question_first=True)
    inputs = collator.prompts([world_small["probe"][i] for i in (0, 5, 17)])
    tok = collator.tokenizer
    pad = tok.pad_token_id
    # Six tokens allowed, one of them the end: rows end at different steps, or not at all.
    others = [i for i in range(len(tok)) if not 40 <= i < 46]
    eos = 40
    ids, logprobs = sample_completions(model, inputs, 8, 6, 0.7, suppressed=others, eos_id=eos, pad_id=pad)
    mask = completion_mask(ids, eos)
    assert ids.shape == (24, 6) and 0 < int((ids == eos).sum()) and int(mask.sum()) < mask.numel()
    assert set(ids[mask.bool()].tolist()) <= set(range(40, 46))
    assert len({tuple(r) for r in ids[:8].tolist()}) > 1  # the copies of one prompt differ
    scored = token_logprobs(model, inputs, ids, mask, 0.7, others)
    assert torch.allclose(scored[mask.bool()], logprobs[mask.bool()], atol=1e-4)
    eos = tok.eos_token_id
    greedy_ids, _ = sample_completions(model, inputs, 3, 6, 1.0, top_p=1e-9, eos_id=eos, pad_id=pad)
    greedy = model.generate(**inputs, do_sample=False, max_new_tokens=6, pad_token_id=pad,
                            eos_token_id=eos)[:, inputs["input_ids"].shape[1]:]  # fmt: skip
    assert torch.equal(greedy_ids, greedy.repeat_interleave(3, dim=0))


def test_under_gradient_checkpointing_each_completion_gets_its_prompt(world_small):
    """Gradient checkpointing drops the key-value cache, so the prompts are repeated instead."""
    from models import build_vlm
    from train.collate import VLMCollator

    torch.manual_seed(0)
    model, processor = build_vlm("qwen2_5_vl", "tiny", image_size=32, seed=0)
    model.train()
    inputs = VLMCollator(processor, question_first=True).prompts(world_small["probe"][:2])
    ids = torch.randint(10, 200, (6, 3))
    mask = torch.ones_like(ids)
    shared = token_logprobs(model, inputs, ids, mask, 1.0)
    model.gradient_checkpointing_enable()
    checkpointed = token_logprobs(model, inputs, ids, mask, 1.0)
    checkpointed.sum().backward()
    assert torch.allclose(checkpointed, shared, atol=1e-5)
    with pytest.raises(ValueError, match="5 completions do not split evenly over 2 prompts"):
        token_logprobs(model, inputs, ids[:5], mask[:5], 1.0)


def test_dynamic_sampling_drops_flat_groups_and_refills(tiny_qwen, world_small):
    flat = world_small["probe"][:2]
    rewards = {"tests.test_grpo:same": 1.0}
    step, stream = _step(tiny_qwen, [flat, world_small["probe"][2:4]], rewards={"tests.test_grpo:short": 1.0})
    out = step(0)
    assert out["groups_dropped"] == 0 and out["prompts_drawn"] == 2 and stream.calls == 1
    step, stream = _step(tiny_qwen, [flat, flat, flat], rewards=rewards, refill_tries=2)
    out = step(0)
    # Every group is flat: two refills, then the batch is filled with flat groups (no gradient).
    assert out["prompts_drawn"] == 6 and out["groups_dropped"] == 6 and out["filler_groups"] == 2
    assert out["zero_spread_fraction"] == 1.0 and out["loss"] == 0.0 and stream.calls == 3
    step, stream = _step(tiny_qwen, [flat], rewards=rewards, dynamic_sampling=False)
    assert step(0)["prompts_drawn"] == 2 and stream.calls == 1
    # Kept groups from two rollouts (their completions may differ in length) train together.
    probe = world_small["probe"]
    shape = next(ex for ex in probe if "shape" in ex.question)
    others = [ex for ex in probe if "shape" not in ex.question][:3]
    step, stream = _step(tiny_qwen, [[shape, others[0]], others[1:3]], rewards={"tests.test_grpo:flat_for_shapes": 1.0},
                         max_new_tokens=6)  # fmt: skip
    out = step(0)
    assert out["groups_dropped"] == 1 and stream.calls == 2 and out["filler_groups"] == 0
    assert {id(g.ro) for g in step.groups} and len({id(g.ro) for g in step.groups}) == 2


def test_reused_batches_clip_against_the_sampling_policy(tiny_qwen, world_small):
    step, _ = _step(tiny_qwen, [world_small["probe"][:2]], rewards={"tests.test_grpo:short": 1.0}, updates=3,
                    clip_eps=0.01, lr=5e-2)  # fmt: skip
    out = step(0)
    assert out["clip_fraction"] > 0  # later updates move the ratio past the narrow clip


def test_grpo_runs_in_the_loop_logs_and_resumes(tmp_path, tiny_qwen):
    from tests.conftest import tiny_run_overrides
    from train.config import load_config
    from train.loop import run

    def cfg(steps):
        return load_config(None, [
            *tiny_run_overrides(tmp_path, tiny_qwen), "run.name=grpo", "train.mode=grpo", f"train.steps={steps}",
            "train.batch_size=2", "train.save_every=1", "grpo.group_size=4", "grpo.max_new_tokens=3",
            "grpo.rewards={correct: 1.0, tests.test_grpo:short: 0.01}", "eval.at_start=false",
            "train.peak_flops=1e12",
        ])  # fmt: skip

    run(cfg(2))
    summary = run(cfg(3))  # resumes at step 2
    assert summary["steps"] == 3
    metrics = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    for key in ("reward_std", "pass_rate", "zero_spread_fraction", "kl", "clip_fraction", "completion_length",
                "generation_s", "update_s", "rollout_tokens_per_s", "reward/correct", "reward/tests.test_grpo:short",
                "model_tflops_per_s", "mfu"):  # fmt: skip
        assert f"train/{key}" in steps[-1], key
    samples = [json.loads(x) for x in (tmp_path / "grpo" / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2, 3} and all(
        "completion" in s and "reward" in s for s in samples
    )


def test_grpo_curriculum_mines_by_pass_rate_and_pools_only_verified_answers(tmp_path, world_small):
    import dataclasses

    from curriculum.engine import Curriculum
    from curriculum.filters import VerifiedOnly
    from curriculum.types import Candidate
    from train.config import CurriculumConfig

    class HalfRight:
        """Samples the right answer for half of each item's draws on colour questions, never otherwise."""

        def answer(self, examples):
            return ["0"] * len(examples)

        def sample(self, examples, n):
            return [
                [ex.answer if ex.skill == "colour" and i % 2 else "0" for i in range(n)] for ex in examples
            ]

    def failed_skills(rate):
        cfg = CurriculumConfig(enabled=True, every=10, budget=32, probe_samples=4, failure_pass_rate=rate,
                               student_check="band", band=[0.125, 0.875], band_samples=4)  # fmt: skip
        cur = Curriculum(cfg, tmp_path / str(rate), world_small["train"], world_small["probe"],
                         {"test": world_small["test"]}, 32, 0, verified_only=True)  # fmt: skip
        result = cur.update(10, HalfRight())
        cur.close()
        lines = (tmp_path / str(rate) / "round_00001" / "failures.jsonl").read_text().splitlines()
        return result, {json.loads(x)["skill"] for x in lines}

    result, skills = failed_skills(0.0)  # all rollouts fail: colour items (pass rate 0.5) are not failures
    assert "colour" not in skills and "count" in skills
    _, skills = failed_skills(0.5)
    assert "colour" in skills
    # Band check: the policy passes no candidate except half of colour ones; only those stay.
    assert result.status == "ok"
    ex = world_small["probe"][0]
    cands = [
        Candidate(dataclasses.replace(ex, source="synthetic"), "w", "proposals", {"answer": "unverified"}),
        Candidate(dataclasses.replace(ex, source="synthetic"), "w", "proposals", {"answer": "unverified", "judge": "ok"}),
        Candidate(dataclasses.replace(ex, source="synthetic"), "w", "world", {"answer": "ok"}),
        Candidate(ex, "w", "replay", {"answer": "unverified"}),
    ]  # fmt: skip
    VerifiedOnly()(cands)
    assert [c.dropped for c in cands] == ["verified", None, None, None]


def test_grpo_with_the_curriculum_in_the_loop(tmp_path, tiny_qwen, monkeypatch):
    from tests.conftest import tiny_run_overrides
    from train.config import load_config
    from train.loop import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = run(load_config(None, [
        *tiny_run_overrides(tmp_path, tiny_qwen), "run.name=gc", "train.mode=grpo", "train.steps=3",
        "train.batch_size=2", "grpo.group_size=4", "grpo.max_new_tokens=3", "eval.at_start=false",
        "curriculum.enabled=true", "curriculum.every=2", "curriculum.budget=16", "curriculum.probe_samples=4",
        "curriculum.student_check=band", "curriculum.band=[0.0, 0.875]", "curriculum.band_samples=4",
        "curriculum.mix.ratio=0.5", "wandb.enabled=true", "wandb.mode=offline",
    ]))  # fmt: skip
    rounds = summary["curriculum"]["rounds"]
    assert [r["status"] for r in rounds] == ["ok"] and summary["curriculum"]["pool_size"] > 0
    verdicts = [
        json.loads(x)["verdicts"]
        for x in (tmp_path / "gc" / "curriculum" / "round_00001" / "candidates.jsonl")
        .read_text()
        .splitlines()
    ]
    assert all(v.get("verified") == "ok" for v in verdicts if "student" in v)
    metrics = [json.loads(x) for x in (tmp_path / "gc" / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("train/pool_fraction", 0) > 0 for m in metrics if m["step"] == 3)
    # Completions with their images go to W&B as a table (here an offline run).
    tables = list(
        (tmp_path / "gc" / "wandb").glob("offline-run-*/files/media/table/train/completions_*.table.json")
    )
    images = list((tmp_path / "gc" / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert tables and images
