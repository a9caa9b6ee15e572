"""Typed run configuration: YAML files plus ``key=value`` overrides.

Every field is a typed dataclass attribute with a docstring, in one module per section
(``model``, ``data``, ``training``, ``curriculum``, ``runs``). Each section checks its own fields
when it is constructed (``fields.Section``), so a config built in code is refused as early as one
read from YAML; ``Config`` adds the checks that span sections. Loading refuses unknown keys
(naming the nearest valid key) and values of the wrong type (naming the field), so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from train.config.curriculum import GENERATORS, CurriculumConfig, EndpointConfig, FrontierConfig, MixConfig
from train.config.data import DataConfig, HFDataConfig, WorldConfig
from train.config.fields import ConfigError, FieldError, Section, build, type_text
from train.config.model import LoraOptions, ModelConfig, RunConfig
from train.config.runs import ARMS, CompareConfig, TrackingConfig, WandbConfig
from train.config.training import EvalConfig, GRPOConfig, TrainConfig

__all__ = [
    "ARMS",
    "GENERATORS",
    "CompareConfig",
    "Config",
    "ConfigError",
    "CurriculumConfig",
    "DataConfig",
    "EndpointConfig",
    "EvalConfig",
    "FrontierConfig",
    "GRPOConfig",
    "HFDataConfig",
    "LoraOptions",
    "MixConfig",
    "ModelConfig",
    "RunConfig",
    "TrackingConfig",
    "TrainConfig",
    "WandbConfig",
    "WorldConfig",
    "dump",
    "load_config",
    "reference",
]


@dataclass
class Config(Section):
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def check(self) -> None:
        """The rules that span sections (each section checked its own fields already)."""
        cc, fc = self.curriculum, self.curriculum.frontier
        if self.train.mode == "grpo" and self.data.source == "hf" and self.data.hf.messages_column:
            raise ConfigError(
                "train.mode grpo takes question/answer data: data.hf.messages_column (conversations) "
                "trains with sft"
            )
        if cc.enabled and fc.rationales and self.eval.max_new_tokens < 64:
            raise ConfigError(
                "curriculum.frontier.rationales needs eval.max_new_tokens >= 64: "
                "a reasoned answer is cut off before it ends"
            )
        if cc.source not in ("diagnosed", "hard_real") and self.data.source != "world":
            if not self.data.hf.reserve:
                raise ConfigError(
                    f"curriculum.source {cc.source!r} adds fresh real data: on external data it draws from "
                    "data.hf.reserve (train items held back from training), which is 0"
                )
            if cc.source != "real" and not self.data.hf.skill_column:
                raise ConfigError(
                    f"curriculum.source {cc.source!r} draws the reserve by skill: it needs data.hf.skill_column"
                )
        unjudged = fc.preset == "analyze" and not fc.judges
        if cc.enabled and cc.analyzer == "openai" and self.data.source != "world" and unjudged:
            if not cc.allow_unverified:
                raise ConfigError(
                    "curriculum.frontier.judges: answers a frontier model writes about data without a "
                    "program-computed answer need a judge panel (set curriculum.frontier.judges, or the "
                    "lrf or cads preset), or curriculum.allow_unverified: true to train on them unchecked"
                )

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """YAML with the booleans of YAML 1.2: only true/false. YAML 1.1 also reads yes/no/on/off
    as booleans, which turns ``run.name=on`` or ``train.mixed_precision=no`` into a bool."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults) and apply ``dotted.key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.load(path.read_text(), Loader=_Loader)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_dotted(raw, key.strip(), yaml.load(value, Loader=_Loader) if value.strip() else None)
    return build(Config, raw, "")


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def dump(cfg: Config) -> str:
    """The resolved config as YAML, redacted (``redact_tree``): keys themselves never live in a
    config (they come from the environment), but a URL may carry one, and a free-form setting
    (``image_settings``) may hold a secret-named entry."""
    from curriculum.secrets import redact_tree

    return yaml.safe_dump(redact_tree(cfg.to_dict()), sort_keys=False)


def reference() -> list[tuple[str, str, str, str]]:
    """Every config key as (dotted key, type, default, description), read from the sections'
    field docstrings so the reference never drifts from the code."""
    docs: dict[tuple[type, str], str] = {}

    def field_docs(cls: type) -> None:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:], strict=False):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                docs[(cls, a.target.id)] = " ".join(str(b.value.value).split())  # type: ignore[union-attr]

    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for c in cls.__mro__:
            if dataclasses.is_dataclass(c) and (c, "") not in docs:
                docs[(c, "")] = ""
                field_docs(c)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            doc = next((docs[(c, f.name)] for c in cls.__mro__ if (c, f.name) in docs), "")
            rows.append((prefix + f.name, type_text(tp), repr(default), doc))

    walk(Config, "")
    return rows


# Re-exported for callers that catch a field's error specifically.
_ = FieldError
