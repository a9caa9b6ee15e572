"""Token labels of world scenes, and pretraining a tiny model's vision tower on them."""

import json

import pytest
import torch

from curriculum.world import render
from curriculum.world.pretraining import (
    TOKEN_ATTRIBUTES,
    labelled_images,
    object_skills,
    token_centres,
    token_labels,
    token_objects,
)
from curriculum.world.scene import COLOURS, SHAPES


def _obj(shape, colour, x, y, size=0.08):
    return {"shape": shape, "colour": colour, "size": size, "x": x, "y": y}


def test_token_labels_name_the_object_centred_in_each_token_and_the_top_one_wins():
    scene = {
        "kind": "objects",
        "overlap": True,
        "objects": [
            _obj("circle", "red", 0.1, 0.1),  # top-left token
            _obj("square", "blue", 0.9, 0.3),  # row 1, column 3
            _obj("cross", "green", 0.6, 0.6),  # row 2, column 2: covered by the next one
            _obj("triangle", "yellow", 0.7, 0.7),
        ],
    }
    labels = token_labels(scene, grid=4)
    shape = {i: SHAPES[v - 1] for i, v in enumerate(labels["shape"]) if v}
    colour = {i: list(COLOURS)[v - 1] for i, v in enumerate(labels["colour"]) if v}
    assert shape == {0: "circle", 7: "square", 10: "triangle"}
    assert colour == {0: "red", 7: "blue", 10: "yellow"}
    assert all(len(v) == 16 for v in labels.values())
    # Every object centred in a token, in drawing order: the covered cross is listed too.
    held = token_objects(scene, grid=4)
    assert len(held) == 16 and sum(map(len, held)) == 4
    assert held[0] == [(1, 1)] and held[7] == [(2, 3)]
    assert held[10] == [(1 + SHAPES.index("cross"), 2), (1 + SHAPES.index("triangle"), 4)]


def test_token_labels_refuse_bar_charts():
    with pytest.raises(ValueError, match="object scene"):
        token_labels({"kind": "bars", "colour": "blue", "bars": []}, grid=4)


def test_labelled_images_cover_the_object_skills_deterministically():
    assert "shape" in object_skills() and "bar_value" not in object_skills()
    images, labels, centres = labelled_images(10, step=3, image_size=32, grid=2)
    assert len(images) == 10 and images[0].size == (32, 32)
    assert len(labels) == 10 and all(len(tokens) == 4 for tokens in labels)
    assert all(len(held) == len(TOKEN_ATTRIBUTES) for tokens in labels for token in tokens for held in token)
    again, labels_again, _ = labelled_images(10, step=3, image_size=32, grid=2)
    assert labels_again == labels and list(again[0].getdata()) == list(images[0].getdata())
    assert labelled_images(10, step=4, image_size=32, grid=2)[1] != labels


def test_pretraining_teaches_the_tower_to_name_what_each_token_shows(tiny_qwen):
    from models import load_model
    from models.pretrain import pretrain_vision

    torch.manual_seed(0)
    model, processor = load_model(str(tiny_qwen), dtype="float32", device="cpu")
    text_before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    # One scene of one red circle in the top-left token, a blue square in the bottom-right one.
    scene = {"kind": "objects", "overlap": False, "objects": [_obj("circle", "red", 0.2, 0.2, 0.15),
                                                              _obj("square", "blue", 0.8, 0.8, 0.15)]}  # fmt: skip
    held = token_objects(scene, grid=2)
    image = render(scene, 32)
    seen = []
    record = pretrain_vision(
        model, processor, lambda step: ([image] * 4, [held] * 4, [token_centres(scene, 2)] * 4),
        TOKEN_ATTRIBUTES, steps=30, lr=3e-3, log=seen.append, log_every=10,
    )  # fmt: skip
    assert len(seen) == 3 and "step 30/30" in seen[-1]
    assert record["last"]["shape"] == 1.0 and record["last"]["colour"] == 1.0
    assert record["last"]["loss"] < 0.2
    for k, v in model.model.language_model.state_dict().items():
        assert torch.equal(v, text_before[k]), k


def test_pretraining_refuses_other_architectures_and_bad_labels(tiny_qwen, tmp_path):
    from models import build_tiny_vlm, load_model
    from models.pretrain import pretrain_vision

    llava = build_tiny_vlm(tmp_path / "llava", arch="llava", image_size=32, corpus=["a b"], seed=0)
    model, processor = load_model(str(llava), dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="Qwen2.5-VL models only"):
        pretrain_vision(model, processor, lambda s: ([], [], []), TOKEN_ATTRIBUTES, steps=1)
    model, processor = load_model(str(tiny_qwen), dtype="float32", device="cpu")
    images, labels, centres = labelled_images(
        2, step=0, image_size=32, grid=4
    )  # 16 labels, 4 tokens at 32 px
    with pytest.raises(
        ValueError, match=r"the labels cover \(2, 16\) \(images, tokens\), the images give \(2, 4\)"
    ):
        pretrain_vision(model, processor, lambda s: (images, labels, centres), TOKEN_ATTRIBUTES, steps=1)


