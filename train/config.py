"""Typed run configuration: YAML files plus ``key=value`` overrides.

Every field is a typed dataclass attribute with a docstring. Loading refuses unknown keys (naming
the nearest valid key) and values of the wrong type (naming the field), so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the culprit in one line."""


@dataclass
class RunConfig:
    name: str = "run"
    """Run name: outputs go to ``<output_dir>/<name>/``."""
    output_dir: str = "runs"
    """Parent folder of all runs."""
    seed: int = 0
    """Seed for model init, data order and sampling."""


@dataclass
class LoraOptions:
    enabled: bool = False
    """Train LoRA adapters instead of the full model."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Adapter scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: list[str] | None = None
    """Module names to adapt; null means the language model's attention and MLP projections."""


@dataclass
class ModelConfig:
    name_or_path: str = "runs/models/tiny-qwen2_5_vl"
    """Any Hugging Face image-text-to-text checkpoint: a local folder or a hub name."""
    build_tiny: str | None = None
    """Build a tiny random VLM of this architecture at ``name_or_path`` when that folder is missing:
    ``qwen2_5_vl``, ``llava`` or ``idefics3``. Null: load only."""
    tiny_preset: str = "tiny"
    """Size preset for ``build_tiny`` (``tiny`` about 4M parameters, ``small`` about 18M, ``medium`` about 39M)."""
    pretrain_vision_steps: int = 0
    """After ``build_tiny`` (Qwen2.5-VL only), train the new model's vision tower for this many steps to name the
    shape and colour under each image token of built-in-world scenes drawn from a seed of their own, as a stand-in for
    a real VLM's pretrained image encoder; the language model is untouched. 0: leave it random."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype. ``auto``: bfloat16 on a GPU that supports it, else float32."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    freeze_vision: bool = False
    """Keep the vision encoder's weights fixed."""
    attn_implementation: str | None = None
    """``sdpa``, ``eager``, ``flash_attention_2``; null lets transformers choose."""
    lora: LoraOptions = field(default_factory=LoraOptions)


@dataclass
class WorldConfig:
    seed: int = 0
    """Seed of the built-in world's splits."""
    image_size: int = 64
    """Rendered image side in pixels."""
    train_size: int = 5000
    """Items in the skewed "real data" train split."""
    probe_size: int = 500
    """Items in the probe split (skill-balanced; the curriculum mines failures here)."""
    test_size: int = 500
    """Items in the held-out test split (skill-balanced; reporting only)."""
    skills: list[str] = field(default_factory=list)
    """Train, probe and test on these skills only (and let the curriculum make only these); the
    train split keeps their natural proportions. Empty: all nine."""


@dataclass
class HFDataConfig:
    path: str | None = None
    """``datasets.load_dataset`` path: a hub name, a builder (``json``, ``parquet``, ``imagefolder``)
    or a local folder."""
    name: str | None = None
    """Dataset configuration name."""
    data_files: dict[str, str] | None = None
    """Split name to file(s) for builders such as ``json`` or ``parquet``."""
    train_split: str = "train"
    """Split used for training."""
    eval_split: str | None = "test"
    """Split used for evaluation (the test split); null: hold out ``eval_holdout`` train items."""
    probe_split: str | None = None
    """Split the curriculum mines for failures; null: carve ``eval_holdout`` items from train."""
    eval_holdout: int = 200
    """Items carved out of train for a missing eval or probe split."""
    image_column: str = "image"
    """Column with the image: a decoded image, a path, or bytes."""
    question_column: str = "question"
    """Column with the question text."""
    answer_column: str = "answer"
    """Column with the reference answer."""
    skill_column: str | None = None
    """Optional column naming the skill (per-skill accuracy uses it)."""
    id_column: str | None = None
    """Optional column with a stable item id; row numbers otherwise."""
    image_root: str | None = None
    """Folder that relative image paths are resolved against."""
    max_examples: int = 0
    """Keep at most this many train items (0: all)."""


