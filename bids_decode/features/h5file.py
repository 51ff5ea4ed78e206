"""The stimulus-features HDF5 file (format: docs/formats.md): its reader and its writer.

:class:`FeatureFile` reads it: the HDF5 implementation of the
:class:`~bids_decode.features.store.FeatureStore` interface. :class:`FeatureFileWriter` writes
it, a batch of images at a time (for :func:`bids_decode.features.extract.extract_features`),
with the chunk layout of :func:`chunk_shape`; :func:`reuse_mismatch` says whether an existing
file stands for the one about to be written.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from bids_decode.errors import DataError
from bids_decode.features.store import CATEGORIES, IMAGES, FeatureStore
from bids_decode.utils.h5 import H5Reader

__all__ = ["FeatureFile", "FeatureFileWriter"]

LOGGER = logging.getLogger(__name__)

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

    def read_units(self, layer: str, rows: np.ndarray, flat: np.ndarray,
                   source: str = IMAGES, max_values: int = 1 << 26) -> np.ndarray:
        """The values of some units of a layer (a unit sample, :mod:`bids_decode.units`).

        Whole slices of axis 1 are read (at most ``max_values`` values at a time) and the
        units picked from them, so a sample of a large convolutional layer never loads the
        layer.

        Parameters
        ----------
        layer : str
        rows : ndarray of shape (n_rows,)
            Rows of ``source`` to return, in this order (repeats allowed).
        flat : ndarray of shape (n_sel,), int
            Flat (C-order) unit indices, increasing.
        source : {IMAGES, CATEGORIES}

        Returns
        -------
        ndarray of shape (n_rows, n_sel), float64
        """
        ds = self._h5[GROUPS[source]][layer]
        flat = np.asarray(flat, dtype=np.int64)
        per_slice = self.n_units(layer) // ds.shape[1]
        axis1 = flat // per_slice
        slices = np.unique(axis1)
        step = max(1, max_values // max(1, ds.shape[0] * per_slice))
        out = np.empty((len(rows), flat.size), dtype=np.float64)
        for i in range(0, slices.size, step):
            chosen = slices[i:i + step]
            block = ds[:, list(chosen)].reshape(ds.shape[0], chosen.size * per_slice)
            mine = np.isin(axis1, chosen)
            cols = np.searchsorted(chosen, axis1[mine]) * per_slice + flat[mine] % per_slice
            out[:, mine] = np.asarray(block[rows][:, cols], dtype=np.float64)
        return out

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


# --------------------------------------------------------------------------- writing
MAX_CHUNK_BYTES = 8 << 20
"""Upper bound of one HDF5 chunk: whole images (rows) of one layer while one image fits,
else one image and a slab of the layer's first unit axis."""

REUSE_KEYS = ("network", "weights", "seed", "weights_sha256", "preprocessing", "layers",
              "stimuli_sha256")
"""Attributes that must be equal for an existing file to be reused (versions need not);
``preprocessing`` (JSON) differs between the ``preprocessing_choice`` values."""


def network_attribute(path) -> str | None:
    """The ``network`` attribute of a features file (None: no file given, no attribute, or a
    file HDF5 cannot open, which :class:`FeatureFile` then reports with its fix)."""
    if not path:
        return None
    try:
        with h5py.File(path, "r") as f:
            name = f.attrs.get("network")
    except OSError:
        return None
    name = name.decode() if isinstance(name, bytes) else name
    return str(name).strip() or None if name is not None else None


