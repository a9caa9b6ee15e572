"""Turn Examples into model inputs through the processor's own chat template.

Training batches put the loss on the answer tokens only: everything up to and including the
template's generation prompt is masked with -100, as is padding. The prompt length of each row is
that of the prompt alone, so any chat template whose prompt is a prefix of the full conversation
works, whatever it looks like. It is measured without running the processor (its images) again:
the prompt's text is tokenized without images and its end found in the encoded row past each
image's expansion (a prefix-LM row marks its answer itself); a processor whose rows do not line
up with their text that way is measured by encoding the prompt again, with the same result. A
conversational example (``Example.messages``: several turns, several images) is trained on every
assistant turn: each one's span runs from the end of the conversation before it, rendered with
the generation prompt, to the end of the conversation through it, each measured the same way; the
user turns stay masked. Generation prompts end with the last user turn, so evaluation answers the
last turn with the earlier ones as context.

A training row is the prompt for generation followed by the answer, and every input the processor
adds besides the token ids (token types, image masks, multimodal positions) must say so. For most
processors encoding the whole conversation does: their extra per-token inputs mark the image
tokens (Qwen2-VL's ``mm_token_type_ids``, Gemma3's ``token_type_ids``), and answer text is text.
A prefix-LM processor is different: PaliGemma's model reads everything its ``token_type_ids`` mark
0 as one bidirectional prefix, so a whole conversation encoded as text would let every prompt
and answer position see the entire answer. Its processor takes the answer as a ``suffix`` and marks
exactly those tokens 1 (read causally), as its model marks the tokens it generates. So a processor
whose ``__call__`` takes a ``suffix`` gets the answer that way, every other one the whole
conversation; the prompts for generation are encoded alone in both cases, and a training row's
tokens start with exactly those of its prompt. The earlier turns of a conversation are part of that
prefix, so a prefix-LM trains on the last assistant turn only (a loss on an earlier answer would be
read, bidirectionally, by every prefix position).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch

from curriculum.types import Example, as_pil

IGNORE_INDEX = -100


def messages(question: str, answer: str | None = None, question_first: bool = False) -> list[dict[str, Any]]:
    """One user turn (image then question, or the reverse) and, for training, the assistant's answer."""
    parts: list[dict[str, Any]] = [{"type": "image"}, {"type": "text", "text": question}]
    turns: list[dict[str, Any]] = [{"role": "user", "content": parts[::-1] if question_first else parts}]
    if answer is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return turns


def prompt_turns(ex: Example, question_first: bool = False, suffix: str = "") -> list[dict[str, Any]]:
    """The conversation the model answers ``ex`` from: its turns up to the last user turn, with
    ``suffix`` after that turn's text (one user turn of image and question when it has none)."""
    if ex.messages is None:
        return messages(ex.question + suffix, None, question_first)
    turns = copy.deepcopy(ex.messages)
    if suffix:
        texts = [part for part in turns[-1]["content"] if part.get("type") == "text"]
        if texts:
            texts[-1]["text"] += suffix
        else:
            turns[-1]["content"].append({"type": "text", "text": suffix})
    return turns


def _text_positions(text: list[int], row: list[int], placeholders: set[int]) -> dict[int, int] | None:
    """Where each position of ``text`` (token ids of a rendering without images) lies in ``row``
    (the same rendering encoded with its images, each placeholder token expanded into several):
    ``{text position: row position}`` for the positions inside or at the end of a run of text,
    None when ``row`` is not ``text`` with its placeholders expanded."""
    runs, start = [], 0  # (start in text, tokens) of each run between placeholders
    for i, token in enumerate(text):
        if token in placeholders:
            runs.append((start, text[start:i]))
            start = i + 1
    runs.append((start, text[start:]))
    out: dict[int, int] = {}
    at = 0  # where the next run may start in the row
    for k, (begin, run) in enumerate(runs):
        if k == len(runs) - 1:  # the last run ends the row
            found = len(row) - len(run)
            ok = found >= at and row[found:] == run and (k == 0) == (found == 0)
        else:
            found = at
            while found + len(run) <= len(row) and row[found : found + len(run)] != run:
                found += 1
            ok = found + len(run) <= len(row) and (k == 0) == (found == 0)
        if not ok:
            return None
        if run or k == 0:
            out.update({begin + j: found + j for j in range(len(run) + 1)})
        at = found + len(run) + 1  # a placeholder expands into at least one token
    return out


