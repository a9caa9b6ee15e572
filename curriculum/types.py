"""The plain records that flow between the data, the loop and the curriculum.

Every stage takes and returns these dataclasses, so each stage can be tested alone and the
records can be written to disk as JSON (images apart) at any point.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from curriculum.scoring import with_rationale


class StoredImage:
    """An encoded image kept as bytes and decoded on each use.

    External data sets can hold more pixels than fit in memory once decoded; keeping the
    (already validated) file bytes costs only their compressed size. Its bytes never change, so
    its perceptual hash is computed once (the pool's images are hashed again every round).
    """

    __slots__ = ("data", "size", "mode", "_phash")

    def __init__(self, data: bytes, size: tuple[int, int], mode: str = "RGB") -> None:
        self.data = data
        self.size = size
        self.mode = mode
        self._phash: bytes | None = None

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

    A conversational item (several turns, several images) is the same record: ``question`` is
    the text of its last user turn and ``answer`` its last assistant turn, the turn that is
    evaluated and answered; ``messages`` holds the conversation up to and including that user
    turn (roles ``system``, ``user``, ``assistant``; content lists of ``{"type": "text", "text"}``
    and ``{"type": "image"}`` parts, as TRL and ``datasets`` write them), and its images, in the
    order of their placeholders, are ``image`` then ``more_images``. None: one user turn, the
    image and the question (``question_first`` orders them).
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
    more_images: list[Image.Image | StoredImage] = field(default_factory=list)
    messages: list[dict[str, Any]] | None = None

    @property
    def images(self) -> list[Image.Image | StoredImage]:
        """Every image of the item, in the order the conversation shows them."""
        return [self.image, *self.more_images]

    @property
    def target(self) -> str:
        """What the model is trained to say: the answer, after its rationale when it has one."""
        rationale = self.meta.get("rationale")
        return with_rationale(rationale, self.answer) if rationale else self.answer

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
            **({"more_image_sha1": [image_hash(im) for im in self.more_images]} if self.more_images else {}),
            **({"messages": self.messages} if self.messages is not None else {}),
        }


def image_hash(image: Image.Image | StoredImage) -> str:
    """A content hash of the decoded pixels: equal for equal images, whatever file they came from."""
    image = as_pil(image)
    h = hashlib.sha1()
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


PHASH_BITS = 192
"""Bits of ``perceptual_hash``'s layout part: a 64-bit pHash for each of the R, G and B channels."""
HASH_BYTES = PHASH_BITS // 8 + 3
"""Bytes of ``perceptual_hash``: the layout bits, then the mean R, G and B (0 to 255)."""
COLOUR_TOLERANCE = 24
"""Two images can be the same picture only when no channel's mean differs by more than this
(of 255). Copies keep their mean colour within a few levels (JPEG at quality 50 moves a world
image's by at most 2); pHash alone does not see it: every flat image has the same pHash."""

_PHASH_PRESCALE = 128
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def perceptual_hash(image: Image.Image | StoredImage) -> bytes:
    """A perceptual hash that survives re-encoding and resizing: imagehash's pHash (the signs of
    the 8 x 8 lowest DCT frequencies of a 32 x 32 downscale, against their median) of each of the
    R, G and B channels, 24 bytes, then the image's mean R, G and B, 3 bytes. Two hashes are
    compared by ``hash_distance`` (layout bits) and ``same_colour`` (mean colours).

    Per channel rather than of the grey image: the world's scenes are a few flat shapes on a
    plain background, and a grey pHash cannot tell a red square from a blue one in the same place
    (their greys sit on the same side of the background's), so distinct scenes of one skill collided
    hundreds of times more often (``benchmarks/perceptual_hash.py``).
    """
    if isinstance(image, StoredImage) and image._phash is not None:
        return image._phash
    import imagehash

    rgb = as_pil(image).convert("RGB")
    if max(rgb.size) > _PHASH_PRESCALE:
        # pHash reads a 32 x 32 downscale: an area average to 128 x 128 first gives the same picture
        # and spares three full-size resizes (a 1024 px image took 37 ms to hash, now 7 ms).
        rgb = rgb.resize((_PHASH_PRESCALE, _PHASH_PRESCALE), Image.Resampling.BOX)
    bits = np.concatenate([imagehash.phash(channel, hash_size=8).hash.ravel() for channel in rgb.split()])
    mean = np.asarray(rgb, dtype=np.float32).reshape(-1, 3).mean(0)
    digest = np.packbits(bits).tobytes() + bytes(int(round(float(c))) for c in mean)
    if isinstance(image, StoredImage):
        image._phash = digest
    return digest


_LAYOUT = PHASH_BITS // 8


def hash_distance(a: bytes, b: bytes) -> int:
    """How many layout bits of two perceptual hashes differ (0 to ``PHASH_BITS``)."""
    x = np.frombuffer(a[:_LAYOUT], dtype=np.uint8) ^ np.frombuffer(b[:_LAYOUT], dtype=np.uint8)
    return int(_POPCOUNT[x].sum())


def hash_distances(hashes: np.ndarray, h: bytes) -> np.ndarray:
    """``hash_distance`` of ``h`` to every row of ``hashes`` (an ``(n, HASH_BYTES)`` uint8 array)."""
    x = hashes[:, :_LAYOUT] ^ np.frombuffer(h[:_LAYOUT], dtype=np.uint8)
    return _POPCOUNT[x].sum(axis=1, dtype=np.int32)


def same_colour(hashes: np.ndarray, h: bytes) -> np.ndarray:
    """Per row of ``hashes``, whether its mean colour is within ``COLOUR_TOLERANCE`` of ``h``'s."""
    mean = np.frombuffer(h[_LAYOUT:], dtype=np.uint8).astype(np.int16)
    return (np.abs(hashes[:, _LAYOUT:].astype(np.int16) - mean) <= COLOUR_TOLERANCE).all(axis=1)


def image_to_png_bytes(image: Image.Image | StoredImage) -> bytes:
    image = as_pil(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- curriculum stages
# Each stage of a round takes and returns these plain records, so every stage is testable alone.


@dataclass
class Failure:
    """A probe item the model got wrong in round ``round``.

    ``new`` is true when the item had not failed (and been analysed) in an earlier round.
    """

    example: Example
    prediction: str
    round: int
    new: bool = True


@dataclass
class Weakness:
    """One diagnosed weakness: a slice of the probe where the model fails more than it should.

    ``slice`` constrains the example parameters that define it, e.g. ``{"num_objects": [7, 9]}``
    (an inclusive range) or ``{"mode": "both"}`` (one value); empty means the whole skill.
    ``spec`` is what a generator needs to make more of the slice: for the built-in world a
    ``curriculum.world.Spec``-style dict ``{"skill": ..., "params": {...}}`` (its ``count`` is set
    by the round's budget); None when the examples come from data without a generator.
    ``lower_bound`` is a confidence bound on ``failure_rate`` used for ranking.
    """

    id: str
    skill: str | None
    slice: dict[str, Any]
    failure_rate: float
    lower_bound: float
    n: int
    failures: int
    failure_ids: list[str]
    diagnosis: str
    confusions: list[tuple[str, str, int]] = field(default_factory=list)  # (answer, predicted, times)
    spec: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # the analyzer's extras: model, prompt, proposals

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "skill": self.skill,
            "slice": self.slice,
            "failure_rate": self.failure_rate,
            "lower_bound": self.lower_bound,
            "n": self.n,
            "failures": self.failures,
            "failure_ids": self.failure_ids,
            "diagnosis": self.diagnosis,
            "confusions": [list(c) for c in self.confusions],
            "spec": self.spec,
            "notes": self.notes,
        }


@dataclass
class Candidate:
    """A generated example on its way through the filters.

    ``weakness`` is the id of the weakness it targets; ``verdicts`` maps each filter that has
    seen it to ``"ok"`` or the reason it was dropped; ``dropped`` names the first failing
    filter (None while it survives).
    """

    example: Example
    weakness: str
    generator: str
    verdicts: dict[str, str] = field(default_factory=dict)
    dropped: str | None = None

    def drop(self, filter_name: str, reason: str) -> None:
        self.verdicts[filter_name] = reason
        self.dropped = filter_name

    def keep(self, filter_name: str) -> None:
        self.verdicts[filter_name] = "ok"


class Policy(Protocol):
    """The model as the curriculum sees it: it answers, it never trains.

    The training loop supplies it (sharded generation when distributed: every rank must call it
    with the same examples). ``answer`` is greedy; ``sample`` draws ``n`` answers per example.
    """

    def answer(self, examples: list[Example]) -> list[str]: ...

    def sample(self, examples: list[Example], n: int) -> list[list[str]]: ...
