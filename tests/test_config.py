from pathlib import Path

import pytest

from train.config import Config, ConfigError, load_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.steps=7", "train.lr=1e-3", "run.name=x", "model.lora.enabled=true"])
    assert cfg.train.steps == 7 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.run_dir == Path("runs/x") and cfg.model.lora.enabled is True
    assert isinstance(load_config(), Config)
    # Only true/false are booleans: `no` and `on` stay words.
    cfg = load_config(None, ["train.mixed_precision=no", "run.name=on", "train.cpu=false"])
    assert cfg.train.mixed_precision == "no" and cfg.run.name == "on" and cfg.train.cpu is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stpes=3", "unknown config key 'train.stpes' (did you mean 'train.steps'?)"),
        ("trian.steps=3", "unknown config key 'trian' (did you mean 'train'?)"),
        ("model.lora.rank=4", "unknown config key 'model.lora.rank' (did you mean 'model.lora.r'?)"),
        ("train.steps=ten", "config key 'train.steps' must be int, got str 'ten'"),
        ("train.lr=fast", "config key 'train.lr' must be float, got str 'fast'"),
        ("train.cpu=3", "config key 'train.cpu' must be bool, got int 3"),
        ("model.dtype=bf16", "did you mean 'bfloat16'?"),
        ("train.betas=0.9", "config key 'train.betas' must be a list"),
        ("train.steps=0", "train.steps must be positive"),
        ("data.source=hf", "data.hf.path is required"),
        (
            "data.world.skills=[count, shap]",
            "data.world.skills: unknown skill 'shap' (did you mean 'shape'?)",
        ),
        ("trainsteps", "is not of the form key=value"),
    ],
)
def test_errors_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match="did you mean 'train.batch_size'"):
        load_config(typo)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.train.steps > 0
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and (
        "python -m train" in first or "accelerate launch" in first or "make" in first or "lessonloop" in first
    )
