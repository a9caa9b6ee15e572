"""External data through `datasets`: columns named in config, bad rows skipped and counted."""

import io
import json
import logging
import math

import datasets
import pytest
from PIL import Image

from curriculum.types import Example, StoredImage, image_hash
from train.config import ConfigError, load_config
from train.data import bin_slice_columns, column_names, load_splits, text_value


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
    assert splits.skipped == {
        "train/image_corrupt": 2,
        "train/image_missing": 1,
        "train/image_too_large": 1,
        "train/image_too_small": 1,
    }
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
    assert splits.skipped == {"train/image_corrupt": 1}
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


def _hf_json_config(root, *extra):
    return load_config(
        None,
        [
            "data.source=hf",
            "data.hf.path=json",
            f"data.hf.data_files={{train: {root}/train.jsonl, test: {root}/test.jsonl}}",
            "data.hf.image_column=img",
            "data.hf.question_column=q",
            "data.hf.answer_column=a",
            "data.hf.eval_holdout=1",
            *extra,
        ],
    )


def _line(q, a, **more) -> bytes:
    return json.dumps({"img": "x.png", "q": q, "a": a, **more}).encode() + b"\n"


def test_rows_without_usable_question_or_answer_are_skipped_and_counted_by_split(tmp_path, caplog):
    """A null, NaN, blank, non-text or non-UTF-8 question or answer drops its row (counted by
    split and reason, named in a warning when the bytes do not decode); numbers and booleans are
    legitimate answers, in their string form; later rows keep their row numbers as ids."""
    (tmp_path / "x.png").write_bytes(_png((9, 9, 9)))
    train = [
        _line("How many?", "2"),
        _line("How many?", None),  # null answer: would train as "None"
        _line("How many?", ""),
        _line("How many?", "   "),
        _line(None, "2"),
        _line("", "2"),
        _line("How many?", ["2", "two"]),  # several answers: not one text to train on
        _line("How many?", {"n": 2}),
        b'{"img": "x.png", "q": "What is \xff\xfe?", "a": "4"}\n',  # bytes that are not UTF-8
        b'{"img": "x.png", "q": "What?", "a": "caf\xe9"}\n',  # Latin-1, not UTF-8
        b'{"img": "x.png", "q": "What?", "a": "5", "note": "\x80"}\n',
        _line("How many?", 7),
        _line("How much?", 2.5),
        _line("How many?", 3.0),  # an integer column with a gap reads back as floats
        _line("Is it?", True),
        _line("Which?", "red"),
    ]
    (tmp_path / "train.jsonl").write_bytes(b"".join(train))
    test = [_line("t?", "1"), b'{"img": "x.png", "q": "t \xc3?", "a": "1"}\n', _line("t?", None)]
    (tmp_path / "test.jsonl").write_bytes(b"".join(test))
    with caplog.at_level(logging.WARNING, logger="train.data"):
        splits = load_splits(_hf_json_config(tmp_path).data)
    assert splits.skipped == {
        "train/answer_missing": 3,
        "train/question_missing": 2,
        "train/answer_not_text": 2,
        "train/question_undecodable": 1,
        "train/answer_undecodable": 1,
        "train/text_undecodable": 1,
        "test/question_undecodable": 1,
        "test/answer_missing": 1,
    }
    kept = splits.train + splits.probe  # the last train item is carved out as the probe
    assert [(ex.id, ex.question, ex.answer) for ex in kept] == [
        ("train-0", "How many?", "2"),
        ("train-11", "How many?", "7"),
        ("train-12", "How much?", "2.5"),
        ("train-13", "How many?", "3"),
        ("train-14", "Is it?", "true"),
        ("train-15", "Which?", "red"),
    ]
    assert [(ex.id, ex.answer) for ex in splits.test] == [("test-0", "1")]
    warnings = [r.getMessage() for r in caplog.records]
    assert any(
        "train.jsonl: 3 row(s)" in m and "line 9 ('q')" in m and "line 11 ('note')" in m for m in warnings
    )
    assert any("test.jsonl: 1 row(s)" in m and "line 2 ('q')" in m for m in warnings)
    summary = next(m for m in warnings if m.startswith("skipped rows"))
    assert summary == (
        "skipped rows: test: 1 answer_missing, 1 question_undecodable; train: 3 answer_missing, "
        "2 answer_not_text, 1 answer_undecodable, 2 question_missing, 1 question_undecodable, "
        "1 text_undecodable"
    )


def test_binary_and_float_columns_read_as_text(tmp_path):
    """Questions stored as bytes are decoded (or counted when they are not UTF-8); a float answer
    column with a gap (NaN) keeps its integers as integers and drops the gap."""
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("binary"), "answer": datasets.Value("float64")}
    )
    rows = {
        "image": [{"bytes": _png((0, 0, 200)), "path": None}] * 5,
        "question": [b"how many?", b"\xff\xfehow?", b"how many?", b"how many?", b"how many?"],
        "answer": [3.0, 1.0, math.nan, 0.5, 2.0],
    }
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
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
    assert splits.skipped == {"train/question_undecodable": 1, "train/answer_missing": 1}
    kept = splits.train + splits.probe + splits.test
    assert [(ex.question, ex.answer) for ex in kept] == [
        ("how many?", "3"),
        ("how many?", "0.5"),
        ("how many?", "2"),
    ]