@dataclass
class DataConfig:
    source: Literal["world", "hf"] = "world"
    """``world``: the built-in procedural world; ``hf``: a dataset loaded through ``datasets``."""
    world: WorldConfig = field(default_factory=WorldConfig)
    hf: HFDataConfig = field(default_factory=HFDataConfig)
    max_image_pixels: int = 40_000_000
    """Images with more pixels than this are skipped as absurdly large (and counted)."""
    min_image_side: int = 4
    """Images with a side shorter than this are skipped (and counted)."""
    question_first: bool = False
    """Put the question before the image in the user turn. Image first is the order pretrained
    VLMs saw; question first lets a causal model read the image already knowing the question,
    which a model trained from scratch learns several times faster."""
    question_suffix: str = ""
    """Text appended to every question the model reads (training, evaluation, rollouts), e.g.
    an instruction to reason and end with ``Answer: <answer>``; scoring reads the last
    ``Answer:`` of a reply when there is one."""


@dataclass
class TrainConfig:
    mode: Literal["sft", "grpo"] = "sft"
    """Training objective: ``sft`` (cross-entropy on the answers) or ``grpo`` (Group Relative
    Policy Optimization on sampled answers, settings under ``grpo``)."""
    steps: int = 100
    """Optimizer steps."""
    batch_size: int = 8
    """Examples per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (never on biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to ``lr``."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr`` (cosine and linear)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Autocast precision. ``auto``: bf16 where the device supports it, else none."""
    log_every: int = 10
    """Steps between metric lines."""
    save_every: int = 0
    """Steps between checkpoints (0: only at the end)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept on disk."""
    resume: str = "auto"
    """``auto``: continue from the newest checkpoint of this run if there is one; ``never``;
    or a checkpoint folder."""
    cpu: bool = False
    """Train on CPU even when a GPU is present."""
    save_model: bool = True
    """Write the final model (and processor) to ``<run>/model`` at the end."""


