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

from curriculum.frontier.client import FrontierClient


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

    def __call__(self, prompt: str, limit: int) -> list[tuple[Image.Image, dict[str, Any]]]:
        """Up to ``limit`` variants of ``prompt`` with the setting each came from."""
        out: list[tuple[Image.Image, dict[str, Any]]] = []
        for setting in self.settings:
            if len(out) >= limit:
                break
            for raw in self.client.images(
                prompt, min(self.per_setting, limit - len(out)), self.size, setting
            ):
                with Image.open(io.BytesIO(raw)) as img:
                    image = img.convert("RGB")
                image.thumbnail((self.max_side, self.max_side))
                out.append((image, setting))
        return out[:limit]
