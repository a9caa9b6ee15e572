"""Does a tiny VLM's vision tower, as built, name the shape of the object under an image token?

    python benchmarks/probe_tower.py --out probe.json [--params '{"size": [0.10, 0.12]}'] \
        [--pretrain-vision 1500] [--train 2500 --test 500]

Draws one-object scenes of the shape skill, takes the image token the object is centred in (the
merger's output, what the language model reads), and fits a logistic-regression probe on those
tokens to convergence (L-BFGS, standardised features), then reports its held-out accuracy next to
chance. A high figure means the shape is already linearly there for the language model to read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curriculum.world import Spec, generate, world_corpus  # noqa: E402
from curriculum.world.pretraining import token_labels  # noqa: E402
from curriculum.world.scene import SHAPES  # noqa: E402
from models import build_tiny_vlm, load_model  # noqa: E402
from models.pretrain import image_token_features, token_grid  # noqa: E402
from train.setup import pretrain_tiny_vision  # noqa: E402


def object_tokens(model, processor, examples, grid: int) -> torch.Tensor:
    """The feature of the token each example's (single) object is centred in."""
    rows = []
    with torch.no_grad():
        for i in range(0, len(examples), 100):
            chunk = examples[i : i + 100]
            features = image_token_features(model, processor, [ex.image for ex in chunk])
            for ex, tokens in zip(chunk, features, strict=True):
                cell = next(k for k, v in enumerate(token_labels(ex.scene, grid)["shape"]) if v)
                rows.append(tokens[cell])
    return torch.stack(rows)


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float = 1e-4) -> torch.nn.Linear:
    """Multinomial logistic regression fitted to convergence with L-BFGS."""
    probe = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=2500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--params", default="{}", help="JSON: extra shape-skill parameter constraints")
    parser.add_argument(
        "--pretrain-vision", type=int, default=0, help="vision pretraining steps first (0: none)"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    params = {**json.loads(args.params), "distractors": [0, 0]}
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_vlm(tmp, image_size=args.image_size, corpus=world_corpus(), seed=args.seed)
        if args.pretrain_vision:
            pretrain_tiny_vision(Path(tmp), args.pretrain_vision, args.image_size, args.seed, cpu=True)
        model, processor = load_model(tmp, dtype="float32", device="cpu")
    model.eval()
    examples = generate(
        Spec("shape", params, args.train + args.test), seed=30_000 + args.seed, image_size=args.image_size
    )
    x = object_tokens(model, processor, examples, token_grid(model, args.image_size))
    y = torch.tensor([SHAPES.index(ex.answer) for ex in examples])
    x_train, x_test, y_train, y_test = x[: args.train], x[args.train :], y[: args.train], y[args.train :]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    probe = fit_probe((x_train - mean) / std, y_train, len(SHAPES))
    with torch.no_grad():
        train_acc = float((probe((x_train - mean) / std).argmax(1) == y_train).float().mean())
        test_acc = float((probe((x_test - mean) / std).argmax(1) == y_test).float().mean())
    chance = float(torch.bincount(y_test, minlength=len(SHAPES)).max()) / len(y_test)
    result = {"args": vars(args), "train_accuracy": train_acc, "test_accuracy": test_acc, "chance": chance}
    print(f"probe of the object token: train {train_acc:.3f}, held out {test_acc:.3f} (chance {chance:.3f})")
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
