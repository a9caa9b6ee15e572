"""The plain records that flow between the data, the loop and the curriculum.

Every stage takes and returns these dataclasses, so each stage can be tested alone and the
records can be written to disk as JSON (images apart) at any point.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


class StoredImage:
    """An encoded image kept as bytes and decoded on each use.

    External data sets can hold more pixels than fit in memory once decoded; keeping the
    (already validated) file bytes costs only their compressed size.
    """

    __slots__ = ("data", "size", "mode")

    def __init__(self, data: bytes, size: tuple[int, int], mode: str = "RGB") -> None:
        self.data = data
        self.size = size
        self.mode = mode

    def decode(self) -> Image.Image:
        with Image.open(io.BytesIO(self.data)) as img:
            return img.convert("RGB")


def as_pil(image: Image.Image | StoredImage) -> Image.Image:
    """The decoded RGB image, whichever way it is held."""
    return image.decode() if isinstance(image, StoredImage) else image


@dataclass
class Example:
    """One image-question-answer item, real or synthetic.

    ``skill``, ``params`` and ``scene`` are known for the built-in world and optional for
    external data. ``meta`` holds provenance (round, failure ids answered, generator,
    verdicts) and any extra dataset columns.
    """

    id: str
    image: Image.Image | StoredImage
    question: str
    answer: str
    skill: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    scene: dict[str, Any] | None = None
    source: str = "real"
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready view of everything but the image (which is named by its hash)."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "skill": self.skill,
            "params": self.params,
            "scene": self.scene,
            "source": self.source,
            "split": self.split,
            "meta": self.meta,
            "image_sha1": image_hash(self.image),
        }


def image_hash(image: Image.Image | StoredImage) -> str:
    """A content hash of the decoded pixels: equal for equal images, whatever file they came from."""
    image = as_pil(image)
    h = hashlib.sha1()
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def image_to_png_bytes(image: Image.Image | StoredImage) -> bytes:
    image = as_pil(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
