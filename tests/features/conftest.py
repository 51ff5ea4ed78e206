"""Fixtures of the features tests: stimulus folders of small images, and of real photos."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.features.helpers import save_image


@pytest.fixture()
def stimuli(tmp_path):
    """Three small images of odd sizes and modes; names are stems."""
    folder = tmp_path / "stimuli"
    paths = [
        save_image(folder / "n01443537_22563.JPEG", (37, 53)),
        save_image(folder / "img_b.png", (61, 29), "RGBA"),
        save_image(folder / "img_c.bmp", (40, 41), "L"),
    ]
    return folder, paths, ["n01443537_22563", "img_b", "img_c"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's sample photos saved as JPEG/PNG, as a stimulus folder."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos") / "stimuli"
    folder.mkdir()
    for name, suffix in [("astronaut", ".jpg"), ("coffee", ".JPEG"), ("chelsea", ".png"),
                         ("rocket", ".jpg"), ("camera", ".png")]:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}{suffix}")
    return folder
