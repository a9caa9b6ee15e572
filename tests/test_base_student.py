"""The base student: the world's train options for building it, and the shipped base itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, WorldConfig, load_config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.world.train_mix=balanced", "config key 'data.world.train_mix' must be one of"),
        (
            "data.world.train_skills=[cuont]",
            "data.world.train_skills: unknown skill 'cuont' (did you mean 'count'?)",
        ),
        ("data.world.train_skills=[count, count]", "data.world.train_skills: skills must be distinct"),
        ("data.world.train_skills=shape", "config key 'data.world.train_skills' must be a list"),
    ],
)
def test_bad_train_options_are_refused_naming_their_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_train_skills_must_be_among_the_splits_skills() -> None:
    with pytest.raises(
        ConfigError, match=r"^data.world.train_skills \['colour'\] must be among data.world.skills$"
    ):
        WorldConfig(skills=["count", "shape"], train_skills=["colour", "count"])
    ok = WorldConfig(skills=["count", "shape"], train_skills=["count"], train_mix="uniform")
    assert (ok.train_skills, ok.train_mix) == (["count"], "uniform")
    assert WorldConfig(train_skills=["shape", "colour", "count"]).train_mix == "natural"


def test_a_base_trained_on_some_skills_gets_a_tokenizer_for_every_skill() -> None:
    from curriculum.world import build_splits, skill_names
    from train.setup import tokenizer_corpus

    cfg = load_config(None, ["data.world.train_skills=[count]", "data.world.train_mix=uniform"])
    train = build_splits(0, 30, 0, 0, 32, train_mix="uniform", train_skills=["count"])["train"]
    corpus = tokenizer_corpus(cfg, train)
    assert corpus[: 2 * len(train)] == [t for ex in train for t in (ex.question, ex.answer)]
    others = build_splits(7919, 0, 0, 900, 32)["test"]
    assert {ex.skill for ex in others} == set(skill_names())
    assert corpus[2 * len(train) :] == [t for ex in others for t in (ex.question, ex.answer)]
    # The natural split holds every skill already: its own text is enough.
    assert tokenizer_corpus(load_config(None, []), train) == corpus[: 2 * len(train)]


BASE = Path(__file__).resolve().parents[1] / "models" / "bases" / "tiny-qwen2_5_vl"


def test_the_shipped_base_is_small_recorded_and_perceives() -> None:
    """The base in the repo is what its record says: at most 20 MB of weights, built by `make base`
    with the recorded config, and it reads shapes, colours and counts of pictures it never saw."""
    import json

    import torch

    from curriculum.scoring import is_correct
    from curriculum.world import build_splits
    from models import load_model
    from train.collate import VLMCollator
    from train.evaluate import generate_answers

    assert (BASE / "model.safetensors").stat().st_size <= 20 * 2**20
    record = json.loads((BASE / "base.json").read_text())
    assert record["command"] == "make base" and record["config"]["data"]["world"]["train_mix"] == "uniform"
    model, processor = load_model(str(BASE), dtype="float32", device="cpu")
    # 20 items of each perception skill from a world seed no base trains or is measured on.
    test = build_splits(424242, 0, 0, 60, 64, skills=["colour", "count", "shape"])["test"]
    answers, _ = generate_answers(
        model, VLMCollator(processor, question_first=True), test, 32, 4, torch.device("cpu")
    )
    right = sum(is_correct(a, ex.answer) for a, ex in zip(answers, test, strict=True))
    assert right >= 42, f"{right} of 60"  # the base measured >= 0.85 on each; a random model gets ~10
