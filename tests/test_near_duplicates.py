"""Dedup and decontamination recognise a picture after it was resized or re-encoded (perceptual
hash), and do not mistake distinct world pictures for one another."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from curriculum.filters import NEAR_IMAGE_BITS, Decontaminate, Dedup, ImageIndex
from curriculum.types import (
    COLOUR_TOLERANCE,
    HASH_BYTES,
    Candidate,
    Example,
    StoredImage,
    as_pil,
    hash_distance,
    hash_distances,
    image_hash,
    perceptual_hash,
)

SIZE = 64  # the demo's image size: at 32 px a JPEG's 8-pixel blocks rewrite the picture


@pytest.fixture(scope="module")
def world():
    from curriculum.world import build_splits

    return build_splits(seed=3, train_size=150, probe_size=30, test_size=45, image_size=SIZE)


def jpeg(image, quality: int = 75, scale: float = 1.0) -> StoredImage:
    """``image`` resized by ``scale`` and saved as a JPEG, held as its file bytes (as data sets hold it)."""
    img = as_pil(image)
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return StoredImage(buf.getvalue(), img.size)


def test_a_copy_is_near_and_distinct_world_images_are_not(world):
    images = {image_hash(ex.image): ex.image for split in world.values() for ex in split}
    hashes = np.array([np.frombuffer(perceptual_hash(im), dtype=np.uint8) for im in images.values()])
    pairs = [(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))]
    assert len(pairs) > 20_000
    close = [(i, j) for i in range(len(hashes)) for j in np.nonzero(
        hash_distances(hashes[i + 1 :], hashes[i].tobytes()) <= NEAR_IMAGE_BITS)[0]]  # fmt: skip
    assert close == []
    img = world["test"][0].image
    copy = jpeg(img, 75, scale=2.0)
    assert (
        image_hash(copy) != image_hash(img)
        and hash_distance(perceptual_hash(copy), perceptual_hash(img)) <= 4
    )
    # The hash is of the pixels, however they are held; a stored image keeps its hash once computed.
    png = io.BytesIO()
    as_pil(img).save(png, format="PNG")
    stored = StoredImage(png.getvalue(), as_pil(img).size)
    assert perceptual_hash(stored) == perceptual_hash(img) and stored._phash is not None


def test_the_index_finds_what_lies_within_its_bits():
    index = ImageIndex(max_bits=3)
    assert index.near(bytes(HASH_BYTES)) == []
    for n in range(100):  # past the first allocation: the index grows
        index.add(bytes([n]) + bytes(HASH_BYTES - 1), f"k{n}")
    assert len(index) == 100
    near = index.near(bytes(HASH_BYTES))  # within 3 bits of zero: the keys whose first byte has <= 3 bits set
    assert near == sorted((bin(n).count("1"), f"k{n}") for n in range(100) if bin(n).count("1") <= 3)


def test_pictures_of_other_colours_are_not_copies(world):
    """pHash reads layout only (every flat image has the same one); the mean colour tells a red
    picture from a blue one, and a re-encoded copy keeps it."""
    flat = {c: Image.new("RGB", (64, 64), c) for c in ("red", "blue", "white")}
    index = ImageIndex()
    for name, img in flat.items():
        assert index.near(perceptual_hash(img)) == []
        index.add(perceptual_hash(img), name)
    assert [k for _, k in index.near(perceptual_hash(jpeg(flat["blue"], 50)))] == ["blue"]
    worst = max(
        int(np.abs(np.frombuffer(perceptual_hash(jpeg(ex.image, 50)), np.uint8)[-3:].astype(int)
            - np.frombuffer(perceptual_hash(ex.image), np.uint8)[-3:]).max())
        for ex in world["test"]
    )  # fmt: skip
    assert worst <= COLOUR_TOLERANCE // 4


def test_a_planted_re_encoded_test_image_is_decontaminated(world):
    test, train = world["test"], world["train"]
    decon = Decontaminate({"test": test}, world["probe"], 0.8)
    planted = [
        dataclasses.replace(test[0], id="jpeg", image=jpeg(test[0].image, 75)),
        dataclasses.replace(
            test[1],
            id="resized",
            image=jpeg(test[1].image, 90, scale=2.0),
            scene=None,
            question="What is shown in this picture?",
        ),  # fmt: skip
        dataclasses.replace(test[2], id="shrunk", image=jpeg(test[2].image, 95, scale=0.8)),
        dataclasses.replace(test[3], id="recompressed", image=jpeg(jpeg(test[3].image, 90), 80)),
    ]
    cands = [Candidate(ex, "w", "g") for ex in planted]
    decon(cands)
    assert [c.dropped for c in cands] == ["decontaminate"] * 4
    for c, item in zip(cands, test, strict=False):
        assert f"evaluation item test:{item.id} (a resized or re-encoded copy" in c.verdicts["decontaminate"]
    # Distinct pictures pass, re-encoded too: nothing of the train split is a test picture.
    clean = [Candidate(dataclasses.replace(ex, image=jpeg(ex.image, 90)), "w", "g") for ex in train]
    decon(clean)
    assert [c.dropped for c in clean] == [None] * len(train)


def test_a_re_encoded_probe_item_is_caught_with_its_question_only(world):
    probe = world["probe"]
    decon = Decontaminate({}, probe, 0.8)
    same = dataclasses.replace(probe[0], id="copy", image=jpeg(probe[0].image, 80))
    new_question = dataclasses.replace(same, id="new-q", question="Is this a brand new question?")
    cands = [Candidate(same, "w", "g"), Candidate(new_question, "w", "g")]
    decon(cands)
    assert [c.dropped for c in cands] == ["decontaminate", None]
    assert cands[0].verdicts["decontaminate"] == f"probe item {probe[0].id}"


def test_dedup_catches_a_near_identical_image_with_the_same_question(world):
    a, b = world["train"][:2]
    dedup = Dedup(0.8)
    dedup.add(a)
    copy = dataclasses.replace(a, id="copy", image=jpeg(a.image, 75, scale=1.5))
    other_question = dataclasses.replace(copy, id="other-q", question="Is there anything red in the picture?")
    other_image = dataclasses.replace(b, id="other-image", question=a.question)
    cands = [Candidate(x, "w", "g") for x in (copy, other_question, other_image)]
    dedup(cands)
    assert [c.dropped for c in cands] == ["dedup", None, None]
    assert cands[0].verdicts["dedup"].startswith(f"duplicate of {a.id} (a near-identical image")
    # What the round kept joins the index: a second copy of the new question is a duplicate of it.
    again = Candidate(dataclasses.replace(other_question, id="again", image=jpeg(a.image, 90)), "w", "g")
    dedup([again])
    assert again.dropped == "dedup" and "duplicate of other-q" in again.verdicts["dedup"]


def test_an_example_without_a_copy_is_never_matched_by_text_alone(world):
    """Scene-rendered examples are matched by image only; the perceptual index adds no text rule."""
    test = world["test"]
    decon = Decontaminate({"test": test}, [], 0.8)
    fresh = Example("fresh", Image.new("RGB", (SIZE, SIZE), (10, 200, 90)), test[0].question, "1",
                    scene={"kind": "objects", "objects": []})  # fmt: skip
    cand = Candidate(fresh, "w", "g")
    decon([cand])
    assert cand.dropped is None


def test_every_image_of_a_conversation_is_checked_for_leaks(world):
    """An evaluation conversation leaks through any of its images, not only the first: a candidate
    whose second picture is a re-encoded copy of the test item's second picture is dropped, and
    so is one that asks the probe's question of a copy of a probe item's second picture."""
    test, probe, train = world["test"], world["probe"], world["train"]
    item = dataclasses.replace(test[0], more_images=[test[1].image])
    asked = dataclasses.replace(probe[0], more_images=[probe[1].image])
    decon = Decontaminate({"test": [item]}, [asked], 0.8)
    second = dataclasses.replace(train[0], id="second", scene=None, more_images=[jpeg(test[1].image, 80)])
    probe_copy = dataclasses.replace(train[1], id="probe", question=asked.question,
                                     more_images=[jpeg(probe[1].image, 90)])  # fmt: skip
    clean = dataclasses.replace(train[2], id="clean", more_images=[train[3].image])
    cands = [Candidate(ex, "w", "g") for ex in (second, probe_copy, clean)]
    decon(cands)
    assert [c.dropped for c in cands] == ["decontaminate", "decontaminate", None]
    assert (
        f"evaluation item test:{item.id} (a resized or re-encoded copy" in cands[0].verdicts["decontaminate"]
    )
    assert cands[1].verdicts["decontaminate"] == f"probe item {asked.id}"


def test_conversations_that_differ_in_a_later_picture_are_not_duplicates(world):
    train = world["train"]
    a = dataclasses.replace(train[0], id="a", more_images=[train[1].image])
    b = dataclasses.replace(train[0], id="b", more_images=[train[2].image])
    again = dataclasses.replace(a, id="again")
    dedup = Dedup(0.8)
    dedup.add(a)
    assert dedup.match(b) is None and dedup.match(again) == "duplicate of a"
    assert dedup.match(dataclasses.replace(train[0], id="single")) is None  # one picture: another item
