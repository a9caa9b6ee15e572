"""What a run starts from: the checks before anything is written, and the model it trains.

``preflight`` refuses what cannot work as configured (one line, before the run folder exists);
``ensure_tiny_model`` builds a configured tiny VLM when its folder is missing (and pretrains its
vision tower when asked); ``prepare_model`` loads the model and processor on the run's device.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from train.config import Config, ConfigError
from train.data import Splits
from train.tracking import resolve_trackers

log = logging.getLogger("lessonloop")


def ensure_tiny_model(cfg: Config, train: list) -> None:
    """Build the configured tiny VLM when asked to and its folder is missing (tokenizer trained
    on the train split's text), then pretrain its vision tower when ``model.pretrain_vision_steps``
    asks. The model is made in a sibling folder and moved into place when complete, so an
    interrupted build is never mistaken for a finished one."""
    from models import build_tiny_vlm

    mc = cfg.model
    path = Path(mc.name_or_path)
    if not mc.build_tiny or path.exists():
        return
    corpus = tokenizer_corpus(cfg, train)
    log.info("building a tiny %s VLM at %s", mc.build_tiny, path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    image_size = cfg.data.world.image_size
    build_tiny_vlm(
        partial,
        arch=mc.build_tiny,
        preset=mc.tiny_preset,
        image_size=image_size,
        corpus=corpus,
        seed=cfg.run.seed,
    )
    if mc.pretrain_vision_steps:
        pretrain_tiny_vision(partial, mc.pretrain_vision_steps, image_size, cfg.run.seed, cfg.train.cpu,
                             mc.pretrain_vision_positions)  # fmt: skip
    partial.rename(path)


def tokenizer_corpus(cfg: Config, train: list) -> list[str]:
    """The texts a built tiny model's tokenizer learns its merges from: the train split's questions
    and answers, and, when the world's train split holds some skills only (a base model's), the
    questions of every skill from another world seed, so no skill's words are left to bytes."""
    corpus = [t for ex in train[:4000] for t in (ex.question, ex.answer)]
    w = cfg.data.world
    if cfg.data.source == "world" and w.train_skills:
        from curriculum.world import build_splits, skill_names

        items = 100 * len(w.skills or skill_names())
        other = build_splits(w.seed + 7919, 0, 0, items, 32, skills=w.skills or None)["test"]
        corpus += [t for ex in other for t in (ex.question, ex.answer)]
    return corpus


VISION_PRETRAIN_BATCH = 32  # images a step
VISION_PRETRAIN_LR = 1e-3


def pretrain_tiny_vision(
    path: Path, steps: int, image_size: int, seed: int, cpu: bool, positions: bool = False
) -> None:
    """Pretrain the vision tower of the tiny model at ``path`` in place, on token-labelled world
    images (``curriculum.world.pretraining``), the objects' positions too with ``positions``; the
    record goes to ``vision_pretraining.json``."""
    from curriculum.world.pretraining import TOKEN_ATTRIBUTES, labelled_images
    from models import load_model
    from models.pretrain import pretrain_vision, token_grid

    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    torch.manual_seed(seed)
    model, processor = load_model(str(path), dtype="float32", device=device)
    grid = token_grid(model, image_size)

    def batch(step: int) -> tuple[list, list, list]:
        return labelled_images(VISION_PRETRAIN_BATCH, seed * 1_000_003 + step, image_size, grid)

    record = pretrain_vision(
        model, processor, batch, TOKEN_ATTRIBUTES, steps, lr=VISION_PRETRAIN_LR, log=log.info, log_every=100,
        positions=positions,
    )  # fmt: skip
    model.save_pretrained(path)
    record.update(batch=VISION_PRETRAIN_BATCH, image_size=image_size, seed=seed, device=device)
    (path / "vision_pretraining.json").write_text(json.dumps(record, indent=1))


def preflight(cfg: Config) -> Any:
    """Refuse, before anything is written, loaded or trained, what cannot work as configured:
    a model that is neither on disk, in the hub cache, nor to be built, and a frontier whose
    endpoints would fail or escape the budget in every round (``ConfigError``, one line).
    Returns the frontier it built (None without one), for the curriculum to use."""
    mc, cc = cfg.model, cfg.curriculum
    resolve_trackers(cfg.tracking.report_to, cfg.wandb.enabled, cfg.wandb.mode)  # each known and installed
    if not (mc.build_tiny and not Path(mc.name_or_path).expanduser().exists()):
        from models.load import resolve_source

        try:
            resolve_source(mc.name_or_path)
        except FileNotFoundError as err:
            raise ConfigError(f"model.name_or_path: {err}") from None
    if not (cc.enabled and cc.analyzer == "openai"):
        return None
    from curriculum.analyze import OfflineAnalyzer
    from curriculum.frontier.build import FrontierSetupError, build_frontier

    try:
        return build_frontier(cc.frontier, OfflineAnalyzer.of(cc),
                              rendered=cfg.data.source == "world", skills=world_skills_of(cfg))  # fmt: skip
    except FrontierSetupError as err:
        raise ConfigError(str(err)) from None


def world_skills_of(cfg: Config) -> list[str] | None:
    """The built-in world's skills this run uses (None: all of them, or data not from the world)."""
    return (cfg.data.world.skills or None) if cfg.data.source == "world" else None


def prepare_model(cfg: Config, splits: Splits, accelerator: Accelerator) -> tuple[Any, Any]:
    """Load the configured model; first build a tiny one when asked and it is not there yet."""
    from models import LoraSettings, load_model

    mc = cfg.model
    if accelerator.is_main_process:
        ensure_tiny_model(cfg, splits.train)
    accelerator.wait_for_everyone()
    lora = None
    if mc.lora.enabled:
        lora = LoraSettings(
            r=mc.lora.r, alpha=mc.lora.alpha, dropout=mc.lora.dropout, target_modules=mc.lora.target_modules
        )
    if mc.sdpa_backends is not None:
        from models.sdpa import allow_sdpa_backends

        allow_sdpa_backends(mc.sdpa_backends)
    return load_model(
        mc.name_or_path,
        dtype=mc.dtype,
        gradient_checkpointing=mc.gradient_checkpointing,
        freeze_vision=mc.freeze_vision,
        lora=lora,
        attn_implementation=mc.attn_implementation,
        device=str(accelerator.device),
        compile=mc.compile,
        vision_cache_mib=mc.vision_cache_mib,
    )
