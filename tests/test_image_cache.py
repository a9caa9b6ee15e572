"""Processed pictures reused from the cache give the batches processed afresh; a changed picture
is processed again; the cache stays within its size; processors it cannot serve are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from models.tiny import ARCHS
from tests.test_collate_once import _processor, _same
from tests.test_conversations import conversation
from train.collate import VLMCollator
from train.image_cache import CachedImages

pytestmark = pytest.mark.usefixtures("one_thread")
PADDED = ("idefics3", "smolvlm")  # a tensor per batch row, pictures padded together


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in PADDED])
def test_cached_pictures_give_the_same_batches(arch, arch_checkpoints, arch_world):
    processor = _processor(arch_checkpoints, arch)
    plain, cached = VLMCollator(processor), VLMCollator(processor, image_cache_mib=4)
    assert processor.image_processor is plain.processor.image_processor  # the saved one stays plain
    batches = [[*arch_world["train"][:3], conversation(arch_world)], arch_world["train"][1:5]]
    for examples in [*batches, *batches]:
        _same(cached(examples), plain(examples))
        _same(cached.prompts(examples), plain.prompts(examples))
    cache = cached.processor.image_processor
    assert cache.misses == 5 and cache.hits > cache.misses  # 5 different pictures, each processed once
    twin = copy.deepcopy(cached)  # as the background batch builder copies it
    _same(twin(batches[1]), plain(batches[1]))


def test_a_changed_picture_is_processed_again(arch_checkpoints, arch_world):
    processor = _processor(arch_checkpoints, "qwen2_5_vl")
    cached = CachedImages(processor.image_processor, 2**20)
    picture = arch_world["train"][0].image.copy()
    first = cached([picture], return_tensors="pt")["pixel_values"]
    picture.putpixel((3, 3), (255, 0, 0) if picture.getpixel((3, 3)) != (255, 0, 0) else (0, 0, 255))
    again = cached([picture], return_tensors="pt")["pixel_values"]
    assert cached.misses == 2 and not torch.equal(first, again)
    assert torch.equal(again, processor.image_processor([picture], return_tensors="pt")["pixel_values"])


def test_the_cache_keeps_within_its_size(arch_checkpoints):
    processor = _processor(arch_checkpoints, "qwen2_5_vl")
    one = processor.image_processor([Image.new("RGB", (64, 64))], return_tensors="pt")
    size = sum(t.numel() * t.element_size() for t in one.values())
    cached = CachedImages(processor.image_processor, int(2.5 * size))
    pictures = [Image.new("RGB", (64, 64), (i, 0, 0)) for i in range(5)]
    for picture in pictures:
        cached([picture], return_tensors="pt")
        assert cached.held <= cached.max_bytes
    cached([pictures[-1]], return_tensors="pt")
    cached([pictures[0]], return_tensors="pt")  # the oldest went
    assert (cached.hits, cached.misses) == (1, 6)


@pytest.mark.parametrize("arch", PADDED)
def test_processors_that_pad_pictures_together_are_refused(arch, arch_checkpoints, arch_world):
    collator = VLMCollator(_processor(arch_checkpoints, arch), image_cache_mib=4)
    with pytest.raises(ValueError, match=r"^data.image_cache_mib: \w*ImageProcessor\w* lays") as err:
        collator(arch_world["train"][:2])
    assert "\n" not in str(err.value)


def test_a_negative_cache_size_is_refused():
    from train.config import load_config

    with pytest.raises(ValueError, match="image_cache_mib"):
        load_config(None, ["data.image_cache_mib=-1"])
