"""Reading a chat request as the pipeline sends it, and writing a reply that fits its schema.

The frontier client sends a system prompt and one user message whose parts are text, images as
PNG data URLs, and ``<data>...</data>`` blocks of JSON (``prompting.data_block``). The simulated
model reads those parts back (``Shown``: an image with the data block that follows it), the
requested schema from ``response_format``, and fills the schema (``conform``), so its replies
pass the client's schema check however the pipeline's schemas change.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from curriculum.frontier.sim.perceive import read_scene

_DATA = re.compile(r"<data>(.*)</data>", re.S)


@dataclass
class Shown:
    """One picture of a request with the data block after it (question, answers, item number)."""

    image: Image.Image | None
    scene: dict[str, Any] | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatRequest:
    model: str
    system: str
    texts: list[str]
    shown: list[Shown]
    blocks: list[Any]  # every data block, in order
    schema: dict[str, Any]
    name: str
    images: list[Image.Image]

    @property
    def head(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def strategy(self) -> str | None:
        m = re.search(r"Strategy: (\w+)", self.head)
        return m[1] if m else None

    @property
    def asked(self) -> int | None:
        """How many proposals the request asks for at most ("Propose at most N"), None if it does not say."""
        m = re.search(r"Propose at most (\d+)", self.head)
        return int(m[1]) if m else None


def image_from_url(url: str) -> Image.Image | None:
    """The picture of a base64 data URL; None for anything else (a web URL is not fetched)."""
    if not url.startswith("data:") or "," not in url:
        return None
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=False)
        with Image.open(io.BytesIO(raw)) as img:
            return img.convert("RGB")
    except Exception:
        return None


def data_of(text: str) -> Any:
    """The JSON inside a ``<data>`` block of a text part, or None."""
    m = _DATA.search(text)
    if not m:
        return None
    try:
        return json.loads(m[1])
    except json.JSONDecodeError:
        return None


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    """A chat completion request as the simulated model reads it."""
    system, texts, shown, blocks, images = "", [], [], [], []
    for message in body.get("messages") or []:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        if message.get("role") == "system":
            system += "".join(p.get("text", "") for p in parts if p.get("type") == "text")
            continue
        for part in parts:
            if part.get("type") == "image_url":
                image = image_from_url((part.get("image_url") or {}).get("url", ""))
                if image is not None:
                    images.append(image)
                shown.append(Shown(image, read_scene(image) if image is not None else None))
            elif part.get("type") == "text":
                text = part.get("text", "")
                texts.append(text)
                data = data_of(text)
                if data is not None:
                    blocks.append(data)
                    if isinstance(data, dict) and shown and not shown[-1].data:
                        shown[-1].data = data
    fmt = (body.get("response_format") or {}).get("json_schema") or {}
    return ChatRequest(
        model=str(body.get("model", "")),
        system=system,
        texts=texts,
        shown=shown,
        blocks=blocks,
        schema=fmt.get("schema") or {},
        name=str(fmt.get("name", "")),
        images=images,
    )


def shown_key(request: ChatRequest) -> str:
    """A hash of what a request shows the model: its user texts and its pictures' pixels."""
    h = hashlib.sha256()
    for text in request.texts:
        h.update(text.encode())
    for image in request.images:
        h.update(image.tobytes())
    return h.hexdigest()


def skills_in(system: str) -> dict[str, Any]:
    """The skill list a system prompt carries (the analysis prompts' last JSON object)."""
    for line in reversed(system.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
    return {}


# ----------------------------------------------------------------------------- replies


def conform(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` made to fit ``schema``: missing required keys filled, unknown ones dropped,
    strings cut to their length, arrays to their size, numbers and enums into range."""
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        return value if value in schema["enum"] else schema["enum"][0]
    if kind == "object":
        value = value if isinstance(value, dict) else {}
        props = schema.get("properties", {})
        out = {
            k: conform(value.get(k), p)
            for k, p in props.items()
            if k in value or k in schema.get("required", [])
        }
        if schema.get("additionalProperties") is not False:
            out.update({k: v for k, v in value.items() if k not in props})
        return out
    if kind == "array":
        items = list(value) if isinstance(value, list) else []
        items = items[: schema.get("maxItems", len(items))]
        return [conform(v, schema.get("items", {})) for v in items]
    if kind == "string":
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        return text[: schema.get("maxLength", len(text))]
    if kind in ("integer", "number"):
        number = (
            value
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else schema.get("minimum", 0)
        )
        number = min(max(number, schema.get("minimum", -math.inf)), schema.get("maximum", math.inf))
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return bool(value)
    return value


def tokens_of_text(text: str) -> int:
    """About four characters per token, as English text and JSON come out of BPE tokenizers."""
    return max(1, (len(text) + 3) // 4) if text else 0


def tokens_of_image(image: Image.Image, detail: str = "high") -> int:
    """Input tokens of one picture as OpenAI counts them: 85, plus 170 per 512-pixel tile of the
    picture scaled to fit 2048 x 2048 and then to a shorter side of at most 768 (``high``)."""
    if detail == "low":
        return 85
    w, h = image.size
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def prompt_tokens(body: dict[str, Any], images: list[Image.Image], detail: str) -> int:
    """Input tokens of a chat request: its text parts and schema as text, its pictures by tiles."""
    text = json.dumps(body.get("response_format") or {})
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            text += content
        else:
            text += "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
        text += " " * 16  # each message's role and separators
    return tokens_of_text(text) + sum(tokens_of_image(im, detail) for im in images)
