"""Tests of models/: tokenizer, processors, tiny checkpoints, load_model/save_model, LoRA."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import inspect  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from models import (  # noqa: E402
    LoraSettings,
    build_tiny_vlm,
    build_vlm,
    count_parameters,
    load_model,
    load_processor,
    save_model,
    train_bpe_tokenizer,
)
from models.load import find_language_model, find_vision_tower  # noqa: E402
from models.processing import has_torchvision, is_image_only, make_processor  # noqa: E402
from models.tiny import ARCHS  # noqa: E402

QUESTIONS = ["What color is the circle?", "How many squares are there?"]
ANSWERS = ["red", "3"]
COLOURS = [(220, 30, 30), (30, 30, 220)]


def _load(name_or_path: str, **kwargs):
    """load_model on the CPU, where these tests run even on a machine with a GPU."""
    return load_model(name_or_path, device="cpu", **kwargs)


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (64, 64), colour) for colour in COLOURS]


def _nested(images: list[Image.Image]) -> list[list[Image.Image]]:
    """One image per text, as a list per text (SmolVLM reads a flat list as one text's images)."""
    return [[image] for image in images]


def _messages(question: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _takes_suffix(processor) -> bool:
    """A prefix-LM processor (PaliGemma) encodes the answer as a ``suffix`` that its model reads causally."""
    return "suffix" in inspect.signature(processor.__call__).parameters


def _train_batch(processor) -> dict[str, torch.Tensor]:
    """Right-padded full conversations, labels only on the answers and their end-of-turn token."""
    processor.tokenizer.padding_side = "right"
    full = [
        processor.apply_chat_template(_messages(q, a), tokenize=False)
        for q, a in zip(QUESTIONS, ANSWERS, strict=True)
    ]
    prompts = [
        processor.apply_chat_template(_messages(q), tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    if _takes_suffix(processor):  # the processor appends the end-of-turn token to each suffix
        batch = processor(
            text=prompts, suffix=ANSWERS, images=_nested(_images()), return_tensors="pt", padding=True
        )
    else:
        batch = processor(text=full, images=_nested(_images()), return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    for row, (prompt, image) in enumerate(zip(prompts, _images(), strict=True)):
        n_prompt = processor(text=[prompt], images=[[image]], return_tensors="pt")["input_ids"].shape[1]
        labels[row, :n_prompt] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return dict(batch)


def _prompt_batch(processor) -> dict[str, torch.Tensor]:
    processor.tokenizer.padding_side = "left"
    prompts = [
        processor.apply_chat_template(_messages(q), tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    batch = processor(text=prompts, images=_nested(_images()), return_tensors="pt", padding=True)
    processor.tokenizer.padding_side = "right"
    return dict(batch)


def _logits(model, batch) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _train(model, batch, steps: int, lr: float) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run on one thread: their matrices are too small to split, and on the shared
    2-core machine training them takes several times longer on two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: str(build_tiny_vlm(root / arch, arch=arch, seed=1)) for arch in ARCHS}


# --- tokenizer -------------------------------------------------------------------------------


def test_tokenizer_splits_digits_and_keeps_special_tokens(tmp_path):
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
    tok = train_bpe_tokenizer(
        ["12 red circles and 345 blue squares"] * 5, special, vocab_size=300, eos_token="<|im_end|>"
    )
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert [tok.convert_tokens_to_ids(t) for t in special] == [0, 1, 2, 3]
    ids = tok("There are 2048 dots<image><|im_end|>")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    for digit in "2048":
        assert digit in pieces
    assert pieces[-2:] == ["<image>", "<|im_end|>"]
    assert tok.decode(ids) == "There are 2048 dots<image><|im_end|>"
    assert tok.decode(ids, skip_special_tokens=True) == "There are 2048 dots"
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("There are 2048 dots<image>")["input_ids"] == tok("There are 2048 dots<image>")["input_ids"]


def test_tokenizer_default_corpus_and_errors():
    tok = train_bpe_tokenizer(None, ["<eos>"])
    assert 300 < len(tok) <= 512
    assert (
        tok.decode(tok("What color is the triangle? Yes")["input_ids"]) == "What color is the triangle? Yes"
    )
    with pytest.raises(ValueError, match="not one of special_tokens"):
        train_bpe_tokenizer(None, ["<eos>"], pad_token="<pad>")
    with pytest.raises(ValueError, match="smaller than"):
        train_bpe_tokenizer(None, ["<eos>"], vocab_size=100)


# --- chat template and processor ------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_template_prefix_and_end_of_turn(checkpoints, arch):
    processor = load_processor(checkpoints[arch])
    tok = processor.tokenizer
    messages = _messages("What color is the circle?", "red")
    prompt = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template(messages, tokenize=False)
    assert full.startswith(prompt)
    assert full == prompt + "red" + tok.eos_token
    assert tok.eos_token == "<|im_end|>"
    # plain-string content renders the same text turns
    plain = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "yes"}]
    assert processor.apply_chat_template(plain, tokenize=False) == (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nyes<|im_end|>"
    )
    # the prompt's tokens are a prefix of the full conversation's tokens
    image = _images()[:1]
    p_ids = processor(text=[prompt], images=image, return_tensors="pt")["input_ids"][0].tolist()
    if _takes_suffix(processor):
        f_ids = processor(text=[prompt], suffix=["red"], images=image, return_tensors="pt")["input_ids"][
            0
        ].tolist()
    else:
        f_ids = processor(text=[full], images=image, return_tensors="pt")["input_ids"][0].tolist()
    assert f_ids[: len(p_ids)] == p_ids
    assert f_ids[-1] == tok.eos_token_id
    # the image placeholder expands to 16 image tokens for a 64x64 image
    model_config = json.loads(open(os.path.join(checkpoints[arch], "config.json")).read())
    image_token = model_config.get("image_token_id", model_config.get("image_token_index"))
    assert p_ids.count(image_token) == 16


def test_qwen_processor_builds_and_reloads_without_video_processor(checkpoints, tmp_path):
    path = checkpoints["qwen2_5_vl"]
    saved = json.loads(open(os.path.join(path, "processor_config.json")).read())
    assert saved["processor_class"] == "Qwen2_5_VLProcessor"
    processor = load_processor(path)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    # complete where torchvision can build the video processor, image-only elsewhere
    assert is_image_only(processor) == (not has_torchvision())
    assert processor.image_processor.patch_size == 8 and processor.image_processor.merge_size == 2
    # a checkpoint saved without its video processor loads everywhere, image-only
    image_only = make_processor(
        type(processor).__mro__[1] if is_image_only(processor) else type(processor),
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        chat_template=processor.chat_template,
    )
    assert is_image_only(image_only) and image_only.video_processor is None
    image_only.save_pretrained(tmp_path)
    again = load_processor(tmp_path)
    assert is_image_only(again) and type(again).__name__ == "Qwen2_5_VLProcessor"
    batch = again(
        text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=_images()[:1], return_tensors="pt"
    )
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    # picklable, as data-loader workers started with spawn need
    copy = pickle.loads(pickle.dumps(again))
    assert type(copy) is type(again) and copy.tokenizer.eos_token == "<|im_end|>"


def test_smolvlm_image_only_processor_renders_chats_and_keeps_its_settings(checkpoints, tmp_path):
    """SmolVLM's processor is built and reloaded without its video processor: its chat template
    renders (SmolVLM's own apply_chat_template reads the missing video processor), videos are
    refused in one line, and its own settings (image_seq_len) survive saving and loading."""
    processor = load_processor(checkpoints["smolvlm"])
    assert type(processor).__name__ == "SmolVLMProcessor" and is_image_only(processor)
    assert processor.image_seq_len == 16
    prompt = processor.apply_chat_template(_messages("What color?"), add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<image>What color?<|im_end|>\n<|im_start|>assistant\n"
    ids = processor(text=[prompt], images=_images()[:1], return_tensors="pt")["input_ids"][0]
    assert int((ids == processor.image_token_id).sum()) == 16
    video = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    with pytest.raises(ValueError, match="without a video processor"):
        processor.apply_chat_template(video)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "SmolVLMProcessor" and saved["image_seq_len"] == 16
    again = pickle.loads(pickle.dumps(load_processor(tmp_path)))
    assert is_image_only(again) and again.image_seq_len == 16


def test_paligemma_processor_marks_the_answer_and_keeps_the_special_tokens(checkpoints):
    """PaliGemma's processor marks the suffix (the answer and its end-of-turn token) with
    token_type_ids 1, the causal part of its model; a prompt alone is all prefix (0). Its
    tokenizer names the image token, so the processor leaves the other special tokens special."""
    processor = load_processor(checkpoints["paligemma"])
    tok = processor.tokenizer
    assert {"<|im_start|>", "<|im_end|>", "<image>", "<bos>"} <= set(tok.all_special_tokens)
    prompt = processor.apply_chat_template(_messages("What color?"), add_generation_prompt=True)
    alone = processor(text=[prompt], images=_images()[:1], return_tensors="pt")
    assert not alone["token_type_ids"].any()
    batch = processor(text=[prompt], suffix=["dark red"], images=_images()[:1], return_tensors="pt")
    ids, types = batch["input_ids"][0], batch["token_type_ids"][0]
    n = alone["input_ids"].shape[1]
    assert torch.equal(ids[:n], alone["input_ids"][0]) and not types[:n].any() and types[n:].all()
    assert tok.decode(ids[n:]) == "dark red<|im_end|>"
    assert int((ids == processor.image_token_id).sum()) == 16


# --- tiny models end to end -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_trains_generates_and_round_trips(checkpoints, arch, tmp_path):
    model, processor = _load(checkpoints[arch])
    assert model.config.architectures and count_parameters(model) > 3_000_000
    batch = _train_batch(processor)

    # forward + backward with labels
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()

    # a few steps teach it the two answers; greedy decoding then stops at the end-of-turn token
    losses = _train(model, batch, steps=40, lr=3e-3)
    assert losses[-1] < losses[0] / 4
    prompts = _prompt_batch(processor)
    eos, pad = processor.tokenizer.eos_token_id, processor.tokenizer.pad_token_id
    with torch.no_grad():
        out = model.generate(**prompts, max_new_tokens=8, do_sample=False)
    new = out[:, prompts["input_ids"].shape[1] :]
    assert new.dtype == torch.long and new.shape[0] == 2
    for row in new.tolist():
        assert eos in row, row
        assert all(t == pad for t in row[row.index(eos) + 1 :])
    texts = processor.batch_decode(new, skip_special_tokens=True)
    assert texts == ANSWERS

    # save and reload give the same logits
    before = _logits(model, batch)
    save_model(model, processor, tmp_path / "saved")
    again, again_processor = _load(str(tmp_path / "saved"))
    assert torch.equal(_logits(again, _train_batch(again_processor)), before)


@pytest.mark.parametrize("arch", ARCHS)
def test_freeze_vision_keeps_language_model_trainable(checkpoints, arch):
    model, _ = _load(checkpoints[arch], freeze_vision=True)
    _, tower = find_vision_tower(model)
    _, language_model = find_language_model(model)
    trainable_tower = [n for n, p in tower.named_parameters() if p.requires_grad]
    if arch.startswith("qwen"):  # the merger (the projector) lives inside the tower and keeps training
        assert trainable_tower and all(n.startswith("merger.") for n in trainable_tower)
    else:
        assert not trainable_tower
    assert all(p.requires_grad for p in language_model.parameters())
    assert count_parameters(model, trainable_only=True) < count_parameters(model)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava"])
def test_lora_trains_adapters_only_and_saves(checkpoints, arch, tmp_path):
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    model, processor = _load(checkpoints[arch], lora=lora, freeze_vision=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all("language_model" in n for n in trainable)
    batch = _train_batch(processor)
    before = _logits(model, batch)
    _train(model, batch, steps=3, lr=1e-2)
    after = _logits(model, batch)
    assert not torch.allclose(before, after)

    save_model(model, processor, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    adapter, _ = _load(str(tmp_path / "adapter"))
    assert type(adapter).__name__ == "PeftModel"
    assert count_parameters(adapter, trainable_only=True) == 0
    assert torch.equal(_logits(adapter, batch), after)

    save_model(model, processor, tmp_path / "merged", merge_lora=True)
    merged, _ = _load(str(tmp_path / "merged"))
    assert type(merged).__name__.endswith("ForConditionalGeneration")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, batch), after, atol=1e-4, rtol=1e-4)
    assert torch.equal(_logits(model, batch), after)  # saving left the model as it was


def test_lora_adapter_of_in_memory_model_carries_its_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, processor = build_vlm("llava", seed=3)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    save_model(peft_model, processor, tmp_path / "a")
    assert (
        json.loads((tmp_path / "a" / "adapter_config.json").read_text())["base_model_name_or_path"] == "base"
    )
    again, _ = _load(str(tmp_path / "a"))
    batch = _train_batch(processor)
    torch.testing.assert_close(_logits(again, batch), _logits(peft_model, batch))


def test_gradient_checkpointing_forward_backward(checkpoints):
    for kwargs in ({}, {"lora": LoraSettings(r=2, alpha=4), "freeze_vision": True}):
        model, processor = _load(checkpoints["qwen2_5_vl"], gradient_checkpointing=True, **kwargs)
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        model.train()
        loss = model(**_train_batch(processor)).loss
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# --- errors and presets ---------------------------------------------------------------------


def test_load_model_errors_are_clear(checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        _load(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        _load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not found locally .* HF_HUB_OFFLINE is set"):
        _load("lessonloop-none/not-a-real-model")
    with pytest.raises(ValueError, match="unknown dtype"):
        _load(checkpoints["llava"], dtype="float8")
    with pytest.raises(ValueError, match="unknown arch"):
        build_vlm("gpt2")
    with pytest.raises(ValueError, match="unknown preset"):
        build_vlm(preset="huge")
    with pytest.raises(ValueError, match="only for arch 'qwen2_5_vl'"):
        build_vlm("llava", "qwen2_5_vl_3b")


def test_dtype_option(checkpoints):
    model, _ = _load(checkpoints["idefics3"], dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = _load(checkpoints["idefics3"])  # "auto" is float32 on the CPU
    assert next(model.parameters()).dtype == torch.float32


def test_qwen2_5_vl_3b_preset_has_the_real_shape():
    model, processor = build_vlm("qwen2_5_vl", "qwen2_5_vl_3b", device="meta", dtype=torch.bfloat16)
    assert next(model.parameters()).is_meta
    n = count_parameters(model)
    assert 3.7e9 < n < 3.8e9, n
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (2048, 36, 11008)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (16, 2, 151936)
    assert model.config.tie_word_embeddings
    assert (vision.depth, vision.hidden_size, vision.patch_size, vision.out_hidden_size) == (
        32,
        1280,
        14,
        2048,
    )
    assert processor.image_processor.patch_size == 14 and processor.image_processor.merge_size == 2


@pytest.mark.parametrize(
    "preset,low,high", [("tiny", 3e6, 5e6), ("small", 15e6, 20e6), ("medium", 30e6, 45e6)]
)
def test_preset_sizes(preset, low, high):
    for arch in ARCHS:
        model, _ = build_vlm(arch, preset, device="meta")
        assert low < count_parameters(model) < high, (arch, preset, count_parameters(model))


def test_compile_compiles_every_block_of_both_towers_after_lora(arch_checkpoints):
    from models.load import find_language_model, find_vision_tower

    model, _ = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu", freeze_vision=True, compile=True,
                          lora=LoraSettings(r=4))  # fmt: skip
    _, language = find_language_model(model)
    _, tower = find_vision_tower(model)
    for blocks in (language.layers, tower.blocks):
        assert len(blocks) > 0 and all(b._compiled_call_impl is not None for b in blocks)
        assert all(b._compiled_call_impl.eager == b._call_impl for b in blocks)  # generation runs these
    assert any("lora" in name for name, _ in language.layers[0].named_modules())  # compiled with its adapters
    plain, _ = load_model(arch_checkpoints["qwen2_5_vl"], device="cpu")
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in plain.modules())


def test_compiled_blocks_run_eagerly_without_gradients():
    from models.load import _with_grad_only

    calls = []
    call = _with_grad_only(lambda x: calls.append("compiled") or x, lambda x: calls.append("eager") or x)
    call(1)
    with torch.no_grad():
        call(2)
    with torch.inference_mode():
        call(3)
    assert calls == ["compiled", "eager", "eager"]
