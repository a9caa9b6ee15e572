"""Can a freshly built tiny VLM learn one skill of the built-in world on its own?

    python benchmarks/skill_alone.py --skill shape --steps 2000 --out skill_shape.json \
        [--preset tiny] [--vision '{"patch_size": 4}'] [--params '{"size": [0.10, 0.12]}']

Trains by plain cross-entropy on a fresh batch of the skill's examples every step (no example is
seen twice, so a flat curve is not a data shortage), and scores greedy answers on a fixed held-out
set every ``--eval-every`` steps. When a skill stays at the accuracy of always giving its most
common answer, the model does not read that skill's visual cue at this budget, whatever SFT or
GRPO is run on top. ``--vision`` overrides fields of the vision tower's config (patch size,
merge size, ...), ``--params`` constrains the skill's parameters as a curriculum spec would, and
``--pretrain-vision N`` first pretrains the vision tower as ``model.pretrain_vision_steps: N`` does.
``--from PATH`` starts from a saved model instead (the base student: ``models/bases/tiny-qwen2_5_vl``),
``--freeze-vision`` keeps its tower fixed, as ``model.freeze_vision`` does; the first point of the
curve (step 0) is then the starting model's accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curriculum.scoring import is_correct  # noqa: E402
from curriculum.world import Spec, generate, skill_names, world_corpus  # noqa: E402
from models import build_tiny_vlm, load_model  # noqa: E402
from models.load import freeze_vision_encoder  # noqa: E402
from train.collate import VLMCollator  # noqa: E402
from train.evaluate import generate_answers, prior_baseline  # noqa: E402
from train.setup import pretrain_tiny_vision  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skill", required=True, choices=skill_names())
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--vision", default="{}", help="JSON: vision_config fields to override")
    parser.add_argument("--params", default="{}", help="JSON: the skill's parameter constraints")
    parser.add_argument(
        "--pretrain-vision", type=int, default=0, help="vision pretraining steps first (0: none)"
    )
    parser.add_argument("--from", dest="start", help="a saved model to start from (default: build one)")
    parser.add_argument("--freeze-vision", action="store_true", help="keep the vision tower fixed")
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    vision, params = json.loads(args.vision), json.loads(args.params)
    if args.start:
        model, processor = load_model(args.start, dtype="float32", device=args.device)
    else:
        model, processor = build_and_load(args, vision)
    if args.freeze_vision:
        freeze_vision_encoder(model)
    collator = VLMCollator(processor, question_first=True)
    device = torch.device(args.device)
    test = generate(
        Spec(args.skill, params, args.test_size), seed=10_000 + args.seed, image_size=args.image_size
    )
    # Always the most common answer of 2000 more examples: what ignoring the image reaches.
    prior = prior_baseline(generate(Spec(args.skill, params, 2000), seed=20_000), test)["accuracy"]
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.95)
    )
    curve: list[dict[str, float]] = []
    parameters = sum(p.numel() for p in model.parameters())

    def evaluate(step: int, loss: float | None) -> None:
        model.eval()
        answers, _ = generate_answers(model, collator, test, 64, 4, device)
        model.train()
        accuracy = sum(is_correct(a, ex.answer) for a, ex in zip(answers, test, strict=True)) / len(test)
        curve.append(
            {"step": step, "loss": loss, "accuracy": accuracy, "seconds": round(time.perf_counter() - t0, 1)}
        )
        shown = "-" if loss is None else f"{loss:.3f}"
        print(
            f"{args.skill} step {step}: loss {shown}, accuracy {accuracy:.3f} (prior {prior:.3f})", flush=True
        )
        # Rewritten at every evaluation, so a run stopped early keeps its curve.
        out = {"args": vars(args), "prior": prior, "parameters": parameters, "curve": curve}
        Path(args.out).write_text(json.dumps(out, indent=1))

    t0 = time.perf_counter()
    if args.start:
        evaluate(0, None)
    model.train()
    losses: list[float] = []
    for step in range(1, args.steps + 1):
        batch = generate(Spec(args.skill, params, args.batch), seed=step, image_size=args.image_size)
        inputs = {k: v.to(device) for k, v in collator(batch).items()}
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step, sum(losses) / len(losses))
            losses.clear()
    return 0


def build_and_load(args: argparse.Namespace, vision: dict) -> tuple:
    """A freshly built tiny model (its tower pretrained first when asked), loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_vlm(tmp, preset=args.preset, image_size=args.image_size, corpus=world_corpus(),
                       seed=args.seed, overrides={"vision_config": vision} if vision else None)  # fmt: skip
        if args.pretrain_vision:
            pretrain_tiny_vision(
                Path(tmp), args.pretrain_vision, args.image_size, args.seed, args.device == "cpu"
            )
        return load_model(tmp, dtype="float32", device=args.device)


if __name__ == "__main__":
    sys.exit(main())
