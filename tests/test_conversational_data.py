"""Conversational data from local files, as docs/conversational-data.md shows it: the very layout
and config of that page load and train with the curriculum on; rows that cannot train are counted
by reason; Parquet with the images in the file loads too; the pool keeps every turn and image and
still reads the records of older runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curriculum.types import Example, as_pil, image_hash

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "conversational-data.md").read_text(encoding="utf-8")


def _block(lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", PAGE, re.S).group(1)


def _turns(a: Example, b: Example) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": a.question}]},
        {"role": "assistant", "content": [{"type": "text", "text": a.answer}]},
        {"role": "user", "content": [{"type": "text", "text": b.question}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": b.answer}]},
    ]


def write_layout(root: Path, sizes=(160, 24)) -> dict[str, list[tuple[Example, Example]]]:
    """The page's layout (``mydata/<split>/<split>.jsonl``, images beside each split's file) of
    two-turn conversations over the world's pictures; the pairs each split holds."""
    from curriculum.world import build_splits

    parts = build_splits(seed=5, train_size=2 * sizes[0], probe_size=0, test_size=2 * sizes[1], image_size=32,
                         skills=["colour", "shape"])  # fmt: skip
    written = {}
    for split in ("train", "test"):
        folder = root / "mydata" / split
        (folder / "images").mkdir(parents=True)
        items = parts[split]
        pairs = list(zip(items[::2], items[1::2], strict=True))
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for n, (a, b) in enumerate(pairs):
                paths = [f"images/{n:04d}a.png", f"images/{n:04d}b.png"]
                for ex, path in zip((a, b), paths, strict=True):
                    as_pil(ex.image).save(folder / path)
                row = {"messages": _turns(a, b), "images": paths, "skill": b.skill}
                f.write(json.dumps(row) + "\n")
        written[split] = pairs
    return written


def _config(*overrides: str):
    from train.config import load_config

    Path("conversations.yaml").write_text(_block("yaml"))
    return load_config("conversations.yaml", list(overrides))


def test_the_page_s_example_line_is_a_conversation_the_loader_reads():
    from train.conversations import turns_of

    row = json.loads(_block("json"))
    turns = turns_of(row["messages"])
    assert sum(p["type"] == "image" for t in turns for p in t["content"]) == len(row["images"]) == 2
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]


def test_the_page_s_layout_and_config_load_every_turn_and_image(tmp_path, monkeypatch):
    from train.data import load_splits

    monkeypatch.chdir(tmp_path)
    written = write_layout(tmp_path)
    cfg = _config()
    splits = load_splits(cfg.data)
    assert not splits.skipped
    assert len(splits.train) + len(splits.probe) == len(written["train"]) and len(splits.probe) == 40
    assert len(splits.test) == len(written["test"])
    for ex, (a, b) in zip(splits.train, written["train"], strict=False):
        assert [image_hash(im) for im in ex.images] == [image_hash(a.image), image_hash(b.image)]
        assert (ex.question, ex.answer, ex.skill) == (b.question, b.answer, b.skill)
        assert ex.messages == _turns(a, b)[:-1]


def _rows(root: Path, rows: list[dict]) -> list[str]:
    (root / "t.png").parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "t.png")
    (root / "bad.png").write_bytes(b"not a picture")
    with open(root / "train.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return ["data.source=hf", "data.hf.path=json", f"data.hf.data_files={{train: {root}/train.jsonl}}",
            "data.hf.messages_column=messages", "data.hf.eval_split=null", "data.hf.eval_holdout=1"]  # fmt: skip


def test_rows_that_cannot_train_are_counted_by_reason(tmp_path):
    from train.config import load_config
    from train.data import load_splits

    user = lambda *parts: {"role": "user", "content": list(parts)}  # noqa: E731
    said = lambda text: {"role": "assistant", "content": text}  # noqa: E731  (plain text content)
    image, text = {"type": "image"}, {"type": "text", "text": "which colour?"}
    good = {"messages": [user(image, text), said("red")], "images": ["t.png"]}
    rows = [
        good, good, good,
        {"messages": [user(image, text), said("red"), user(text)], "images": ["t.png"]},  # no answer
        {"messages": [user(image), said("red")], "images": ["t.png"]},  # no question text
        {"messages": [user(image, text), said("red")], "images": ["t.png", "t.png"]},
        {"messages": [user(text), said("red")], "images": []},
        {"messages": [user(image, text), said("red")], "images": ["bad.png"]},
        {"messages": [{"role": "robot", "content": "hi"}, user(image, text), said("red")], "images": ["t.png"]},
        {"messages": "what?", "images": ["t.png"]},
        {"messages": [said("hello"), user(image, text), said("red")], "images": ["t.png"]},  # no prompt first
        {"messages": [user(text), user(image, text), said("red")], "images": ["t.png"]},  # two user turns
    ]  # fmt: skip
    splits = load_splits(load_config(None, _rows(tmp_path, rows)).data)
    assert len(splits.train) + len(splits.test) + len(splits.probe) == 3
    assert dict(splits.skipped) == {
        "train/answer_missing": 1, "train/question_missing": 1, "train/images_mismatch": 1,
        "train/image_missing": 1, "train/image_corrupt": 1, "train/messages_invalid": 4,
    }  # fmt: skip


