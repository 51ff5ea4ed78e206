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

from bids_decode.features.store import IMAGES, FeatureStore

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


class UnitSample(FeatureStore):
    """A features file seen through a unit sample: each layer is its N sampled units.

    Layers have unit shape ``(N,)``; unit ``i`` is the layer's flat unit ``index[layer][i]``.
    Every other question (images, rows, targets, attributes) goes to the file.

    Parameters
    ----------
    store : FeatureFile
        The features file (it reads the sampled columns, :meth:`FeatureFile.read_units`).
    n : int
        Units per layer (``--units-per-layer``).
    seed : int
        ``--unit-seed``.
    """

    def __init__(self, store, n: int, seed: int):
        self.store = store
        self.path = store.path
        self.names = store.names
        self.layers = store.layers
        self.seed = int(seed)
        self.index = {la: sample_units(store.n_units(la), n, seed, la) for la in store.layers}
        LOGGER.info("unit sample: %d units per layer (--unit-seed %d): %s", n, seed,
                    ", ".join(f"{la} {self.index[la].size}/{store.n_units(la)}"
                              for la in store.layers))

    @classmethod
    def over(cls, store, n: int, seed: int):
        """``store`` seen through a sample of ``n`` units per layer; ``store`` itself when
        ``n`` is 0 (every unit)."""
        return cls(store, n, seed) if n else store

    @property
    def attrs(self) -> dict:
        return self.store.attrs

    def full_shape(self, layer: str) -> tuple[int, ...]:
        """The layer's own unit shape (the sample's indices are flat indices into it)."""
        return self.store.unit_shape(layer)

    def unit_shape(self, layer: str) -> tuple[int, ...]:
        return (int(self.index[layer].size),)

    def category_names(self) -> list[str] | None:
        return self.store.category_names()

    def iter_unit_chunks(self, layer, rows, max_units, unit_range=None, source=IMAGES):
        """:meth:`FeatureStore.iter_unit_chunks` over the sampled units of ``layer``."""
        lo, hi = unit_range if unit_range is not None else (0, self.n_units(layer))
        max_units = max(1, int(max_units))
        for s in range(lo, hi, max_units):
            e = min(hi, s + max_units)
            yield s, e, self.store.read_units(layer, rows, self.index[layer][s:e], source)
