"""A random sample of a layer's units (``--units-per-layer``): the same for every run.

The lab's feature decoding and BH score decode 1,000 random units per layer (their
``index_file``) instead of every unit. Here the sample of a layer depends only on the layer's
name, its number of units, N and ``--unit-seed``: every subject, ROI, unit shard and the group
level draw the same units, and the outputs keep their flat (C-order) indices.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np

LOGGER = logging.getLogger(__name__)


def sample_units(n_units: int, n: int, seed: int, layer: str) -> np.ndarray:
    """Flat indices of ``n`` units of a layer of ``n_units``, sorted (all when n >= n_units).

    Parameters
    ----------
    n_units : int
        Units of the layer (the product of its unit shape).
    n : int
        Units wanted; 0 or ``n >= n_units``: every unit.
    seed : int
        ``--unit-seed``.
    layer : str
        The layer's name (each layer gets its own stream: ``default_rng([seed, crc32(name)])``).

    Returns
    -------
    ndarray of shape (min(n, n_units),), int64
    """
    if n <= 0 or n >= n_units:
        return np.arange(n_units, dtype=np.int64)
    rng = np.random.default_rng([int(seed), zlib.crc32(layer.encode("utf-8"))])
    return np.sort(rng.choice(n_units, size=int(n), replace=False)).astype(np.int64)
