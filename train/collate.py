"""Turn Examples into model inputs through the processor's own chat template.

Training batches put the loss on the answer tokens only: everything up to and including the
template's generation prompt is masked with -100, as is padding. The prompt length of each row is
measured by rendering the prompt alone, so any chat template whose prompt is a prefix of the full
conversation works, whatever it looks like.
"""

from __future__ import annotations

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


class VLMCollator:
    """Callable on a list of Examples; ``prompts`` builds left-padded generation inputs."""

    def __init__(self, processor: Any, question_first: bool = False, question_suffix: str = "") -> None:
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

    def _render(self, question: str, answer: str | None) -> str:
        return self.processor.apply_chat_template(
            messages(question + self.question_suffix, answer, self.question_first),
            tokenize=False,
            add_generation_prompt=answer is None,
        )

    def _encode(self, texts: list[str], images: list, side: str) -> dict[str, torch.Tensor]:
        return self.processor(
            text=texts, images=[[im] for im in images], return_tensors="pt", padding=True, padding_side=side
        )

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        images = [as_pil(ex.image) for ex in examples]
        prompts = [self._render(ex.question, None) for ex in examples]
        fulls = [self._render(ex.question, ex.target) for ex in examples]
        for prompt, full in zip(prompts, fulls, strict=True):
            if not full.startswith(prompt):
                raise ValueError("the chat template's generation prompt is not a prefix of the full turn")
        batch = self._encode(fulls, images, "right")
        prompt_lens = self._encode(prompts, images, "right")["attention_mask"].sum(dim=1)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        for row, n in enumerate(prompt_lens.tolist()):
            labels[row, :n] = IGNORE_INDEX
        batch["labels"] = labels
        return dict(batch)

    def prompts(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        images = [as_pil(ex.image) for ex in examples]
        texts = [self._render(ex.question, None) for ex in examples]
        return dict(self._encode(texts, images, "left"))

    def decode(self, new_tokens: torch.Tensor) -> list[str]:
        """Generated continuations (prompt already cut off) as stripped strings."""
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
