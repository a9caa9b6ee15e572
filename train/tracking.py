"""Metrics go to ``<run>/metrics.jsonl`` always, and to Weights & Biases when enabled.

Only the main process writes. The W&B run id is kept in the run folder so a resumed run continues
the same W&B run instead of starting a new one.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from train.config import Config


class Tracker:
    def __init__(self, cfg: Config, run_dir: Path, active: bool = True, fresh: bool = True) -> None:
        """``fresh``: the run starts over, so earlier metrics of this run folder are discarded."""
        self.active = active
        self.run_dir = Path(run_dir)
        self.wandb = None
        self.t0 = time.time()
        if not active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "w" if fresh else "a", buffering=1)  # noqa: SIM115
        if cfg.wandb.enabled and cfg.wandb.mode != "disabled":
            self.wandb = self._init_wandb(cfg, fresh)

    def _init_wandb(self, cfg: Config, fresh: bool) -> Any:
        import wandb

        os.environ.setdefault("WANDB_CACHE_DIR", str(self.run_dir / ".wandb_cache"))
        id_file = self.run_dir / "wandb_id"
        resuming = id_file.is_file() and not fresh
        run_id = id_file.read_text().strip() if resuming else secrets.token_hex(4)
        id_file.write_text(run_id)
        return wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            group=cfg.wandb.group,
            tags=cfg.wandb.tags,
            name=cfg.run.name,
            id=run_id,
            resume="allow",
            mode=cfg.wandb.mode,
            dir=str(self.run_dir),
            config=cfg.to_dict(),
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.active:
            return
        record = {"step": step, "time": round(time.time() - self.t0, 3), **metrics}
        self._file.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def samples(self, name: str, rows: list[dict[str, Any]], step: int) -> None:
        """A few examples (question, answer, completion, reward...): ``samples.jsonl`` without
        their images, and a W&B table with them."""
        if not self.active or not rows:
            return
        with open(self.run_dir / "samples.jsonl", "a") as f:
            for row in rows:
                f.write(
                    json.dumps({"step": step, "name": name, **{k: v for k, v in row.items() if k != "image"}})
                    + "\n"
                )
        if self.wandb is not None:
            import wandb

            from curriculum.types import as_pil

            keys = list(rows[0])
            data = [[wandb.Image(as_pil(r[k])) if k == "image" else r[k] for k in keys] for r in rows]
            logged: dict[str, Any] = {name: wandb.Table(columns=keys, data=data)}
            if "image" in keys:  # also as captioned images: offline runs keep no images inside tables
                logged[f"{name}_images"] = [
                    wandb.Image(
                        as_pil(r["image"]), caption=" | ".join(f"{k}: {r[k]}" for k in keys if k != "image")
                    )
                    for r in rows
                ]
            self.wandb.log(logged, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summary.update(values)

    def close(self) -> None:
        if not self.active:
            return
        self._file.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
