"""How often do distinct world images collide under the perceptual hash, and how often is a
re-encoded or resized copy still recognised? The measurements behind ``NEAR_IMAGE_BITS``.

    python benchmarks/perceptual_hash.py --out benchmarks/results/perceptual_hash_cpu.json \
        [--per-skill 250] [--sizes 32,64,224] [--thresholds 6,8,10,12,14,16,20]

For each image size it renders ``--per-skill`` examples of every world skill, keeps the distinct
images (by exact pixel hash: two skills can ask about the same scene), and hashes them with
``curriculum.types.perceptual_hash`` (pHash of R, G and B: 192 bits) and, for comparison, with a
grey pHash (64 bits). Collisions: pairs of distinct images whose hashes lie within a threshold,
counted over pairs of the same skill (alike layouts: the hard case) and of different skills.
Recall: the share of images whose copy (JPEG at several qualities, resized up or down, both, or
JPEG twice) lies within the threshold of the original.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curriculum.types import as_pil, hash_distances, image_hash, perceptual_hash  # noqa: E402
from curriculum.world import Spec, generate, skill_names  # noqa: E402


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _scale(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC if factor > 1 else Image.Resampling.BILINEAR)


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q95": lambda im: _jpeg(im, 95),
    "jpeg_q90": lambda im: _jpeg(im, 90),
    "jpeg_q75": lambda im: _jpeg(im, 75),
    "jpeg_q50": lambda im: _jpeg(im, 50),
    "jpeg_q75_then_q70": lambda im: _jpeg(_jpeg(im, 75), 70),
    "resize_x2": lambda im: _scale(im, 2.0),
    "resize_x0.8": lambda im: _scale(im, 0.8),
    "resize_x0.5": lambda im: _scale(im, 0.5),
    "resize_x2_jpeg_q75": lambda im: _jpeg(_scale(im, 2.0), 75),
    "resize_x0.5_jpeg_q90": lambda im: _jpeg(_scale(im, 0.5), 90),
    "resize_x0.5_jpeg_q75": lambda im: _jpeg(_scale(im, 0.5), 75),
}


def grey_phash(image: Image.Image) -> bytes:
    """imagehash's plain pHash of the grey image (64 bits), for comparison."""
    import imagehash

    return np.packbits(imagehash.phash(image, hash_size=8).hash.ravel()).tobytes()


def distinct_images(per_skill: int, size: int, seed: int) -> tuple[list[Image.Image], list[str]]:
    """Rendered images of every skill, each distinct image once, with the skill it was drawn for."""
    images, skills, seen = [], [], set()
    for skill in skill_names():
        for ex in generate(Spec(skill, {}, per_skill), seed=seed, image_size=size):
            key = image_hash(ex.image)
            if key not in seen:
                seen.add(key)
                images.append(as_pil(ex.image))
                skills.append(skill)
    return images, skills


def collisions(hashes: np.ndarray, skills: np.ndarray, thresholds: list[int]) -> dict:
    """Pairs of distinct images within each threshold, same skill and different skills apart."""
    same = dict.fromkeys(thresholds, 0)
    cross = dict.fromkeys(thresholds, 0)
    n_same = n_cross = 0
    closest = []
    for i in range(len(hashes) - 1):
        d = hash_distances(hashes[i + 1 :], hashes[i].tobytes())
        alike = skills[i + 1 :] == skills[i]
        n_same += int(alike.sum())
        n_cross += int((~alike).sum())
        for t in thresholds:
            same[t] += int((d[alike] <= t).sum())
            cross[t] += int((d[~alike] <= t).sum())
        j = int(d.argmin())
        closest.append((int(d[j]), str(skills[i]), str(skills[i + 1 + j])))
    closest.sort()
    return {
        "same_skill_pairs": n_same,
        "same_skill_collisions": {str(t): same[t] for t in thresholds},
        "cross_skill_pairs": n_cross,
        "cross_skill_collisions": {str(t): cross[t] for t in thresholds},
        "closest_pairs": closest[:5],
    }


def recall(
    images: list[Image.Image], hashes: np.ndarray, hasher: Callable, thresholds: list[int], n: int
) -> dict:
    """For each kind of copy: the share of ``n`` images (evenly spread) whose copy is within each
    threshold of the original, and the largest distance seen."""
    picks = np.linspace(0, len(images) - 1, num=min(n, len(images))).astype(int)
    out = {}
    for name, copy in COPIES.items():
        d = np.array([hash_distances(hashes[i : i + 1], hasher(copy(images[i])))[0] for i in picks])
        out[name] = {
            "caught": {str(t): round(float((d <= t).mean()), 4) for t in thresholds},
            "max_distance": int(d.max()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-skill", type=int, default=250)
    parser.add_argument("--sizes", default="32,64,224")
    parser.add_argument("--thresholds", default="6,8,10,12,14,16,20")
    parser.add_argument("--copies", type=int, default=360, help="images copied per size for the recall")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    thresholds = [int(t) for t in args.thresholds.split(",")]
    result: dict = {"args": vars(args), "bits": {"rgb": 192, "grey": 64}, "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        images, skills = distinct_images(args.per_skill, size, args.seed)
        t1 = time.perf_counter()
        rgb = np.array([np.frombuffer(perceptual_hash(im), dtype=np.uint8) for im in images])
        hash_s = time.perf_counter() - t1
        grey = np.array([np.frombuffer(grey_phash(im), dtype=np.uint8) for im in images])
        labels = np.array(skills)
        entry = {
            "images": len(images),
            "render_s": round(t1 - t0, 2),
            "hash_ms_per_image": round(1000 * hash_s / len(images), 3),
            "rgb": {
                **collisions(rgb, labels, thresholds),
                "recall": recall(images, rgb, perceptual_hash, thresholds, args.copies),
            },
            "grey": collisions(grey, labels, thresholds),
        }
        result["sizes"][str(size)] = entry
        same = entry["rgb"]["same_skill_collisions"]
        print(f"{size} px: {len(images)} images; same-skill collisions (rgb) {same} of "
              f"{entry['rgb']['same_skill_pairs']} pairs; grey {entry['grey']['same_skill_collisions']}",
              flush=True)  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
