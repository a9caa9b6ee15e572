"""A small real-image VQA dataset with skewed skills, and the comparison run on it.

    python benchmarks/real_images.py build --out runs/data/real_images      # the dataset (seconds)
    python benchmarks/real_images.py compare --out runs/data/real_images    # lessonloop compare on it

The photographs are the colour photographs that ship inside scikit-image (``pip install -e
.[benchmark]``: astronaut, cat, coffee, rocket, galaxy, retina, tissue, motorcycle; read from the
package's own files, nothing is downloaded). Each item is a random crop of one photograph
(a third to two thirds of its short side), turned by a random quarter turn, scaled to ``--size``
pixels, with one of four questions whose answer a program reads off the crop:

- ``photo``: which photograph the crop comes from (8 answers);
- ``orientation``: how the crop is turned (upright, upside down, turned left, turned right);
- ``brightest``: which quadrant of the crop is brightest (a crop whose two brightest quadrants
  differ by less than ``MARGIN`` of the brightness range is drawn again, so every answer is clear);
- ``colour``: which is stronger over the crop, red or blue (again with a margin; green leads in
  no crop of these photographs).

Train is skewed, as a user's data is: photo and orientation 45 % each, brightest and colour 5 %
each (the rare skills); probe and test are balanced. It is written as JSON Lines with each split
in its own folder (``train/train.jsonl`` beside ``train/img/``...), relative image paths, a skill
column ``skill``, an id column ``uid`` and a metadata column ``photo`` (the source photograph),
which the analyzer slices by (``data.hf.slice_columns``).

``compare`` runs base, +real (fresh items from the reserve), +untargeted (reserve items evenly
over the skills) and +targeted (the offline analyzer and replay, no frontier) over three seeds on
the CPU, one run at a time; its folder lands under ``runs/compare_real_images_cpu/``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = {  # answer -> the file in scikit-image's data folder
    "astronaut": "astronaut.png",
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "galaxy": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "tissue": "ihc.png",
    "motorcycle": "motorcycle_left.png",
}
TURNS = {"upright": 0, "turned left": 90, "upside down": 180, "turned right": 270}  # PIL: counter-clockwise
QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]
CHANNELS = ["red", "blue"]  # green leads in no crop of these photographs
QUESTIONS = {
    "photo": "Which photo is this crop from?",
    "orientation": "How is this crop turned?",
    "brightest": "Which quadrant of this crop is brightest?",
    "colour": "Which is stronger in this crop, red or blue?",
}
TRAIN_SHARES = {"photo": 0.45, "orientation": 0.45, "brightest": 0.05, "colour": 0.05}
MARGIN = 0.08
"""Least gap, as a share of the 0-255 range, between the winning quadrant's (or channel's) mean and
the runner-up's: an item closer than that is drawn again."""


def photographs() -> dict[str, Image.Image]:
    """The eight colour photographs, read from scikit-image's own data folder."""
    try:
        import skimage
    except ImportError as err:
        raise SystemExit("this benchmark needs scikit-image: pip install -e .[benchmark]") from err
    folder = Path(skimage.__file__).parent / "data"
    return {name: Image.open(folder / file).convert("RGB") for name, file in PHOTOS.items()}