@dataclass
class GRPOConfig:
    group_size: int = 8
    """Completions sampled per prompt (G); ``train.batch_size`` prompts per step and device."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (log-probabilities are taken at the same one)."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    max_new_tokens: int = 16
    """Longest completion."""
    rewards: dict[str, float] = field(default_factory=lambda: {"correct": 1.0})
    """Reward functions and their weights: built in ``exact``, ``correct``, ``numeric``,
    ``choice``, ``format``, or ``module:function`` for your own (TRL's signature)."""
    scale_rewards: Literal["group", "none"] = "group"
    """Divide advantages by the group's reward standard deviation (``group``) or not."""
    updates: int = 1
    """Optimizer steps per batch of rollouts; above 1 the ratio to the sampling policy is clipped."""
    clip_eps: float = 0.2
    """Lower clip of the probability ratio (1 - eps)."""
    clip_eps_high: float | None = None
    """Upper clip (1 + eps_high); null: ``clip_eps``."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the reference model (with LoRA: the adapter switched off)."""
    loss_norm: Literal["sequence", "token"] = "sequence"
    """Average the loss per completion then over completions, or over all completion tokens."""
    forward_groups: int = 4
    """Groups (of one rollout) per forward and backward pass in the update: more is faster and
    takes more memory; the loss is the same."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards all agree and draw more prompts in their place."""
    refill_tries: int = 3
    """Extra draws per step at most when refilling; still short, the batch keeps dropped groups."""
    log_completions: int = 4
    """Completions (with images in W&B) logged at each log step."""


@dataclass
class EvalConfig:
    every: int = 0
    """Steps between evaluations (0: only at the start and the end)."""
    at_start: bool = True
    """Evaluate before the first step."""
    max_examples: int = 0
    """Evaluate on at most this many items of the eval split (0: all)."""
    batch_size: int = 32
    """Prompts per generation batch per device."""
    max_new_tokens: int = 8
    """Generated tokens per answer."""
    samples: int = 0
    """Also sample this many answers per item at ``temperature`` and report their mean pass rate
    (``sampled``: pass@1 averaged over the samples, as GRPO work reports it) and ``pass_at_k``
    (any sample right), overall and per skill; 0: greedy answers only."""
    temperature: float = 1.0
    """Sampling temperature of ``samples``."""
    sample_seed: int = 0
    """Seed of the sampled answers: every evaluation draws from the same seed, and the training
    run's random state is left as it was."""


@dataclass
class MixConfig:
    ratio: float = 0.3
    """Share of each batch drawn from the curriculum pool (once it has examples)."""
    ratio_end: float | None = None
    """If set, the share moves linearly from ``ratio`` to this value over ``ramp_steps``."""
    ramp_steps: int = 0
    """Steps of the linear move from ``ratio`` to ``ratio_end``."""


@dataclass
class EndpointConfig:
    model: str = ""
    """Model name the endpoint serves."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (Azure, vLLM, SGLang, a gateway); null: OpenAI itself."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (the key itself never goes in a config)."""
    timeout: float = 60.0
    """Seconds per request before it counts as timed out."""
    max_retries: int = 3
    """Retries with backoff on 429, 5xx and timeouts."""


@dataclass
class FrontierConfig(EndpointConfig):
    """The analyst's endpoint (the fields of ``EndpointConfig``) and everything else frontier."""

    model: str = "gpt-4o"
    """The analyst: model name the endpoint serves."""
    preset: Literal["analyze", "lrf", "cads"] = "analyze"
    """How failures become proposals: ``analyze`` (one diagnosis and proposals per failure group),
    ``lrf`` (each failure described, its error hypothesised, pairs proposed on the failed or a
    generated image; one judge scores triples 1-3, only 3s kept), ``cads`` (a committee of
    generator models applies four strategies to each group; a judge committee solves each
    candidate blind and the consensus keeps it)."""
    prompt: str | None = None
    """Analysis prompt template (``curriculum/frontier/prompts/<name>.md``); null: the preset's."""
    committee: list[EndpointConfig] = field(default_factory=list)
    """``cads``: the generator models (empty: the analyst alone)."""
    judges: list[EndpointConfig] = field(default_factory=list)
    """The judge panel; empty: no judges with ``analyze``, the analyst as the one judge with
    ``lrf`` and ``cads``."""
    judge_agree: int = 0
    """Judges that must agree with a candidate (``lrf``: score it 3) to keep it; 0: a majority."""
    judge_scope: Literal["all", "unverified"] = "all"
    """Candidates the panel judges: ``all``, or only those whose answer no program verified."""
    image_model: EndpointConfig | None = None
    """Image-generation endpoint (the images API) for ``generated`` proposals; null: none are
    asked for. Generated images are judged, so a panel must exist (a preset's or ``judges``)."""
    image_size: str = "1024x1024"
    """Size requested from the image endpoint."""
    image_settings: list[dict[str, str | int | float]] = field(default_factory=lambda: [{}])
    """Extra request fields per variant setting (e.g. ``{guidance_scale: 3.5}`` on a diffusion
    server, ``{response_format: b64_json}`` for models that answer with URLs)."""
    images_per_setting: int = 2
    """Images generated per setting: each description yields settings x this many variants."""
    image_price: float = 0.0
    """USD per generated image, for cost accounting."""
    exemplars: int = 4
    """Accepted examples of the last round that the student still failed, shown in each request
    of the next round (0: none)."""
    rationales: bool = False
    """Ask proposals and judges for reasoning; keep a candidate's rationale only when its final
    answer matches the verified answer (STaR), and train on rationale then answer."""
    concurrency: int = 4
    """Requests in flight at once, per stage of a round (analysis, images, judging)."""
    run_budget: float = 0.0
    """Hard spending limit for the run in USD, over every endpoint (0: none); once spent, calls
    not yet started are refused (those in flight, at most ``concurrency``, still finish)."""
    round_budget: float = 0.0
    """Hard spending limit per round in USD (0: none)."""
    round_seconds: float = 900.0
    """Time limit of a round's API work: no new call starts after it (0: none). A round then
    ends within ``timeout`` x (``max_retries`` + 1) more, so a slow endpoint cannot stall training."""
    prices: dict[str, list[float]] = field(default_factory=dict)
    """USD per million [input, output] tokens, per model name, for cost accounting."""
    cache: str | None = "~/.cache/lessonloop/frontier"
    """Folder of replies kept on disk and keyed by the request, so a resumed or repeated run does
    not pay twice; null: no cache."""
    representatives: int = 3
    """Failed items shown per failure group."""


@dataclass
class CurriculumConfig:
    enabled: bool = False
    """Run curriculum rounds during training."""
    mode: Literal["sync", "async"] = "sync"
    """``sync`` pauses training for each round; ``async`` analyses and generates in a background
    thread while training goes on, and injects the round ``max_staleness`` steps later."""
    every: int = 100
    """Steps between rounds (the first round runs at step ``every``)."""
    source: Literal["diagnosed", "uniform", "real", "hard_real"] = "diagnosed"
    """Where a round's examples come from: ``diagnosed`` (the curriculum: failures analysed into
    weaknesses, generators aimed at each); the baselines it is compared with: ``uniform`` (the
    world generator over every skill, no failure analysis), ``real`` (new items of the real
    data's own distribution, no student check), ``hard_real`` (train items the student check
    keeps). The baselines need the built-in world, except ``hard_real``."""
    quota: list[int] = field(default_factory=list)
    """Most examples kept per round, the k-th entry for round k and 0 past the end (a random
    subset of the survivors); empty: no limit. ``lessonloop compare`` sets it from the targeted
    arm so that every arm adds as many examples."""
    max_staleness: int = 20
    """``async``: steps between a round's probe evaluation and the injection of its examples;
    the loop waits at that step if the worker is not done. A fixed lag keeps runs reproducible."""
    probe_max: int = 0
    """Probe items evaluated per round (0: the whole probe split)."""
    probe_samples: int = 0
    """Sampled answers per probe item (0: one greedy answer). With samples, an item fails when its
    pass rate is at most ``failure_pass_rate`` (GRPO: all of its rollouts fail)."""
    failure_pass_rate: float = 0.0
    """With ``probe_samples``: the pass rate at or below which a probe item counts as failed."""
    max_failures: int = 64
    """Failures analysed per round: new ones first, then a random sample of repeated ones."""
    analyzer: Literal["offline", "openai"] = "offline"
    """Who diagnoses the failures: ``offline`` groups them by skill, parameters and confusion;
    ``openai`` also sends each group to the model of ``curriculum.frontier``."""
    max_weaknesses: int = 6
    """Weaknesses kept per round, strongest first."""
    budget: int = 192
    """Candidates generated per round, shared among weaknesses in proportion to their failure rate."""
    generators: dict[str, float] = field(
        default_factory=lambda: {"proposals": 0.5, "world": 0.3, "same_image": 0.125, "replay": 0.075}
    )
    """Share of each weakness's budget per generator (``proposals`` from a frontier analyzer,
    ``world``, ``same_image``, ``replay``); a generator that cannot serve a weakness (the offline
    analyzer makes no proposals) passes its share to the others."""
    student_check: Literal["fails", "band", "off"] = "fails"
    """Keep candidates the current model still gets wrong (``fails``), whose sampled pass rate
    lies in ``band`` (``band``), or all of them (``off``)."""
    band: list[float] = field(default_factory=lambda: [0.0, 0.5])
    """Pass-rate band [low, high] for ``student_check: band``."""
    band_samples: int = 4
    """Sampled answers per candidate for ``student_check: band``."""
    near_duplicate: float = 0.8
    """Word-bigram Jaccard similarity at and above which two questions are near-duplicates."""
    eval_sets: list[str] = field(default_factory=list)
    """Extra evaluation sets to keep out of training (JSON/JSONL files with a ``question`` field
    and optionally an ``image`` path): no pool example may match one of their items."""
    pool_cap: int = 2000
    """Most live examples in the pool; the oldest retire first."""
    retire_check: int = 64
    """Pool examples re-asked per round; those the model now answers correctly retire (mastered)."""
    mix: MixConfig = field(default_factory=MixConfig)
    frontier: FrontierConfig = field(default_factory=FrontierConfig)


@dataclass
class WandbConfig:
    enabled: bool = False
    """Log to Weights & Biases as well as to ``metrics.jsonl``."""
    project: str = "lessonloop"
    """W&B project."""
    entity: str | None = None
    """W&B team or user; null: the default of the logged-in account."""
    mode: Literal["online", "offline", "disabled"] = "online"
    """``offline`` writes a local run folder to sync later."""
    group: str | None = None
    """W&B group, to show related runs together."""
    tags: list[str] = field(default_factory=list)
    """W&B tags."""


@dataclass
class CompareConfig:
    """``lessonloop compare``: arms of one base config (this file) with the same steps and the
    same number of added examples, several seeds each."""

    arms: list[str] = field(default_factory=lambda: ["base", "real", "targeted", "untargeted"])
    """Arms to run: ``base`` (the real data only), ``real`` (as many extra real examples as the
    curriculum added), ``targeted`` (the curriculum as configured), ``untargeted`` (the same
    generators with uniform specs), ``replay`` (hard real examples only)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds (``run.seed``; a built tiny model is initialised from it too)."""
    parallel: int = 1
    """Runs at once, spread round-robin over the GPUs (``CUDA_VISIBLE_DEVICES``): more runs than
    GPUs share them."""
    oversample: float = 3.0
    """Candidates per round of a matched arm, as a multiple of ``curriculum.budget``, so that
    enough survive its filters to reach the targeted arm's count."""
    under_served: list[str] = field(default_factory=list)
    """Skills the real data under-serves, reported together; empty: those whose share of the
    train split is below an even share."""


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

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
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_dotted(raw, key.strip(), yaml.load(value, Loader=_Loader) if value.strip() else None)
    cfg = build(Config, raw, "")
    validate(cfg)
    return cfg


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def build(cls: type, raw: Any, prefix: str) -> Any:
    """Construct dataclass ``cls`` from a mapping, checking every key and value."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            valid = [prefix + n for n in names]
            close = difflib.get_close_matches(prefix + str(key), valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"config key '{key}' must be one of {list(args)}, got {value!r}{hint}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {_describe(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {_describe(value)}")
        return {_coerce(args[0], k, key): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {_describe(value)}")


def _type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " / ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args).replace("NoneType", "null")
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_text(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def validate(cfg: Config) -> None:
    """Cross-field checks that a single field's type cannot express."""
    checks = [
        (cfg.train.steps > 0, "train.steps must be positive"),
        (cfg.train.batch_size > 0, "train.batch_size must be positive"),
        (cfg.train.grad_accum > 0, "train.grad_accum must be positive"),
        (cfg.train.lr > 0, "train.lr must be positive"),
        (0 <= cfg.train.warmup_steps <= cfg.train.steps, "train.warmup_steps must lie in [0, train.steps]"),
        (0.0 <= cfg.train.min_lr_ratio <= 1.0, "train.min_lr_ratio must lie in [0, 1]"),
        (len(cfg.train.betas) == 2, "train.betas must hold two numbers"),
        (cfg.train.log_every > 0, "train.log_every must be positive"),
        (cfg.train.save_every >= 0, "train.save_every must be >= 0"),
        (cfg.train.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (cfg.eval.batch_size > 0, "eval.batch_size must be positive"),
        (cfg.eval.max_new_tokens > 0, "eval.max_new_tokens must be positive"),
        (cfg.eval.samples >= 0, "eval.samples must be 0 or more"),
        (cfg.eval.temperature > 0, "eval.temperature must be positive"),
        (cfg.curriculum.every > 0, "curriculum.every must be positive"),
        (cfg.curriculum.max_staleness >= 0, "curriculum.max_staleness must be >= 0"),
        (
            cfg.curriculum.mode == "sync" or cfg.curriculum.max_staleness < cfg.curriculum.every,
            "curriculum.max_staleness must be below curriculum.every (one round in flight at a time)",
        ),
        (cfg.curriculum.budget >= 0, "curriculum.budget must be >= 0"),
        (0.0 <= cfg.curriculum.mix.ratio <= 1.0, "curriculum.mix.ratio must lie in [0, 1]"),
        (
            cfg.curriculum.mix.ratio_end is None or 0.0 <= cfg.curriculum.mix.ratio_end <= 1.0,
            "curriculum.mix.ratio_end must lie in [0, 1]",
        ),
        (
            len(cfg.curriculum.band) == 2 and 0.0 <= cfg.curriculum.band[0] <= cfg.curriculum.band[1] <= 1.0,
            "curriculum.band must be [low, high] with 0 <= low <= high <= 1",
        ),
        (
            set(cfg.curriculum.generators) <= {"proposals", "world", "same_image", "replay"},
            "curriculum.generators keys must be among proposals, world, same_image, replay",
        ),
        (
            not (cfg.curriculum.enabled and cfg.curriculum.frontier.rationales)
            or cfg.eval.max_new_tokens >= 64,
            "curriculum.frontier.rationales needs eval.max_new_tokens >= 64: a reasoned answer is cut off before it ends",
        ),
        (
            cfg.curriculum.source in ("diagnosed", "hard_real") or cfg.data.source == "world",
            f"curriculum.source {cfg.curriculum.source!r} needs the built-in world (data.source: world)",
        ),
        (all(q >= 0 for q in cfg.curriculum.quota), "curriculum.quota entries must be >= 0"),
        (
            set(cfg.compare.arms) <= {"base", "real", "targeted", "untargeted", "replay"}
            and len(set(cfg.compare.arms)) == len(cfg.compare.arms) > 0,
            "compare.arms must be distinct names among base, real, targeted, untargeted, replay",
        ),
        (bool(cfg.compare.seeds), "compare.seeds must name at least one seed"),
        (cfg.compare.parallel >= 1, "compare.parallel must be >= 1"),
        (cfg.compare.oversample >= 1.0, "compare.oversample must be >= 1"),
        (cfg.curriculum.probe_samples >= 0, "curriculum.probe_samples must be >= 0"),
        (0.0 <= cfg.curriculum.failure_pass_rate < 1.0, "curriculum.failure_pass_rate must lie in [0, 1)"),
        (cfg.grpo.group_size >= 2, "grpo.group_size must be at least 2 (advantages compare within a group)"),
        (cfg.grpo.temperature > 0, "grpo.temperature must be positive"),
        (cfg.grpo.updates >= 1, "grpo.updates must be >= 1"),
        (cfg.grpo.forward_groups >= 1, "grpo.forward_groups must be >= 1"),
        (bool(cfg.grpo.rewards), "grpo.rewards must name at least one reward function"),
        (
            0
            <= cfg.curriculum.frontier.judge_agree
            <= (len(cfg.curriculum.frontier.judges) or (cfg.curriculum.frontier.preset != "analyze")),
            "curriculum.frontier.judge_agree must lie between 0 and the number of judges",
        ),
        (
            all(e.model for e in cfg.curriculum.frontier.judges + cfg.curriculum.frontier.committee),
            "every curriculum.frontier judge and committee member needs a model",
        ),
        (
            cfg.curriculum.frontier.image_model is None or bool(cfg.curriculum.frontier.image_model.model),
            "curriculum.frontier.image_model needs a model",
        ),
        (
            cfg.curriculum.frontier.image_model is None
            or cfg.curriculum.frontier.judges
            or cfg.curriculum.frontier.preset != "analyze",
            "curriculum.frontier.image_model needs a judge panel: set curriculum.frontier.judges",
        ),
        (cfg.data.source != "hf" or cfg.data.hf.path, "data.hf.path is required when data.source is 'hf'"),
        (
            cfg.model.build_tiny in (None, "qwen2_5_vl", "llava", "idefics3"),
            "model.build_tiny must be null, 'qwen2_5_vl', 'llava' or 'idefics3'",
        ),
        (cfg.model.pretrain_vision_steps >= 0, "model.pretrain_vision_steps must be >= 0"),
        (
            not cfg.model.pretrain_vision_steps or cfg.model.build_tiny == "qwen2_5_vl",
            "model.pretrain_vision_steps needs model.build_tiny: qwen2_5_vl",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.data.world.skills:
        from curriculum.world import world_skills

        try:
            world_skills(cfg.data.world.skills)
        except ValueError as err:
            raise ConfigError(f"data.world.skills: {err}") from None


def dump(cfg: Config) -> str:
    """The resolved config as YAML. Secrets never live in the config (they come from the
    environment), so nothing needs redacting here."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def reference() -> list[tuple[str, str, str, str]]:
    """Every config key as (dotted key, type, default, description), read from this module's
    field docstrings so the reference never drifts from the code."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(inspect.getmodule(Config)))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in zip(body, body[1:], strict=False):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                ):
                    docs[(node.name, a.target.id)] = " ".join(str(b.value.value).split())

    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            doc = next((docs[(c.__name__, f.name)] for c in cls.__mro__ if (c.__name__, f.name) in docs), "")
            rows.append((prefix + f.name, _type_text(tp), repr(default), doc))

    walk(Config, "")
    return rows
