"""The model card written into a saved model's folder: hub metadata the hub's own reader parses,
the training and curriculum summary, and the per-skill accuracy table."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from models import LoraSettings, load_model, save_model
from models.card import is_hub_id, write_model_card

START = {"accuracy": 0.25, "skill/count": 0.1, "skill/shape": 0.4}
END = {"accuracy": 0.5, "skill/count": 0.3, "skill/shape": 0.7, "exact": 0.45}
PRIOR = {"accuracy": 0.2, "skill/count": 0.15, "skill/shape": 0.25}
ROUNDS = [
    {"round": 1, "step": 10, "status": "ok", "kept": 12},
    {"round": 2, "step": 20, "status": "failed", "error": "ConnectionError: down"},
    {"round": 3, "step": 30, "status": "ok", "kept": 7},
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_qwen):
    """The tiny model saved whole, and as a LoRA adapter, as the training loop saves them."""
    root = tmp_path_factory.mktemp("cards")
    model, processor = load_model(str(tiny_qwen), dtype="float32", device="cpu")
    save_model(model, processor, root / "full")
    adapter, processor = load_model(str(tiny_qwen), dtype="float32", device="cpu", lora=LoraSettings(r=2))
    save_model(adapter, processor, root / "adapter")
    return root


def test_a_full_model_s_card_has_hub_metadata_and_the_skill_table(saved):
    card = write_model_card(
        saved / "full",
        base_model="Qwen/Qwen2.5-VL-3B-Instruct",
        objective="sft",
        steps=40,
        accuracy={"start": START, "end": END, "prior": PRIOR},
        skill_counts={"count": 30, "shape": 24},
        data_sizes={"train": 240, "probe": 40, "test": 54},
        rounds=ROUNDS,
        pool_size=15,
        cost_usd=0.0123,
        run_name="demo",
    )
    read = ModelCard.load(saved / "full" / "README.md")
    assert read.content == card.content
    meta = read.data
    assert (
        meta.base_model == "Qwen/Qwen2.5-VL-3B-Instruct" and meta.datasets is None
    )  # the world is no hub id
    assert (meta.library_name, meta.pipeline_tag) == ("transformers", "image-text-to-text")
    assert meta.tags == ["lessonloop", "vision-language", "curriculum-learning", "sft"]
    results = {r.metric_name: r.metric_value for r in meta.eval_results}
    assert results == {"accuracy": 0.5, "accuracy (count)": 0.3, "accuracy (shape)": 0.7}
    assert meta.model_name == "demo" and all(r.dataset_split == "test" for r in meta.eval_results)
    body = read.text
    assert body.startswith("# demo\n") and "- **Steps:** 40" in body and "- **Objective:** SFT" in body
    assert "built-in visual-reasoning world" in body and "(240 train, 40 probe, 54 test items)" in body
    assert "- **Rounds:** 3 (2 ok, 1 failed)" in body and "- **Examples kept:** 19" in body
    assert "- **Pool size at the end:** 15 live examples" in body and "- **Frontier cost:** $0.0123" in body
    assert "| 2 | 20 | failed |  |" in body
    assert "| skill | test items | start | end | prior |" in body
    assert (
        "| count | 30 | 0.100 | 0.300 | 0.150 |" in body and "| shape | 24 | 0.400 | 0.700 | 0.250 |" in body
    )
    assert "| **overall** | 54 | 0.250 | 0.500 | 0.200 |" in body


def test_an_adapter_s_card_replaces_peft_s_and_names_a_local_base_in_text_only(saved, tiny_qwen):
    peft_card = (saved / "adapter" / "README.md").read_text()
    assert "library_name: peft" in peft_card  # PEFT wrote its template card
    write_model_card(
        saved / "adapter",
        base_model=str(tiny_qwen),
        objective="grpo",
        steps=8,
        accuracy={"start": None, "end": END, "prior": PRIOR},
        dataset="HuggingFaceM4/ChartQA",
    )
    read = ModelCard.load(saved / "adapter" / "README.md")
    assert read.data.library_name == "peft" and "lora" in read.data.tags and "grpo" in read.data.tags
    assert read.data.base_model is None and f"`{tiny_qwen}`" in read.text  # a local folder is no hub id
    assert read.data.datasets == ["HuggingFaceM4/ChartQA"]
    assert "## Curriculum" not in read.text  # no rounds given: the run had none
    assert "| skill | test items | end | prior |" in read.text and "| count |  | 0.300 | 0.150 |" in read.text
    assert "PeftModel.from_pretrained" in read.text


def test_bad_values_are_refused(saved, tmp_path):
    with pytest.raises(ValueError, match="objective must be one of sft, grpo"):
        write_model_card(saved / "full", base_model="x/y", objective="dpo", steps=1, accuracy={})
    with pytest.raises(FileNotFoundError, match="no model folder"):
        write_model_card(tmp_path / "missing", base_model="x/y", objective="sft", steps=1, accuracy={})


def test_only_hub_ids_go_into_metadata(tmp_path):
    assert is_hub_id("Qwen/Qwen2.5-VL-3B-Instruct") and is_hub_id("gpt2")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./runs/model") and not is_hub_id("a/b/c")
    assert not is_hub_id(None) and not is_hub_id("")
