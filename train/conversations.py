"""Conversational rows, as TRL and ``datasets`` write them, read into Examples.

A row holds a ``messages`` cell (a list of ``{"role", "content"}`` turns; content a list of
``{"type": "image"}`` and ``{"type": "text", "text": ...}`` parts, or plain text) and an ``images``
cell (the images in the order of their placeholders: paths, bytes or decoded images). The last
turn is the assistant's answer, the one evaluated; the turn before it the user's question; earlier
turns are context, and every assistant turn among them is trained on as well (``train.collate``).

A row that cannot train as written is refused with the reason ``train.data`` counts it under:
``messages_invalid`` (not a list of turns, an unknown role or part, a turn without text, turns
that do not end with a user turn and its answer), ``question_missing`` (the last user turn has no
text), ``answer_missing`` (the last turn is no assistant answer), ``images_mismatch`` (a number of
images other than the placeholders), and the image reasons of ``train.rows.read_image``
(``image_missing`` when the conversation shows none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curriculum.types import Example, StoredImage
from train.config import DataConfig
from train.rows import read_image, text_value

ROLES = ("system", "user", "assistant")


class Refused(ValueError):
    """A row that cannot train as written; the message is the reason it is counted under."""


def _parts(content: Any) -> list[dict[str, Any]]:
    """A turn's content as a list of ``{"type": "image"}`` and ``{"type": "text", "text"}`` parts
    (``datasets`` fills the keys a part lacks with None; plain text is one text part)."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Refused("messages_invalid")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            parts.append({"type": "image"})
        elif kind == "text":
            text, _ = text_value(part.get("text"))
            if text is not None:
                parts.append({"type": "text", "text": text})
        else:
            raise Refused("messages_invalid")
    return parts


def turns_of(messages: Any) -> list[dict[str, Any]]:
    """The conversation of a ``messages`` cell, each turn's content as parts (``Refused`` when it is
    not a conversation that ends with a user turn and the assistant's answer)."""
    if not isinstance(messages, list) or not messages:
        raise Refused("messages_invalid")
    turns = []
    for turn in messages:
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ROLES:
            raise Refused("messages_invalid")
        parts = _parts(turn.get("content"))
        texts = [p for p in parts if p["type"] == "text"]
        if role == "assistant" and (not texts or len(texts) < len(parts)):
            raise Refused("answer_missing" if turn is messages[-1] else "messages_invalid")
        if role == "system" and (not texts or len(texts) < len(parts)):
            raise Refused("messages_invalid")
        turns.append({"role": role, "content": parts})
    if turns[-1]["role"] != "assistant":
        raise Refused("answer_missing")
    # System turns first, then user and assistant alternating from a user turn: what every chat
    # template accepts (several refuse anything else, and an assistant turn first has no prompt).
    roles = [t["role"] for t in turns]
    dialogue = roles[next(i for i, r in enumerate(roles) if r != "system") :]
    if dialogue != ["user", "assistant"] * (len(dialogue) // 2):
        raise Refused("messages_invalid")
    if not any(p["type"] == "text" for p in turns[-2]["content"]):
        raise Refused("question_missing")
    return turns


def _text(turn: dict[str, Any]) -> str:
    return "\n".join(p["text"] for p in turn["content"] if p["type"] == "text")


def conversation_example(
    messages: Any, images: Any, root: Path | None, cfg: DataConfig, **fields: Any
) -> Example:
    """One conversational row as an Example (``fields``: id, skill, params, source, split, meta),
    or ``Refused`` with the reason it is skipped."""
    turns = turns_of(messages)
    shown = sum(1 for t in turns for p in t["content"] if p["type"] == "image")
    given = [] if images is None else images if isinstance(images, list) else [images]
    if shown == 0:
        raise Refused("image_missing")
    if len(given) != shown:
        raise Refused("images_mismatch")
    read: list[StoredImage] = []
    for value in given:
        image, why = read_image(value, root, cfg)
        if image is None:
            raise Refused(f"image_{why}")
        read.append(image)
    return Example(
        image=read[0],
        more_images=read[1:],
        question=_text(turns[-2]),
        answer=_text(turns[-1]),
        messages=turns[:-1],
        **fields,
    )