def image_count(turns: list[dict[str, Any]]) -> int:
    """How many image placeholders ``turns`` hold."""
    return sum(1 for turn in turns for part in turn["content"] if part.get("type") == "image")


class VLMCollator:
    """Callable on a list of Examples; ``prompts`` builds left-padded generation inputs."""

    def __init__(
        self,
        processor: Any,
        question_first: bool = False,
        question_suffix: str = "",
        image_cache_mib: int = 0,
    ) -> None:
        if image_cache_mib:
            from train.image_cache import with_image_cache

            processor = with_image_cache(processor, image_cache_mib * 2**20)
        self.processor = processor
        self.question_first = question_first
        self.question_suffix = question_suffix
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set one before training")
        # Placeholder tokens the processor expands into image features: a sampled one would make
        # the model look for an image that is not there, so sampling never emits them.
        names = [getattr(processor, a, None) for a in ("image_token", "video_token")]
        ids = [self.tokenizer.convert_tokens_to_ids(n) for n in names if isinstance(n, str)]
        self.media_token_ids = sorted(
            {i for i in ids if isinstance(i, int) and i != self.tokenizer.unk_token_id}
        )
        # A prefix-LM processor (PaliGemma) encodes the answer as the suffix of a prompt.
        self.answer_as_suffix = "suffix" in inspect.signature(processor.__call__).parameters

    def _turns(self, ex: Example) -> list[dict[str, Any]]:
        return prompt_turns(ex, self.question_first, self.question_suffix)

    def _render(self, turns: list[dict[str, Any]], answer: str | None = None, prompt: bool = False) -> str:
        if answer is not None:
            turns = [*turns, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        return self.processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt)

    def _encode(
        self, texts: list[str], images: list[list], side: str, suffixes: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        extra = {"suffix": suffixes} if suffixes is not None else {}
        batch = self.processor(
            text=texts, images=images if any(images) else None, return_tensors="pt", padding=True,
            padding_side=side, **extra,
        )  # fmt: skip
        batch.pop("labels", None)  # a prefix-LM processor labels its suffix; the collator labels itself
        return dict(batch)

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        images = [[as_pil(im) for im in ex.images] for ex in examples]
        turns = [self._turns(ex) for ex in examples]
        prompts = [self._render(conv, prompt=True) for conv in turns]
        fulls = [self._render(conv, ex.target) for conv, ex in zip(turns, examples, strict=True)]
        for prompt, full in zip(prompts, fulls, strict=True):
            if not full.startswith(prompt):
                raise ValueError("the chat template's generation prompt is not a prefix of the full turn")
        if self.answer_as_suffix:
            answers = [self._suffix(prompt, full) for prompt, full in zip(prompts, fulls, strict=True)]
            batch = self._encode(prompts, images, "right", answers)
        else:
            batch = self._encode(fulls, images, "right")
        spans = self._spans_from_text(batch, turns, prompts, fulls)
        if spans is None:  # a processor the text-only measure cannot follow: encode again
            spans = self._spans_reencoded(batch, turns, images, prompts)
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for row, row_spans in enumerate(spans):
            for start, end in row_spans:
                labels[row, start:end] = batch["input_ids"][row, start:end]
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        batch["labels"] = labels
        return batch

    def _spans_reencoded(
        self,
        batch: dict[str, torch.Tensor],
        turns: list[list[dict[str, Any]]],
        images: list[list],
        prompts: list[str],
    ) -> list[list[tuple[int, int]]]:
        """The supervised spans of every row, measured by encoding each prompt (and each earlier
        turn of a conversation) again, images included: exact for any processor, and slow."""
        prompt_lens = self._encode(prompts, images, "right")["attention_mask"].sum(dim=1)
        width = batch["input_ids"].shape[1]
        out = []
        for row, n in enumerate(prompt_lens.tolist()):
            ids = batch["input_ids"][row]
            earlier = [] if self.answer_as_suffix else self._earlier_answers(turns[row], images[row], ids)
            out.append([*earlier, (n, width)])
        return out

    def _spans_from_text(
        self,
        batch: dict[str, torch.Tensor],
        turns: list[list[dict[str, Any]]],
        prompts: list[str],
        fulls: list[str],
    ) -> list[list[tuple[int, int]]] | None:
        """The supervised spans of every row without running the processor again.

        A prefix-LM processor marks the answer it took as a suffix with token type 1, so the prompt
        is the rest of the row. Otherwise each boundary (end of the prompt, start and end of an
        earlier answer) is a prefix of the rendered conversation; its length in tokens is read
        from the text tokenized without images (one fast tokenizer call for the whole batch) and
        moved to the encoded row by the image expansions before it: the row is the text's
        tokens with each image placeholder replaced by its expansion, so every run of text
        between placeholders is found in the row, in order. None when anything does not line up
        (the caller then measures by encoding again, as exactly as before)."""
        width = batch["input_ids"].shape[1]
        if self.answer_as_suffix:
            types = batch.get("token_type_ids")
            if types is None:
                return None
            real = batch["attention_mask"].sum(dim=1)
            return [[(int(real[r] - types[r].sum()), width)] for r in range(len(prompts))]
        if not self.media_token_ids:
            return None
        texts, bounds = [], []
        for conv, prompt, full in zip(turns, prompts, fulls, strict=True):
            row_bounds = []
            for i, turn in enumerate(conv):
                if turn["role"] == "assistant":
                    row_bounds.append((len(texts), len(texts) + 1))
                    texts += [self._render(conv[:i], prompt=True), self._render(conv[: i + 1])]
            row_bounds.append((len(texts), None))
            texts += [prompt, full]
            bounds.append(row_bounds)
        tokens = self.tokenizer(texts)["input_ids"]
        out = []
        for row, row_bounds in enumerate(bounds):
            full = tokens[row_bounds[-1][0] + 1]
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            where = _text_positions(full, ids, set(self.media_token_ids))
            row_spans = []
            for start, end in row_bounds:
                pieces = [tokens[start]] + ([] if end is None else [tokens[end]])
                if where is None or any(full[: len(p)] != p or len(p) not in where for p in pieces):
                    return None
                row_spans.append((where[len(pieces[0])], width if end is None else where[len(pieces[1])]))
            out.append(row_spans)
        return out

    def _earlier_answers(
        self, turns: list[dict[str, Any]], images: list, ids: torch.Tensor
    ) -> list[tuple[int, int]]:
        """Token spans of the assistant turns before the last user turn, in a row of ``ids``."""
        spans = []
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            before = self._tokens(self._render(turns[:i], prompt=True), images[: image_count(turns[:i])])
            through = self._tokens(self._render(turns[: i + 1]), images[: image_count(turns[: i + 1])])
            if not (torch.equal(ids[: len(through)], through) and torch.equal(ids[: len(before)], before)):
                raise ValueError(
                    f"the chat template renders turn {i} differently inside the whole conversation"
                )
            spans.append((len(before), len(through)))
        return spans

    def _tokens(self, text: str, images: list) -> torch.Tensor:
        return self._encode([text], [images], "right")["input_ids"][0]

    def _suffix(self, prompt: str, full: str) -> str:
        """What the answer turn adds to the prompt, less its closing end-of-sequence token, which a
        prefix-LM processor appends to every suffix itself."""
        eos = self.tokenizer.eos_token
        answer = full[len(prompt) :]
        if not answer.endswith(eos):
            raise ValueError("the chat template does not end the answer with the end-of-sequence token")
        return answer[: -len(eos)]

    def prompts(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Left-padded prompts for generation, encoded as the prompts of training rows are."""
        images = [[as_pil(im) for im in ex.images] for ex in examples]
        texts = [self._render(self._turns(ex), prompt=True) for ex in examples]
        return self._encode(texts, images, "left")

    def decode(self, new_tokens: torch.Tensor) -> list[str]:
        """Generated continuations (prompt already cut off) as stripped strings."""
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
