"""Batched greedy generation and scoring over a list of Examples, on one or many ranks.

Each rank answers an equal-sized shard (the last shard is padded with repeats, which are dropped
after gathering): generation under sharded parameters needs every rank to run the same number of
forward passes.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from curriculum.scoring import Score, is_correct, score, summarise
from curriculum.types import Example
from train.collate import VLMCollator
from train.decode import greedy_decode
from train.distributed import agree_on_failure, synced_generation
from train.prompt_sharing import sample_completions


@dataclass
class EvalResult:
    scores: list[Score]
    metrics: dict[str, float]
    seconds: float = 0.0
    generated_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def generate_answers(
    model: Any,
    collator: VLMCollator,
    examples: list[Example],
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    samples: int = 0,
    temperature: float = 1.0,
    synced: bool = False,
    decoder: str = "generate",
    compile: bool = False,
    ahead: bool | None = None,
) -> tuple[list[str], int]:
    """Answers for ``examples`` (in order) and the number of tokens generated.

    Greedy when ``samples`` is 0: through ``generate`` (``decoder="generate"``) or the decoder with
    a cache allocated once (``"static"``, ``train/decode.py``; ``compile``: its steps compiled on
    CUDA), which give the same answers. Otherwise ``samples`` sampled answers per example,
    flattened example by example, drawn as GRPO's rollouts are (each prompt encoded once,
    ``sample_completions``). ``synced``: every rank runs each decoding step until all ranks are
    done, which sharded parameters (ZeRO-3, FSDP) need. ``ahead`` (default: on a GPU) builds the
    next batch's prompts in a thread while this one decodes, with a copy of the collator kept for
    that (a fast tokenizer must not serve two threads at once); the same answers either way.
    """
    was_training = model.training
    model.eval()
    answers: list[str] = []
    generated = 0
    tokenizer = collator.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    chunks = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]
    ahead = device.type == "cuda" if ahead is None else ahead
    for inputs in _prompt_batches(collator, chunks, ahead):
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        if samples:
            new, _ = sample_completions(model, inputs, samples, max_new_tokens, temperature,
                                        suppressed=collator.media_token_ids, eos_id=eos, pad_id=pad,
                                        synced=synced)  # fmt: skip
        elif decoder == "static":
            new = greedy_decode(
                model, inputs, max_new_tokens, eos, pad, collator.media_token_ids, synced, compile
            )
        else:
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 eos_token_id=eos, synced_gpus=synced,
                                 suppress_tokens=collator.media_token_ids or None)  # fmt: skip
            new = out[:, inputs["input_ids"].shape[1] :]
        answers.extend(collator.decode(new))
        generated += int((new != pad).sum())
    model.train(was_training)
    return answers, generated


_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # collator -> its copy for the thread


def _prompt_batches(collator: VLMCollator, chunks: list[list[Example]], ahead: bool) -> Iterator[dict]:
    """Each chunk's collated prompts, in order; ``ahead``: the next one built in a thread (pinned)
    while the caller decodes this one."""
    if not ahead or len(chunks) < 2:
        yield from (collator.prompts(chunk) for chunk in chunks)
        return
    twin = _twins.get(collator)
    if twin is None:
        twin = _twins[collator] = copy.deepcopy(collator)
    pin = torch.cuda.is_available()

    def build(chunk: list[Example]) -> dict:
        batch = twin.prompts(chunk)
        return {k: v.pin_memory() for k, v in batch.items()} if pin else batch

    with ThreadPoolExecutor(1, thread_name_prefix="prompts") as pool:
        pending = pool.submit(build, chunks[0])
        for following in [*chunks[1:], None]:
            batch = pending.result()
            if following is not None:
                pending = pool.submit(build, following)
            yield batch


def sharded_answers(
    model: Any,
    collator: VLMCollator,
    examples: list[Example],
    accelerator: Any,
    batch_size: int,
    max_new_tokens: int,
    samples: int = 0,
    temperature: float = 1.0,
    decoder: str = "generate",
    compile: bool = False,
) -> tuple[list[str], int]:
    """``generate_answers`` split over ranks; every rank gets all answers, in order. When one
    rank's generation raises, every rank raises (``agree_on_failure``) instead of the others
    waiting for its answers forever. (Under ZeRO-3 or FSDP a rank that fails in the middle of a
    forward pass still leaves the others inside that pass's own collectives.)"""
    world, rank = accelerator.num_processes, accelerator.process_index
    per_rank = -(-len(examples) // world)
    padded = examples + examples[: per_rank * world - len(examples)]
    shard = padded[rank * per_rank : (rank + 1) * per_rank]
    unwrapped = accelerator.unwrap_model(model)
    answers: list[str] = []
    generated, error = 0, None
    try:
        answers, generated = generate_answers(unwrapped, collator, shard, batch_size, max_new_tokens,
                                              accelerator.device, samples, temperature,
                                              synced_generation(accelerator), decoder, compile)  # fmt: skip
    except Exception as err:  # every rank must hear of it before the gather below
        error = err
    agree_on_failure(accelerator, error, "generation")
    if world > 1:
        from accelerate.utils import gather_object

        answers = gather_object(answers)[: len(examples) * max(1, samples)]
        generated = sum(gather_object([generated]))
    return answers, generated


def evaluate(
    model: Any,
    collator: VLMCollator,
    examples: list[Example],
    accelerator: Any,
    batch_size: int,
    max_new_tokens: int,
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    decoder: str = "generate",
    compile: bool = False,
) -> EvalResult:
    """Score ``examples`` with sharded greedy generation; every rank returns the same result.

    With ``samples``, also ``samples`` sampled answers per item: ``sampled`` is their mean pass
    rate (pass@1 averaged over the samples) and ``pass_at_k`` the share of items with any right,
    overall and per skill (``sampled/skill/<name>``). They are drawn from ``seed`` (each rank
    its own stream) inside a forked RNG, so the run's random state is untouched. ``decoder`` and
    ``compile``: how greedy answers are decoded (``generate_answers``)."""
    t0 = time.perf_counter()
    answers, generated = sharded_answers(model, collator, examples, accelerator, batch_size, max_new_tokens,
                                         decoder=decoder, compile=compile)  # fmt: skip
    scores = score(
        [ex.id for ex in examples], [ex.skill for ex in examples], answers, [ex.answer for ex in examples]
    )
    metrics = summarise(scores)
    if samples:
        device = accelerator.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + accelerator.process_index)
            flat, more = sharded_answers(model, collator, examples, accelerator, batch_size, max_new_tokens,
                                         samples, temperature)  # fmt: skip
        generated += more
        metrics.update(sampled_metrics(examples, flat, samples))
    return EvalResult(scores, metrics, time.perf_counter() - t0, generated)


def sampled_metrics(examples: list[Example], flat: list[str], samples: int) -> dict[str, float]:
    """Mean pass rate and pass@k of ``samples`` answers per example (flattened example by example)."""
    rates: dict[str, list[float]] = defaultdict(list)
    any_right = 0
    for i, ex in enumerate(examples):
        marks = [is_correct(a, ex.answer) for a in flat[i * samples : (i + 1) * samples]]
        rates[ex.skill or ""].append(sum(marks) / samples)
        any_right += any(marks)
    every = [r for skill_rates in rates.values() for r in skill_rates]
    out = {"sampled": sum(every) / len(every), "pass_at_k": any_right / len(examples)}
    for skill, values in sorted(rates.items()):
        if skill:
            out[f"sampled/skill/{skill}"] = sum(values) / len(values)
    return out


class ModelPolicy:
    """The model under training as the curriculum's ``Policy``: it answers, sharded over ranks.
    ``answer`` is greedy; ``sample`` draws at ``temperature`` with up to ``sample_tokens`` new
    tokens (GRPO: its rollout settings); ``decoder``, ``compile``: as ``generate_answers``."""

    def __init__(
        self,
        model: Any,
        collator: VLMCollator,
        accelerator: Any,
        batch_size: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        sample_tokens: int | None = None,
        decoder: str = "generate",
        compile: bool = False,
    ):
        self.model, self.collator, self.accelerator = model, collator, accelerator
        self.decoder, self.compile = decoder, compile
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.temperature, self.sample_tokens = temperature, sample_tokens or max_new_tokens

    def answer(self, examples: list[Example]) -> list[str]:
        return sharded_answers(self.model, self.collator, examples, self.accelerator, self.batch_size,
                               self.max_new_tokens, decoder=self.decoder, compile=self.compile)[0]  # fmt: skip

    def snapshot(self) -> ModelPolicy | None:
        """This policy on a frozen copy of the model as it is now, with a collator of its own, to
        answer from another thread while the model trains on; None where the model is sharded or
        distributed (DeepSpeed, several processes). Compiled blocks run eagerly in the copy (their
        compiled code belongs to the original's modules), and so does its decoder."""
        from accelerate.utils import DistributedType

        if (
            self.accelerator.num_processes > 1
            or self.accelerator.distributed_type == DistributedType.DEEPSPEED
        ):
            return None
        model = copy.deepcopy(self.accelerator.unwrap_model(self.model))
        for module in model.modules():
            module.__dict__.pop("_compiled_call_impl", None)  # back to the module's own forward
        for p in model.parameters():
            p.grad = None  # a gradient the model still held is not the copy's
        model.requires_grad_(False).eval()
        return ModelPolicy(model, copy.deepcopy(self.collator), self.accelerator, self.batch_size,
                           self.max_new_tokens, self.temperature, self.sample_tokens, self.decoder)  # fmt: skip

    def sample(self, examples: list[Example], n: int) -> list[list[str]]:
        flat = sharded_answers(self.model, self.collator, examples, self.accelerator, self.batch_size,
                               self.sample_tokens, n, self.temperature)[0]  # fmt: skip
        return [flat[i * n : (i + 1) * n] for i in range(len(examples))]


def prior_baseline(train: list[Example], test: list[Example]) -> dict[str, float]:
    """Accuracy of always giving each skill's most common train answer: what a model that
    ignores the image can reach. A trained model is only reading images where it beats this."""
    by_skill: dict[str | None, Counter] = defaultdict(Counter)
    for ex in train:
        by_skill[ex.skill][ex.answer] += 1
    predictions = [by_skill[ex.skill].most_common(1)[0][0] if by_skill[ex.skill] else "" for ex in test]
    scores = score([ex.id for ex in test], [ex.skill for ex in test], predictions, [ex.answer for ex in test])
    return summarise(scores)


def skill_table(columns: dict[str, dict[str, float]], counts: dict[str, int]) -> str:
    """A plain-text table: one row per skill plus ``overall``, one accuracy column per label."""
    labels = list(columns)
    skills = sorted({k[len("skill/") :] for m in columns.values() for k in m if k.startswith("skill/")})
    width = max([len(s) for s in skills] + [len("overall"), 5])
    head = f"{'skill':<{width}}  {'n':>5}  " + "  ".join(f"{lab:>8}" for lab in labels)
    lines = [head, "-" * len(head)]

    def row(name: str, key: str, n: int) -> str:
        vals = "  ".join(
            f"{columns[lab][key]:>8.3f}" if key in columns[lab] else f"{'-':>8}" for lab in labels
        )
        return f"{name:<{width}}  {n:>5}  {vals}"

    for s in skills:
        lines.append(row(s, f"skill/{s}", counts.get(s, 0)))
    lines.append("-" * len(head))
    lines.append(row("overall", "accuracy", sum(counts.values())))
    return "\n".join(lines)