def chunk_rows(batch_size: int, n_images: int, row_bytes: int) -> int:
    """Images per HDF5 chunk: a divisor of ``batch_size`` (batches write whole chunks),
    at most ``n_images``, and a chunk of at most :data:`MAX_CHUNK_BYTES` where one image
    fits (an image larger than that is one chunk)."""
    limit = max(1, min(batch_size, n_images, MAX_CHUNK_BYTES // max(row_bytes, 1)))
    return max(d for d in range(1, limit + 1) if batch_size % d == 0)


def chunk_shape(batch_size: int, n_images: int, unit_shape: tuple[int, ...]) -> tuple:
    """HDF5 chunk of a layer: :func:`chunk_rows` images, and where one image's layer is
    larger than :data:`MAX_CHUNK_BYTES`, one image and a slab of the first unit axis (so big
    layers are written, and read back by unit chunks, slab by slab).

    Returns
    -------
    tuple of int
        ``(rows, *unit_chunk)``, of length ``1 + len(unit_shape)``.
    """
    row_bytes = 4 * math.prod(unit_shape)
    rows = chunk_rows(batch_size, n_images, row_bytes)
    if row_bytes <= MAX_CHUNK_BYTES or not unit_shape:
        return (rows, *unit_shape)
    per_index = 4 * math.prod(unit_shape[1:])  # bytes of one index of the first unit axis
    first = max(1, min(unit_shape[0], MAX_CHUNK_BYTES // max(per_index, 1)))
    return (1, first, *unit_shape[1:])


def reuse_mismatch(path: Path, attrs: dict, names: list[str]) -> str | None:
    """Why the features file ``path`` is not the one :class:`FeatureFileWriter` would write
    with ``attrs`` and ``names`` (None when it is: complete, and :data:`REUSE_KEYS` and the
    stimulus names equal)."""
    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return "it is incomplete (complete is not True)"
            for key in REUSE_KEYS:
                have = f.attrs.get(key)
                have = have.item() if isinstance(have, np.generic) else have
                if have != attrs.get(key):
                    return f"{key} differs (file: {have!r}, now: {attrs.get(key)!r})"
            stored = [s.decode() if isinstance(s, bytes) else s for s in f["stimulus_name"][()]]
            if stored != list(names):
                return "its stimulus names differ"
    except (OSError, KeyError) as err:
        return f"it cannot be read as a features file ({err})"
    return None


class FeatureFileWriter:
    """Writes a features file a batch of images at a time; use it with ``with``.

    The file gets ``attrs``, ``complete`` False and ``/stimulus_name`` at once; each layer's
    float32 dataset ``/layers/<layer>`` of shape (n_images, *unit_shape) is created at its
    first batch, chunked by :func:`chunk_shape`; :meth:`finish` sets ``complete``. Write to a
    temporary path and rename it when finished, so that no half-written file stands at the
    final path.

    Parameters
    ----------
    path : Path
        The file to create (replaced if it exists).
    names : list of str, length n_images
        Stimulus names, in row order.
    attrs : dict
        File attributes (network, weights, preprocessing, layers ...; docs/formats.md).
    batch_size : int
        Images per :meth:`write` call but the last (a chunk holds a divisor of it).
    modules : dict of str to str
        Layer name -> the node or module whose output it is (the dataset's ``module``
        attribute).
    to_numpy : callable (values) -> ndarray of float32
        Brings a slab of a layer's values into memory as a float32 array (a tensor from any
        device).
    """

    def __init__(self, path: Path, names: list[str], attrs: dict, batch_size: int,
                 modules: dict[str, str], to_numpy: Callable[[object], np.ndarray]) -> None:
        self.path, self.n_images, self.batch_size = Path(path), len(names), batch_size
        self.modules, self.to_numpy = modules, to_numpy
        self._h5 = h5py.File(self.path, "w")
        self._h5.attrs.update(attrs)
        self._h5.attrs["complete"] = False
        self._h5.create_dataset("stimulus_name", data=names, dtype=h5py.string_dtype("utf-8"))
        self._group = self._h5.create_group("layers")
        self._datasets: dict[str, h5py.Dataset] = {}

    def write(self, layer: str, start: int, values) -> None:
        """Write ``values`` into rows ``start:start + len(values)`` of ``layer``.

        A layer larger than :data:`MAX_CHUNK_BYTES` per image is brought into memory (and
        written) one slab of chunks of its first unit axis at a time.

        Parameters
        ----------
        layer : str
        start : int
            Row of the batch's first image.
        values : tensor or array of shape (n_batch, *unit_shape), at least 2-D
        """
        if layer not in self._datasets:
            shape = tuple(values.shape[1:])
            self._datasets[layer] = self._group.create_dataset(
                layer, shape=(self.n_images, *shape), dtype="float32",
                chunks=chunk_shape(self.batch_size, self.n_images, shape))
            self._datasets[layer].attrs["module"] = self.modules[layer]
        ds = self._datasets[layer]
        stop = start + values.shape[0]
        step = ds.chunks[1] if len(ds.chunks) > 1 else 1
        if values.ndim == 2 or step >= values.shape[1]:
            ds[start:stop] = self.to_numpy(values)
            return
        for a in range(0, values.shape[1], step):  # one slab of chunks at a time
            ds[start:stop, a:a + step] = self.to_numpy(values[:, a:a + step])

    def finish(self) -> None:
        """Mark the file complete (every row of every layer is written)."""
        self._h5.attrs["complete"] = True

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> FeatureFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
