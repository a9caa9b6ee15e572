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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grpo.max_new_tokens=0", "grpo.max_new_tokens must be positive"),
        ("curriculum.max_failures=-1", "curriculum.max_failures must be >= 1"),
        ("curriculum.probe_max=-3", "curriculum.probe_max must be >= 0"),
        ("eval.max_examples=-1", "eval.max_examples must be >= 0"),
        ("eval.every=-5", "eval.every must be >= 0"),
        ("train.betas=[2,3]", "train.betas must hold two numbers in [0, 1)"),
        ("curriculum.near_duplicate=5", "curriculum.near_duplicate must lie in (0, 1]"),
        ("model.build_tiny=qwen3", "model.build_tiny must be null or one of"),
        ("model.tiny_preset=huge", "model.tiny_preset must be one of"),
        ("curriculum.mix.ratio_end=0.5", "curriculum.mix.ramp_steps must be positive when ratio_end is set"),
        ("curriculum.frontier.judges=[{model: j, timeout: -1}]", "curriculum.frontier.judges[0].timeout"),
        ("curriculum.frontier.judges=[{}]", "curriculum.frontier.judges[0].model must name the model"),
        (
            "curriculum.frontier.prices={gpt-4o: [1]}",
            "curriculum.frontier.prices.gpt-4o must be [input, output]",
        ),
        ("curriculum.frontier.base_url=localhost:8000", "curriculum.frontier.base_url must be an http"),
        ("curriculum.generators={world: 0}", "curriculum.generators shares must be >= 0 with a positive sum"),
        ("grpo.top_p=0", "grpo.top_p must lie in (0, 1]"),
        ("model.lora.dropout=1", "model.lora.dropout must lie in [0, 1)"),
        ("compare.seeds=[1, 1]", "compare.seeds must name at least one seed, each once"),
        ("train.betas=[0.9, x]", "config key 'train.betas[1]' must be float, got str 'x'"),
    ],
)
def test_every_bad_value_is_refused_naming_its_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_sections_built_in_code_are_checked_like_yaml():
    from train.config import EndpointConfig, FrontierConfig, GRPOConfig, TrainConfig

    with pytest.raises(ConfigError, match=r"^train.steps must be positive$"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match=r"^config key 'grpo.group_size' must be int, got str '8'$"):
        GRPOConfig(group_size="8")
    with pytest.raises(ConfigError, match="curriculum.frontier.judge_agree must lie between 0 and"):
        FrontierConfig(judges=[EndpointConfig(model="j")], judge_agree=2)
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # ints widen


def test_every_section_checks_its_own_fields():
    """Each config dataclass is a Section with a ``check`` of its own (or has no field to check)."""
    import dataclasses

    import train.config as tc
    from train.config.fields import Section

    def sections(cls):
        yield cls
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
                yield from sections(f.type)

    for name in tc.__all__:
        cls = getattr(tc, name)
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            assert issubclass(cls, Section), name
            assert "check" in vars(cls), f"{name} has no check of its own"


def test_a_frontier_on_data_without_verified_answers_needs_judges_or_an_opt_in():
    base = ["data.source=hf", "data.hf.path=json", "curriculum.enabled=true", "curriculum.analyzer=openai"]
    with pytest.raises(ConfigError, match="curriculum.frontier.judges: answers a frontier model writes"):
        load_config(None, base)
    assert load_config(None, [*base, "curriculum.allow_unverified=true"]).curriculum.allow_unverified
    assert load_config(None, [*base, "curriculum.frontier.preset=lrf"])
    assert load_config(None, [*base, "curriculum.frontier.judges=[{model: j}]"])
    assert load_config(None, base[2:])  # the built-in world: answers are computed by program


def test_the_dumped_config_redacts_credentials_in_urls():
    from train.config import dump

    cfg = load_config(
        None, ["curriculum.frontier.base_url=https://user:sk-live-123@gw.example/v1?api_key=sk-q"]
    )
    text = dump(cfg)
    assert "sk-live-123" not in text and "sk-q" not in text and "gw.example/v1" in text
