"""The stimulus-features HDF5 file (format: docs/formats.md): the HDF5 :class:`FeatureStore`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bids_decode.errors import DataError
from bids_decode.features.store import CATEGORIES, IMAGES, FeatureStore, TestTargets, stimulus_key
from bids_decode.utils.h5 import H5Reader

__all__ = ["FeatureFile", "FeatureStore", "TestTargets", "stimulus_key"]

#: HDF5 group of each :attr:`TestTargets.source`
GROUPS = {IMAGES: "layers", CATEGORIES: "category_layers"}


def _decode(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _forward_order(names: list[str], recorded) -> list[str]:
    """``names`` in the order of the file's ``layers`` attribute (JSON list, the network's
    forward order, as ``bids_decode features`` writes it); HDF5 lists them alphabetically."""
    try:
        order = json.loads(recorded.decode() if isinstance(recorded, bytes) else recorded)
    except (TypeError, ValueError):
        return names
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(names):
        return names
    return [str(n) for n in order]


class FeatureFile(H5Reader, FeatureStore):
    """A read-only view of a features file: the HDF5 :class:`FeatureStore`.

    Parameters
    ----------
    path : path-like
        HDF5 file with ``/stimulus_name`` (n_images,) and ``/layers/<layer>``
        float arrays of shape (n_images, *unit_shape).
    """

    def __init__(self, path):
        path = Path(path)
        self._open(
            path,
            f"The features file {path} does not exist. Give an existing HDF5 file with "
            "--features, or compute one with 'bids_decode features STIMULI_DIR OUT.h5'.",
            f"The features file {path} cannot be opened as HDF5 ({{err}}). It is corrupt "
            "or partly written: recompute it with 'bids_decode features' or copy it again.")
        try:
            self.names = _decode(self._h5["stimulus_name"][()])
            layers = self._h5["layers"]
            self.layers = _forward_order(list(layers.keys()), self._h5.attrs.get("layers"))
        except (KeyError, OSError) as err:
            self.close()
            raise DataError(
                f"The features file {self.path} lacks '/stimulus_name' or '/layers' ({err}); "
                "see docs/formats.md for the expected layout."
            ) from err
        if "complete" in self._h5.attrs and not bool(self._h5.attrs["complete"]):
            self.close()
            raise DataError(
                f"The features file {self.path} is marked incomplete (an extraction was "
                "interrupted). Rerun 'bids_decode features' to finish it."
            )
        for layer in self.layers:
            shape = self._h5["layers"][layer].shape
            if len(shape) < 2 or shape[0] != len(self.names):
                n = len(self.names)
                self.close()
                raise DataError(
                    f"Layer '{layer}' of {self.path} has shape {shape}; expected "
                    f"({n}, *unit_shape) to match the {n} stimulus names."
                )

    @property
    def attrs(self) -> dict:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._h5.attrs.items()}

    def unit_shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self._h5["layers"][layer].shape[1:])

    def category_names(self) -> list[str] | None:
        """``/category_name`` when the file also has ``/category_layers``, else None."""
        if "category_name" in self._h5 and "category_layers" in self._h5:
            return _decode(self._h5["category_name"][()])
        return None

    def target_unit(self, layer: str, flat_unit: int, targets) -> np.ndarray:
        """True values of one unit for each test label.

        Parameters
        ----------
        layer : str
        flat_unit : int
            Flattened (C-order) unit index.
        targets : TestTargets
            From :meth:`targets`.

        Returns
        -------
        ndarray of shape (n_labels,), float64
        """
        source, rows = targets
        group = GROUPS[source]
        idx = np.unravel_index(int(flat_unit), self.unit_shape(layer))
        column = np.asarray(self._h5[group][layer][(slice(None), *idx)], dtype=np.float64)
        return np.array([column[r].mean() for r in rows])

    def iter_unit_chunks(
        self, layer: str, rows: np.ndarray, max_units: int,
        unit_range: tuple[int, int] | None = None, source: str = IMAGES,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """:meth:`FeatureStore.iter_unit_chunks` from ``/layers`` (``source`` IMAGES) or
        ``/category_layers`` (CATEGORIES).

        At least one slice of axis 1 is read from disk at a time, then split; slices that do
        not fill a chunk wait for the next, so chunks start at ``lo + i * max_units`` whatever
        the layer's shape.
        """
        group = GROUPS[source]
        ds = self._h5[group][layer]
        n_units = self.n_units(layer)
        if tuple(ds.shape[1:]) != self.unit_shape(layer):
            raise DataError(f"/{group}/{layer} of {self.path} has unit shape {ds.shape[1:]}; "
                            f"/layers/{layer} has {self.unit_shape(layer)}.")
        lo, hi = unit_range if unit_range is not None else (0, n_units)
        per_slice = n_units // ds.shape[1]  # units per index of axis 1
        max_units = max(1, int(max_units))
        step = max(1, max_units // per_slice)
        a = lo // per_slice
        carry, start = None, lo  # values of units [start, s0) not yet yielded
        while a * per_slice < hi:
            b = min(ds.shape[1], a + step)
            block = ds[:, a:b].reshape(ds.shape[0], -1)
            # the block covers flattened units [a*per_slice, b*per_slice)
            s0 = max(lo, a * per_slice)
            s1 = min(hi, b * per_slice)
            block = block[:, s0 - a * per_slice : s1 - a * per_slice]
            sel = np.asarray(block[rows], dtype=np.float64)
            if carry is not None:
                sel = np.concatenate([carry, sel], axis=1)
            last = b * per_slice >= hi
            n_out = sel.shape[1] if last else sel.shape[1] // max_units * max_units
            for c in range(0, n_out, max_units):
                e = min(c + max_units, n_out)
                yield start + c, start + e, sel[:, c:e]
            carry = sel[:, n_out:] if n_out < sel.shape[1] else None
            start += n_out
            a = b