def test_text_values_and_column_names():
    assert (
        text_value(12) == ("12", "ok")
        and text_value(-4.0) == ("-4", "ok")
        and text_value(0.1) == ("0.1", "ok")
    )
    assert text_value(False) == ("false", "ok") and text_value(b"ok") == ("ok", "ok")
    assert text_value(math.inf) == (None, "not_text") and text_value(" \n") == (None, "missing")
    assert text_value("\udcff") == (None, "undecodable")  # a byte that did not decode, escaped
    cfg = load_config(None, ["data.source=hf", "data.hf.path=json", "data.hf.answer_column=solution"])
    assert column_names(cfg.data) == {"image": "image", "question": "question", "solution": "answer"}
    assert column_names(load_config(None, []).data) == {}


def _skewed_dataset(root, n=40):
    """``n`` train rows, a quarter of skill ``rare``, and one test row."""
    (root / "img").mkdir()
    with open(root / "train.jsonl", "w") as f:
        for i in range(n):
            (root / "img" / f"{i}.png").write_bytes(_png((i * 6, 0, 0)))
            skill = "rare" if i % 4 == 0 else "common"
            f.write(json.dumps({"img": f"img/{i}.png", "q": f"q {i}?", "a": str(i), "kind": skill}) + "\n")
    (root / "test.jsonl").write_text(
        json.dumps({"img": "img/0.png", "q": "t?", "a": "0", "kind": "rare"}) + "\n"
    )


def test_a_reserve_is_held_back_from_train_the_same_items_every_time(tmp_path):
    _skewed_dataset(tmp_path)
    plain = load_splits(_hf_json_config(tmp_path, "data.hf.skill_column=kind").data)
    cfg = _hf_json_config(tmp_path, "data.hf.skill_column=kind", "data.hf.reserve=12")
    splits = load_splits(cfg.data, seed=0)
    ids = lambda xs: [ex.id for ex in xs]  # noqa: E731
    assert len(splits.reserve) == 12 and len(splits.train) == len(plain.train) - 12
    assert splits.sizes() == {"train": len(plain.train) - 12, "probe": 1, "test": 1, "reserve": 12}
    # Taken from train only, after the probe holdout: probe and test do not move.
    assert sorted(ids(splits.train) + ids(splits.reserve)) == sorted(ids(plain.train))
    assert ids(splits.probe) == ids(plain.probe) and ids(splits.test) == ids(plain.test)
    assert {ex.split for ex in splits.reserve} == {"reserve"} and {ex.split for ex in splits.train} == {
        "train"
    }
    assert {ex.skill for ex in splits.reserve} == {"common", "rare"}  # a random sample, not the tail
    # The same items whatever the run's seed: every arm and seed trains on the same rest.
    assert ids(load_splits(cfg.data, seed=7).reserve) == ids(splits.reserve)
    assert plain.reserve == [] and "reserve" not in plain.sizes()


def test_a_reserve_the_train_split_cannot_spare_is_refused(tmp_path):
    _skewed_dataset(tmp_path, n=10)
    cfg = _hf_json_config(tmp_path, "data.hf.reserve=9")  # 10 rows, 1 held out for the probe
    with pytest.raises(ValueError, match="data.hf.reserve: cannot hold back 9 of 9 train items"):
        load_splits(cfg.data)
    with pytest.raises(ValueError, match="data.hf.reserve must be >= 0"):
        _hf_json_config(tmp_path, "data.hf.reserve=-1")


def _split_folders(root, missing_probe_images=False):
    """A json dataset whose splits live in folders of their own, each with its own ``img/``:
    relative paths name a file beside the split's own data file."""
    for split, n in (("train", 6), ("probe", 3), ("test", 4)):
        (root / split / "img").mkdir(parents=True)
        with open(root / split / f"{split}.jsonl", "w") as f:
            for i in range(n):
                if not (missing_probe_images and split == "probe"):
                    (root / split / "img" / f"{i}.png").write_bytes(_png((i * 40, 9, 9)))
                row = {
                    "img": f"img/{i}.png",
                    "q": "which?",
                    "a": str(i),
                    "site": "ab"[i % 2],
                    "depth": i * 1.5,
                }
                f.write(json.dumps(row) + "\n")
    files = ", ".join(f"{s}: {root}/{s}/{s}.jsonl" for s in ("train", "probe", "test"))
    return ["data.source=hf", "data.hf.path=json", f"data.hf.data_files={{{files}}}", "data.hf.probe_split=probe",
            "data.hf.image_column=img", "data.hf.question_column=q", "data.hf.answer_column=a"]  # fmt: skip


