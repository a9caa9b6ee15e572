"""benchmarks/real_images.py: a skewed real-photo dataset whose answers a program reads off each
crop, written as JSON Lines with each split in its own folder, and loadable as a user's data."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import benchmark  # noqa: E402

pytest.importorskip("skimage")  # the benchmark extra: pip install -e .[benchmark]


def _script():
    return benchmark("real_images")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ri = _script()
    out = tmp_path_factory.mktemp("real_images")
    counts = ri.build(out, train=200, probe=16, test=24, size=24, seed=0)
    return ri, out, counts


def test_train_is_skewed_and_probe_and_test_are_balanced(built):
    ri, out, counts = built
    train = counts["train"]
    assert sum(train.values()) == 200 and train["brightest"] + train["colour"] < 0.2 * 200
    assert min(train["photo"], train["orientation"]) > 0.35 * 200
    assert counts["probe"] == {s: 4 for s in ri.QUESTIONS} and counts["test"] == {s: 6 for s in ri.QUESTIONS}


def test_every_answer_is_what_the_program_reads_off_the_saved_crop(built):
    ri, out, _ = built
    for split in ("train", "probe", "test"):
        rows = [json.loads(x) for x in (out / split / f"{split}.jsonl").read_text().splitlines()]
        for row in rows:
            pixels = np.asarray(Image.open(out / split / row["image"]).convert("RGB"), dtype=np.float64)
            assert row["question"] == ri.QUESTIONS[row["skill"]] and pixels.shape == (24, 24, 3)
            if row["skill"] in ("brightest", "colour"):
                answer, lead = (ri.brightest if row["skill"] == "brightest" else ri.strongest)(pixels)
                assert (answer, lead >= ri.MARGIN) == (row["answer"], True), row
            elif row["skill"] == "photo":
                assert row["answer"] == row["photo"] in ri.PHOTOS
            else:
                assert row["answer"] in ri.TURNS


def test_the_dataset_loads_as_a_users_data_with_its_skill_and_slice_columns(built):
    from train.config import load_config
    from train.data import load_splits

    ri, out, counts = built
    splits = load_splits(load_config(None, ri.data_overrides(out)).data)
    assert splits.sizes() == {"train": 200, "probe": 16, "test": 24} and not splits.skipped
    assert {ex.skill for ex in splits.test} == set(ri.QUESTIONS)
    assert {ex.params["photo"] for ex in splits.train} <= set(ri.PHOTOS) and splits.train[
        0
    ].id == "train-00000"
