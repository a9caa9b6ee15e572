"""External data through `datasets`: columns named in config, bad images skipped and counted."""

import io
import json

import datasets
import pytest
from PIL import Image

from curriculum.types import StoredImage, image_hash
from train.config import load_config
from train.data import load_splits


def _png(color, size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _write_json_dataset(root):
    (root / "img").mkdir()
    rows = []
    for i in range(8):
        (root / "img" / f"{i}.png").write_bytes(_png((i * 30, 0, 0)))
        rows.append(
            {"img": f"img/{i}.png", "q": f"question {i}?", "a": str(i), "kind": "count", "uid": f"u{i}"}
        )
    (root / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "img" / "cut.png").write_bytes(_png((1, 2, 3), (64, 64))[:60])
    (root / "img" / "huge.png").write_bytes(_png((0, 0, 0), (300, 300)))
    (root / "img" / "dot.png").write_bytes(_png((0, 0, 0), (1, 1)))
    for name in ["bad.png", "cut.png", "missing.png", "huge.png", "dot.png"]:
        rows.append({"img": f"img/{name}", "q": "q?", "a": "a", "kind": "count", "uid": name})
    with open(root / "train.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(root / "test.jsonl", "w") as f:
        f.write(json.dumps({"img": "img/0.png", "q": "t?", "a": "0", "kind": "count", "uid": "t0"}) + "\n")


def test_json_dataset_with_paths_skips_and_counts_bad_images(tmp_path):
    _write_json_dataset(tmp_path)
    cfg = load_config(
        None,
        [
            "data.source=hf",
            "data.hf.path=json",
            f"data.hf.data_files={{train: {tmp_path}/train.jsonl, test: {tmp_path}/test.jsonl}}",
            "data.hf.image_column=img",
            "data.hf.question_column=q",
            "data.hf.answer_column=a",
            "data.hf.skill_column=kind",
            "data.hf.id_column=uid",
            "data.hf.eval_holdout=2",
            "data.max_image_pixels=10000",
        ],
    )
    splits = load_splits(cfg.data)
    assert splits.skipped == {"corrupt": 2, "missing": 1, "too_large": 1, "too_small": 1}
    assert len(splits.train) == 6 and len(splits.probe) == 2 and len(splits.test) == 1
    ex = splits.train[0]
    assert isinstance(ex.image, StoredImage) and ex.image.decode().size == (16, 16)
    assert (ex.id, ex.question, ex.answer, ex.skill, ex.source) == ("u0", "question 0?", "0", "count", "real")
    assert {e.split for e in splits.probe} == {"probe"} and splits.test[0].split == "test"


def test_image_feature_dataset_decodes_lazily_and_counts_corrupt(tmp_path):
    good = [{"bytes": _png((0, 200, 0)), "path": None} for _ in range(4)]
    bad = [{"bytes": b"garbage", "path": None}]
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    ds = datasets.Dataset.from_dict(
        {"image": good + bad, "question": ["what colour?"] * 5, "answer": ["green"] * 5}, features=features
    )
    ds.to_parquet(str(tmp_path / "train.parquet"))
    cfg = load_config(
        None,
        [
            "data.source=hf",
            "data.hf.path=parquet",
            f"data.hf.data_files={{train: {tmp_path}/train.parquet}}",
            "data.hf.eval_split=null",
            "data.hf.eval_holdout=1",
        ],
    )
    splits = load_splits(cfg.data)
    assert splits.skipped == {"corrupt": 1}
    assert len(splits.train) == 2 and len(splits.test) == 1 and len(splits.probe) == 1
    assert image_hash(splits.train[0].image) == image_hash(Image.new("RGB", (16, 16), (0, 200, 0)))


def test_missing_column_is_named(tmp_path):
    _write_json_dataset(tmp_path)
    cfg = load_config(
        None,
        [
            "data.source=hf",
            "data.hf.path=json",
            f"data.hf.data_files={{train: {tmp_path}/train.jsonl}}",
            "data.hf.image_column=picture",
        ],
    )
    with pytest.raises(ValueError, match="column 'picture' not in split 'train'"):
        load_splits(cfg.data)
