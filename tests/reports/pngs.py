"""Reading report figures back: the PNGs embedded in a page, and one figure's panel titles."""

from __future__ import annotations

import base64
import io
import re

import numpy as np

IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def page_images(html: str) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"),
                       dtype=np.float64) for b in IMG_RE.findall(html)]


def png_panels(png: bytes) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    desc = im.text.get("Description", "")
    return np.asarray(im.convert("RGB"), dtype=np.float64), desc.removeprefix(
        "panels: ").split("; ")
