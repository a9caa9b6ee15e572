"""Images generated from a text prompt, several variants per prompt.

Each entry of ``settings`` is sent as extra request fields (for example guidance scales, seeds or
styles an endpoint understands) and asked for ``per_setting`` images, so one description yields
``len(settings) * per_setting`` variants. Images come back as RGB, shrunk to at most ``max_side``
pixels on their longer side.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from curriculum.frontier.client import FrontierClient, FrontierError


class ImageMaker:
    def __init__(
        self,
        client: FrontierClient,
        settings: list[dict[str, Any]] | None = None,
        per_setting: int = 2,
        size: str = "1024x1024",
        max_side: int = 1024,
    ) -> None:
        self.client, self.settings = client, settings or [{}]
        self.per_setting, self.size, self.max_side = per_setting, size, max_side

    def __call__(self, prompt: str, limit: int) -> tuple[list[tuple[Image.Image, dict[str, Any]]], list[str]]:
        """Up to ``limit`` variants of ``prompt``, each with the setting it came from, and the
        errors of settings that failed (the variants already made are kept)."""
        out: list[tuple[Image.Image, dict[str, Any]]] = []
        errors: list[str] = []
        for setting in self.settings:
            if len(out) >= limit:
                break
            try:
                made = self.client.images(prompt, min(self.per_setting, limit - len(out)), self.size, setting)
            except FrontierError as err:
                errors.append(str(err))
                continue
            for raw in made:
                with Image.open(io.BytesIO(raw)) as img:
                    image = img.convert("RGB")
                image.thumbnail((self.max_side, self.max_side))
                out.append((image, setting))
        return out[:limit], errors