def test_parquet_with_its_images_in_the_file_loads(tmp_path):
    import datasets
    from PIL import Image

    from train.config import load_config
    from train.data import load_splits

    pictures = [Image.new("RGB", (16, 16), (10 * i, 0, 0)) for i in range(6)]
    turns = [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "image", "text": None},
                                          {"type": "text", "text": "which is darker?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "the first"}]}]  # fmt: skip
    ds = datasets.Dataset.from_dict(
        {"messages": [turns] * 3, "images": [pictures[0:2], pictures[2:4], pictures[4:6]]}
    )
    ds.to_parquet(tmp_path / "train.parquet")
    cfg = load_config(None, ["data.source=hf", "data.hf.path=parquet",
                             f"data.hf.data_files={{train: {tmp_path}/train.parquet}}", "data.hf.messages_column=messages",
                             "data.hf.eval_split=null", "data.hf.eval_holdout=1"])  # fmt: skip
    splits = load_splits(cfg.data)
    loaded = [*splits.train, *splits.probe, *splits.test]
    assert [image_hash(im) for ex in loaded for im in ex.images] == [image_hash(p) for p in pictures]
    assert all(ex.answer == "the first" and ex.question == "which is darker?" for ex in loaded)


def test_the_pool_keeps_turns_and_images_and_reads_older_records(tmp_path):
    from curriculum.pool import Pool
    from curriculum.world import build_splits

    a, b, c = build_splits(seed=1, train_size=3, probe_size=0, test_size=1, image_size=32)["train"]
    conv = Example("conv", a.image, b.question, b.answer, more_images=[b.image], messages=_turns(a, b)[:-1])
    Pool(tmp_path / "pool").commit_round(1, [conv, c], [])
    lines = (tmp_path / "pool" / "round_00001.jsonl").read_text().splitlines()
    single = json.loads(lines[2])
    assert "messages" not in single and "more_image_sha1" not in single  # as older runs wrote them
    back = {ex.id: ex for ex in Pool(tmp_path / "pool").examples}
    assert back["conv"].messages == conv.messages
    assert [image_hash(im) for im in back["conv"].images] == [image_hash(a.image), image_hash(b.image)]
    assert back[c.id].messages is None and back[c.id].more_images == []


def test_the_page_s_config_trains_with_the_curriculum_on(tmp_path, monkeypatch):
    """The loop on the page's dataset: SFT steps on conversations, a curriculum round whose probe
    failures are last turns and whose replayed examples keep both turns and images in the pool,
    the final evaluation of every test conversation."""
    from curriculum.pool import Pool
    from train.loop import run

    monkeypatch.chdir(tmp_path)
    written = write_layout(tmp_path, sizes=(120, 16))
    cfg = _config(
        f"run.output_dir={tmp_path}", "run.name=conv", "model.build_tiny=qwen2_5_vl", "model.tiny_preset=tiny",
        "train.cpu=true", "train.steps=4", "train.batch_size=4", "train.warmup_steps=0", "train.log_every=1",
        "train.save_model=false", "eval.at_start=false", "eval.batch_size=16", "eval.max_new_tokens=3",
        "curriculum.every=2", "curriculum.budget=8", "curriculum.generators={replay: 1.0}",
        "curriculum.student_check=off", "curriculum.mix.ratio=0.5",
    )  # fmt: skip
    summary = run(cfg)
    assert summary["steps"] == 4
    assert [r["status"] for r in summary["curriculum"]["rounds"]] == ["ok"]
    pool = Pool(tmp_path / "conv" / "curriculum" / "pool")
    assert pool.examples and all(len(ex.images) == 2 and len(ex.messages) == 3 for ex in pool.examples)
    failures = [json.loads(x) for x in
                (tmp_path / "conv" / "curriculum" / "round_00001" / "failures.jsonl").read_text().splitlines()]  # fmt: skip
    assert failures
    for f in failures:  # a failure is the last turn of its conversation
        last = written["train"][int(f["id"].split("-")[1])][1]
        assert (f["question"], f["answer"]) == (last.question, last.answer)
    predictions = (tmp_path / "conv" / "eval_predictions.jsonl").read_text().splitlines()
    assert len(predictions) == len(written["test"])
    # The exported pool keeps every turn and picture of its conversations.
    from datasets import load_from_disk

    from curriculum.export import export_run

    rows = load_from_disk(str(export_run(tmp_path / "conv")))
    assert len(rows) == len(pool.examples)
    for row in rows:
        assert len(row["more_images"]) == 1 and len(json.loads(row["messages"])) == 3


def test_grpo_on_conversations_is_refused_at_load(tmp_path):
    from train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="^train.mode grpo takes question/answer data"):
        load_config(None, ["train.mode=grpo", "data.source=hf", "data.hf.path=json",
                           "data.hf.messages_column=messages"])  # fmt: skip
