"""Screenshots of the two HTML reports as a reader sees them, taken in headless Chromium.

    python docs/report_screenshots.py [--run runs/report_demo] \\
        [--compare benchmarks/results/compare_medium_gpu600] [--out docs]

Writes the run report of ``--run`` (a run folder; its ``<name>-off`` twin beside it, if any, is
compared) and the compare report of ``--compare`` (a folder holding ``compare.json``) to
``<out>/report_run.html`` and ``<out>/report_compare.html``, then saves PNGs at 1400 px wide:

- ``report_run_top.png`` and ``report_compare_top.png``: the first screen (1400 x 900), what a
  reader sees on opening the file: the answer must be there;
- ``report_run.png`` and ``report_compare.png``: the whole page as it opens (rounds folded);
- ``report_run_round.png``: the first round unfolded, as a click shows it (the rest of the page
  hidden).

Each PNG is cut at the page's end (trailing blank rows trimmed) and stored with a 256-colour
palette to stay small. The script prints every page's height in pixels: the page must read
without endless scrolling. Not part of ``make test``: it needs Chromium (Debian's ``chromium``
package), which the tests never do.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curriculum.report import write_report  # noqa: E402  (after the repository is on sys.path)
from train.compare_page import report_folder  # noqa: E402

WIDTH = 1400
FIRST_SCREEN = 900
# Chromium in a closed network: no background connections, no first-run pages, no GPU.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]  # fmt: skip


def screenshot(chromium: str, page: Path, out: Path, height: int) -> Image.Image:
    """The page rendered in a ``WIDTH`` x ``height`` window, as an RGB image."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
               f"--screenshot={out}", page.resolve().as_uri()]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return Image.open(out).convert("RGB")


def trim(image: Image.Image) -> Image.Image:
    """The image without the blank rows below the page's last content."""
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox()
    return image if box is None else image.crop((0, 0, image.width, min(image.height, box[3] + 24)))


def whole_page(chromium: str, page: Path, out: Path) -> Image.Image:
    """The whole page: rendered in a window taller than it, then trimmed."""
    height = 6000
    while True:
        image = trim(screenshot(chromium, page, out, height))
        if image.height < height - 24 or height >= 48000:
            return image
        height *= 2


def save(image: Image.Image, path: Path) -> None:
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width} x {image.height} px, {path.stat().st_size // 1024} KiB")


def unfold_first_round(page: Path) -> Path:
    """A copy of the run report with its first round unfolded (a click, without a script) and
    everything else hidden, so the screenshot holds the round alone."""
    hide = "<style>header,section:not(#rounds),#rounds>h2,#rounds>.grid,#rounds>p{display:none}</style>"
    text = page.read_text(encoding="utf-8").replace(
        '<details class="round"', '<details class="round" open', 1
    )
    text = text.replace("</head>", hide + "</head>", 1)
    copy = page.with_name(page.stem + "_round_open.html")
    copy.write_text(text, encoding="utf-8")
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Relative defaults (run it from the repository root): the pages name the folders as given.
    parser.add_argument("--run", type=Path, default=Path("runs/report_demo"))
    parser.add_argument("--compare", type=Path, default=Path("benchmarks/results/compare_medium_gpu600"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if not args.chromium:
        print(
            "error: no chromium found (apt-get install chromium), or name it with --chromium", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    pages = {
        "report_run": write_report(args.run, args.out / "report_run.html"),
        "report_compare": report_folder(args.compare, args.out / "report_compare.html"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        for name, page in pages.items():
            full = whole_page(args.chromium, page, shot)
            print(f"{name}.html: the page is {full.height} px tall at {WIDTH} px wide")
            save(full.crop((0, 0, WIDTH, min(FIRST_SCREEN, full.height))), args.out / f"{name}_top.png")
            save(full, args.out / f"{name}.png")
        opened = unfold_first_round(pages["report_run"])
        try:
            full = whole_page(args.chromium, opened, shot)
        finally:
            opened.unlink()
        print(f"report_run.html, round 1 unfolded: {full.height} px tall")
        save(full, args.out / "report_run_round.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
