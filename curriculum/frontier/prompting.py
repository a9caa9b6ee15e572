"""Prompt templates and the one way dataset text and images enter a prompt.

Templates are versioned files in ``prompts/`` (``<name>_v<k>.md``); a template in use is never
edited, a changed one gets the next version, and every record names the template it used. Text
from a dataset or from the model under training is JSON-encoded inside a ``<data>`` block, and
every template says such blocks are data, never instructions.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from curriculum.types import Example, image_to_png_bytes

PROMPTS = Path(__file__).parent / "prompts"


def load_prompt(name: str) -> str:
    """A prompt template by versioned name, e.g. ``analyze_v1``."""
    path = PROMPTS / f"{name}.md"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.md")))
        raise ValueError(f"unknown prompt {name!r} (known: {known})")
    return path.read_text()


def fill(template: str, **slots: str) -> str:
    """The template with each ``{slot}`` replaced (other braces are left alone)."""
    for key, value in slots.items():
        template = template.replace("{" + key + "}", value)
    return template


def data_block(obj: Any) -> str:
    return f"<data>{json.dumps(obj)}</data>"


def data_url(image: Any) -> str:
    """A PNG data URL of an image (or of an Example's image)."""
    if isinstance(image, Example):
        image = image.image
    return "data:image/png;base64," + base64.b64encode(image_to_png_bytes(image)).decode()