def test_relative_image_paths_resolve_against_each_splits_own_file(tmp_path):
    cfg = load_config(None, _split_folders(tmp_path))
    splits = load_splits(cfg.data)
    assert splits.sizes() == {"train": 6, "probe": 3, "test": 4} and not splits.skipped
    # Each split read its own pictures (train's 0.png is not probe's 0.png: same name, other folder).
    for items in (splits.train, splits.probe, splits.test):
        assert [ex.image.decode().getpixel((0, 0))[0] for ex in items] == [i * 40 for i in range(len(items))]


def test_files_of_one_split_in_several_folders_each_resolve_against_their_own(tmp_path):
    """A glob naming files in several folders: each file's paths resolve against its own folder."""
    for part, shade in (("a", 10), ("b", 200)):
        (tmp_path / "parts" / part / "img").mkdir(parents=True)
        (tmp_path / "parts" / part / "img" / "0.png").write_bytes(_png((shade, 0, 0)))
        with open(tmp_path / "parts" / part / "part.jsonl", "w") as f:
            for _ in range(3):
                f.write(json.dumps({"img": "img/0.png", "q": "which?", "a": part}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"img": "parts/a/img/0.png", "q": "t?", "a": "a"}) + "\n")
    files = f"{{train: '{tmp_path}/parts/*/part.jsonl', test: {tmp_path}/test.jsonl}}"
    cfg = load_config(None, ["data.source=hf", "data.hf.path=json", f"data.hf.data_files={files}",
                             "data.hf.image_column=img", "data.hf.question_column=q", "data.hf.answer_column=a",
                             "data.hf.eval_holdout=1"])  # fmt: skip
    splits = load_splits(cfg.data)
    assert not splits.skipped and splits.sizes() == {"train": 5, "probe": 1, "test": 1}
    items = splits.train + splits.probe
    assert [(ex.answer, ex.image.decode().getpixel((0, 0))[0]) for ex in items] == [("a", 10)] * 3 + [
        ("b", 200)
    ] * 3
    assert [ex.id for ex in items] == [f"train-{i}" for i in range(6)]  # row numbers run on across the files


def test_a_split_that_ends_empty_is_one_line_naming_it_and_why(tmp_path):
    cfg = load_config(None, _split_folders(tmp_path, missing_probe_images=True))
    with pytest.raises(ValueError) as err:
        load_splits(cfg.data)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.hf: the probe split ('probe') is empty: ")
    assert "all 3 rows were skipped (3 image_missing)" in message and str(tmp_path / "probe") in message
    cfg = load_config(
        None, [*_split_folders(tmp_path / "b"), "data.hf.probe_split=null", "data.hf.eval_holdout=0"]
    )
    with pytest.raises(
        ValueError, match=r"^data.hf: the probe split is empty: data.hf.probe_split names no split"
    ):
        load_splits(cfg.data)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.jsonl").write_text("")
    (tmp_path / "c" / "test.jsonl").write_text(json.dumps({"img": "x.png", "q": "q", "a": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"the train split \('train'\) is empty: its data holds no row"):
        load_splits(_hf_json_config(tmp_path / "c").data)


def test_slice_columns_become_params_numeric_ones_cut_at_the_train_thirds(tmp_path):
    cfg = load_config(None, [*_split_folders(tmp_path), "data.hf.slice_columns=[site, depth]"])
    splits = load_splits(cfg.data)
    assert [ex.params["site"] for ex in splits.train] == ["a", "b"] * 3
    assert [ex.params["depth"] for ex in splits.train] == [
        "0",
        "1.5",
        "3",
        "4.5",
        "6",
        "7.5",
    ]  # 6 values: kept
    assert "site" not in splits.train[0].meta and "depth" not in splits.train[0].meta
    train = [Example(f"t{i}", None, "q", "a", params={"depth": float(i)}) for i in range(30)]
    test = [
        Example("x", None, "q", "a", params={"depth": 99.0}),
        Example("y", None, "q", "a", params={"depth": None}),
    ]
    bin_slice_columns(["depth"], train, [test])
    assert [ex.params["depth"] for ex in train[::10]] == ["0-10", "10-20", "20-29"]
    assert test[0].params == {"depth": "20-29"} and test[1].params == {}  # past the top: the top third


def test_slice_columns_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="slice_columns"):
        load_config(None, ["data.source=hf", "data.hf.path=json", "data.hf.slice_columns=[answer]"])
    with pytest.raises(ConfigError, match="slice_columns"):
        load_config(None, ["data.source=hf", "data.hf.path=json", "data.hf.slice_columns=[site, site]"])
    cfg = load_config(None, [*_split_folders(tmp_path), "data.hf.slice_columns=[hospital]"])
    with pytest.raises(ValueError, match="column 'hospital' not in split 'train'"):
        load_splits(cfg.data)