def brightest(pixels: np.ndarray) -> tuple[str, float]:
    """The brightest quadrant of an (h, w, 3) array and its lead over the runner-up (0-1)."""
    grey = pixels.mean(2)
    h, w = grey.shape
    means = [
        grey[: h // 2, : w // 2],
        grey[: h // 2, w // 2 :],
        grey[h // 2 :, : w // 2],
        grey[h // 2 :, w // 2 :],
    ]
    values = sorted(((float(q.mean()), i) for i, q in enumerate(means)), reverse=True)
    return QUADRANTS[values[0][1]], (values[0][0] - values[1][0]) / 255


def strongest(pixels: np.ndarray) -> tuple[str, float]:
    """Red or blue, whichever channel has the higher mean, and its lead over the other (0-1)."""
    red, blue = float(pixels[..., 0].mean()), float(pixels[..., 2].mean())
    return ("red" if red > blue else "blue"), abs(red - blue) / 255


def make_item(
    photos: dict[str, Image.Image], skill: str, rng: random.Random, size: int
) -> tuple[Image.Image, str, str]:
    """One (image, answer, photo) for ``skill``. For ``brightest`` and ``colour`` the answer is
    chosen first, uniformly, and crops are drawn until one has it clearly: the photographs are
    mostly red and bright at the top, and a skill answered by its commonest answer would teach
    nothing about the picture."""
    want = {"brightest": QUADRANTS, "colour": CHANNELS}.get(skill)
    target = rng.choice(want) if want else None
    for _ in range(100_000):
        name = rng.choice(sorted(photos))
        photo = photos[name]
        side = int(min(photo.size) * rng.uniform(1 / 3, 2 / 3))
        x, y = rng.randrange(photo.width - side + 1), rng.randrange(photo.height - side + 1)
        turn = rng.choice(sorted(TURNS))
        crop = photo.crop((x, y, x + side, y + side)).rotate(TURNS[turn], expand=True)
        image = crop.resize((size, size), Image.Resampling.BOX)
        pixels = np.asarray(image, dtype=np.float64)
        if skill == "photo":
            return image, name, name
        if skill == "orientation":
            return image, turn, name
        answer, lead = brightest(pixels) if skill == "brightest" else strongest(pixels)
        if lead >= MARGIN and answer == target:
            return image, answer, name
    raise RuntimeError(f"no crop answers {skill} with {target!r} clearly")


def build(out: Path, train: int, probe: int, test: int, size: int, seed: int) -> dict[str, dict[str, int]]:
    """Write the three splits under ``out``; returns the items per skill of each split."""
    photos = photographs()
    counts: dict[str, dict[str, int]] = {}
    for offset, (split, n, shares) in enumerate(
        [("train", train, TRAIN_SHARES), ("probe", probe, None), ("test", test, None)]
    ):
        rng = random.Random(f"{seed}|{split}|{offset}")
        skills = list(QUESTIONS)
        if shares is None:  # balanced: n / 4 of each skill
            plan = [skills[i % len(skills)] for i in range(n)]
        else:
            plan = rng.choices(skills, weights=[shares[s] for s in skills], k=n)
        folder = out / split
        (folder / "img").mkdir(parents=True, exist_ok=True)
        with open(folder / f"{split}.jsonl", "w") as f:
            for i, skill in enumerate(plan):
                image, answer, photo = make_item(photos, skill, rng, size)
                uid = f"{split}-{i:05d}"
                image.save(folder / "img" / f"{uid}.png")
                row = {"image": f"img/{uid}.png", "question": QUESTIONS[skill], "answer": answer,
                       "skill": skill, "photo": photo, "uid": uid}  # fmt: skip
                f.write(json.dumps(row) + "\n")
        counts[split] = {s: plan.count(s) for s in skills}
    (out / "counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    return counts


def data_overrides(out: Path) -> list[str]:
    """The overrides that load the dataset ``build`` wrote."""
    files = ", ".join(f"{s}: {out / s / f'{s}.jsonl'}" for s in ("train", "probe", "test"))
    return [
        "data.source=hf", "data.hf.path=json", f"data.hf.data_files={{{files}}}", "data.hf.probe_split=probe",
        "data.hf.skill_column=skill", "data.hf.id_column=uid", "data.hf.slice_columns=[photo]",
    ]  # fmt: skip


COMPARE = [
    "run.name=compare_real_images_cpu", "model.build_tiny=qwen2_5_vl", "model.tiny_preset=tiny",
    "model.name_or_path=runs/models/tiny-real-images", "data.world.image_size=32", "data.question_first=true",
    "train.cpu=true", "train.steps=600", "train.batch_size=16", "train.lr=1e-3", "train.warmup_steps=20",
    "train.schedule=cosine", "train.weight_decay=0.01", "train.log_every=50", "train.save_every=200",
    "train.save_model=false", "eval.every=150", "eval.batch_size=64", "eval.max_new_tokens=4",
    "curriculum.every=150", "curriculum.budget=96", "curriculum.max_failures=96", "curriculum.mix.ratio=0.3",
    "compare.arms=[base,targeted,real,untargeted]", "compare.seeds=[0,1,2]", "compare.parallel=1",
    "compare.oversample=3.0",
]  # fmt: skip
"""The comparison's settings: the tiny model built from scratch per seed at 32 px (the tiny model
reads its image size from ``data.world.image_size``), 600 steps of 16, rounds at steps 150, 300 and
450, one run at a time on the CPU."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "compare"])
    parser.add_argument("--out", type=Path, default=Path("runs/data/real_images"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--probe", type=int, default=200)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for compare")
    args = parser.parse_intermixed_args(argv)
    out = args.out.resolve()
    if args.command == "build" or not (out / "counts.json").is_file():
        print(json.dumps(build(out, args.train, args.probe, args.test, args.size, args.seed)))
    if args.command == "build":
        return 0
    cmd = [sys.executable, "-m", "train.cli", "compare", *COMPARE, *data_overrides(out), *args.overrides]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
