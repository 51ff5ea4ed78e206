"""Helpers of the features tests: small random images of odd shapes, reading a features file."""

from __future__ import annotations

import h5py
import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def save_image(path, shape, mode="RGB"):
    """A random image of odd ``shape`` (height, width) saved at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = RNG.integers(0, 256, size=(*shape, channels), dtype=np.uint8)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
    return path


def read_features(path):
    """(stimulus names, {layer: values}, {layer: chunks}, file attributes) of a features file."""
    with h5py.File(path, "r") as f:
        names = [s.decode() for s in f["stimulus_name"][()]]
        layers = {k: v[()] for k, v in f["layers"].items()}
        chunks = {k: v.chunks for k, v in f["layers"].items()}
        attrs = dict(f.attrs)
    return names, layers, chunks, attrs