def test_token_targets_sum_the_codes_of_every_object_and_decode_back():
    from models.pretrain import attribute_codes, decode_tokens, token_targets

    codes = attribute_codes(TOKEN_ATTRIBUTES, hidden=64)
    assert codes["shape"].shape == (6, 64) and torch.equal(
        codes["colour"], attribute_codes(TOKEN_ATTRIBUTES, 64)["colour"]
    )
    tokens = [[], [(1, 2)], [(3, 4), (5, 6)]]
    target = token_targets([tokens], codes)
    assert target.shape == (1, 3, 64)
    assert torch.allclose(target[0, 0], codes["shape"][0] + codes["colour"][0])  # nothing there
    assert torch.allclose(target[0, 1], codes["shape"][1] + codes["colour"][2])
    assert torch.allclose(
        target[0, 2], codes["shape"][3] + codes["colour"][4] + codes["shape"][5] + codes["colour"][6]
    )
    noisy = target[0, :2] + 0.3 * torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    assert decode_tokens(noisy, codes).tolist() == [[0, 0], [1, 2]]


def test_position_targets_place_each_object_on_two_fixed_directions():
    from models.pretrain import position_codes, position_targets

    directions = position_codes(hidden=64)
    assert directions.shape == (2, 64) and torch.equal(directions, position_codes(64))
    centres = [[[], [(0.0, 1.0)], [(0.75, 0.5), (0.25, 0.25)]]]
    where = position_targets(centres, directions)
    assert where.shape == (1, 3, 64)
    assert torch.equal(where[0, 0], torch.zeros(64))  # no object: no position
    assert torch.allclose(where[0, 1], -directions[0] + directions[1])
    assert torch.allclose(where[0, 2], 0.5 * directions[0] + (-0.5 * directions[0] - 0.5 * directions[1]))


def test_pretraining_with_positions_tells_left_from_right(tiny_qwen):
    """Two pictures that differ only in where one red circle lies (left or right half of the same
    token): trained with positions, their tokens differ along the x direction with the right sign."""
    from models import load_model
    from models.pretrain import image_token_features, position_codes, pretrain_vision

    torch.manual_seed(0)
    model, processor = load_model(str(tiny_qwen), dtype="float32", device="cpu")
    scenes = [
        {"kind": "objects", "overlap": False, "objects": [_obj("circle", "red", x, 0.25, 0.1)]}
        for x in (0.15, 0.35)
    ]
    images = [render(scene, 32) for scene in scenes]
    held = [token_objects(scene, grid=2) for scene in scenes]
    centres = [token_centres(scene, grid=2) for scene in scenes]
    record = pretrain_vision(
        model, processor, lambda step: (images * 2, held * 2, centres * 2), TOKEN_ATTRIBUTES,
        steps=40, lr=3e-3, positions=True, log_every=10,
    )  # fmt: skip
    assert record["objective"] == "token codes with object positions (mse)"
    assert record["last"]["shape"] >= 0.9 and record["last"]["colour"] >= 0.9  # what, read past where
    with torch.no_grad():
        features = image_token_features(model, processor, images)
    x = position_codes(model.config.text_config.hidden_size)[0]
    along = (features[1, 0] - features[0, 0]) @ x / x.norm() ** 2  # target: 2 * (0.35 - 0.15) = 0.4
    assert 0.2 < float(along) < 0.6


def test_a_built_tiny_model_is_pretrained_in_place_when_configured(tmp_path, world_small):
    from train.config import ConfigError, load_config
    from train.setup import ensure_tiny_model

    path = tmp_path / "tiny"
    overrides = [f"model.name_or_path={path}", "model.build_tiny=qwen2_5_vl", "data.world.image_size=32"]
    cfg = load_config(None, [*overrides, "model.pretrain_vision_steps=2", "train.cpu=true"])
    ensure_tiny_model(cfg, world_small["train"])
    record = json.loads((path / "vision_pretraining.json").read_text())
    assert record["steps"] == 2 and record["image_size"] == 32 and record["device"] == "cpu"
    assert not path.with_name("tiny.partial").exists()

    plain = tmp_path / "plain"
    cfg = load_config(
        None, [f"model.name_or_path={plain}", "model.build_tiny=qwen2_5_vl", "data.world.image_size=32"]
    )
    ensure_tiny_model(cfg, world_small["train"])
    assert not (plain / "vision_pretraining.json").exists()
    from safetensors.torch import load_file

    a, b = load_file(path / "model.safetensors"), load_file(plain / "model.safetensors")
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(".visual." in k or k.startswith("visual.") for k in changed)

    with pytest.raises(ConfigError, match="needs model.build_tiny: qwen2_5_vl"):
        load_config(None, [*overrides, "model.build_tiny=llava", "model.pretrain_vision_steps=5"])
    with pytest.raises(ConfigError, match="pretrain_vision_positions needs model.pretrain_vision_steps > 0"):
        load_config(None, [*overrides, "model.pretrain_vision_positions=true"])


def test_the_token_grid_follows_the_vision_config(tiny_qwen, tmp_path):
    from models import build_tiny_vlm, load_model
    from models.pretrain import image_token_features, token_grid

    for path, overrides, side in [
        (tiny_qwen, None, 2),
        (tmp_path / "p4", {"vision_config": {"patch_size": 4}}, 4),
    ]:
        if overrides:
            build_tiny_vlm(path, image_size=32, corpus=["a b"], seed=0, overrides=overrides)
        model, processor = load_model(str(path), dtype="float32", device="cpu")
        images, _, _ = labelled_images(2, step=0, image_size=32, grid=side)
        assert token_grid(model, 32) == side
        assert image_token_features(model, processor, images).shape[:2] == (2, side * side)
