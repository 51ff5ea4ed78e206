"""Reading the stimulus-features HDF5 file (format: docs/formats.md), in unit chunks."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import h5py
import numpy as np

from .errors import DataError, MissingInputError, UsageError


def stimulus_key(name: str) -> str:
    """Reduce a stimulus name or path to its file name without extension."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if dot and ext and ext.isalpha() and len(ext) <= 5:
        return stem
    return base


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


class H5Reader:
    """A read-only HDF5 file held as ``self._h5``, closed by :meth:`close` or a ``with``."""

    def _open(self, path, missing: str, unreadable: str) -> h5py.File:
        """Open ``path``: MissingInputError(``missing``) if it is not a file, DataError
        (``unreadable``, its ``{err}`` replaced by the error) if HDF5 cannot read it."""
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(missing)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(unreadable.replace("{err}", str(err))) from err
        return self._h5

    def close(self):
        try:
            self._h5.close()
        except Exception:  # noqa: BLE001 - closing an already-broken handle
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FeatureFile(H5Reader):
    """A read-only view of a features file.

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
        self._index = {}
        self._key_index = {}
        for i, name in enumerate(self.names):
            self._index.setdefault(name, i)
            self._key_index.setdefault(stimulus_key(name), i)

    @property
    def attrs(self) -> dict:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._h5.attrs.items()}

    def check_layers(self, layers: Sequence[str] | None) -> list[str]:
        """Return the requested layers (all when empty), refusing unknown names."""
        if not layers:
            return list(self.layers)
        unknown = [lay for lay in layers if lay not in self.layers]
        if unknown:
            raise UsageError(
                f"Layer(s) {unknown} are not in the features file {self.path}; it has "
                f"{self.layers}. Fix --layers."
            )
        return list(layers)

    def unit_shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self._h5["layers"][layer].shape[1:])

    def n_units(self, layer: str) -> int:
        return int(math.prod(self.unit_shape(layer)))

    def rows_for(self, labels: Sequence[str], *, what: str = "stimuli") -> np.ndarray:
        """Row index of each label (exact name, else file name without extension).

        Raises
        ------
        DataError
            When some labels have no row, listing a few of them.
        """
        rows, missing = [], []
        for lab in labels:
            i = self._index.get(lab)
            if i is None:
                i = self._key_index.get(stimulus_key(lab))
            if i is None:
                missing.append(lab)
            rows.append(-1 if i is None else i)
        if missing:
            uniq = sorted(set(missing))
            raise DataError(
                f"{len(uniq)} {what} named in the events have no features in {self.path}, e.g. "
                f"{uniq[:5]} (the file has e.g. {self.names[:3]}). Compute features for every "
                "stimulus image, or choose the right column with --stimulus-column."
            )
        return np.asarray(rows, dtype=np.int64)

    def test_targets(self, labels: Sequence[str]) -> tuple[str, list[np.ndarray]]:
        """Where the true features of each test label come from.

        Returns
        -------
        group : {"layers", "category_layers"}
            HDF5 group to read.
        rows : list of ndarray
            For each label, the rows averaged to make its target: its own image; its row of
            ``/category_layers`` (imagery, when the file has category features); or every
            image of that category (image names ``<category>_<n>``).
        """
        found = [self._index.get(lab, self._key_index.get(stimulus_key(lab))) for lab in labels]
        if all(i is not None for i in found):
            return "layers", [np.array([i]) for i in found]
        if "category_name" in self._h5 and "category_layers" in self._h5:
            cats = _decode(self._h5["category_name"][()])
            index = {c: i for i, c in enumerate(cats)}
            if all(lab in index for lab in labels):
                return "category_layers", [np.array([index[lab]]) for lab in labels]
        groups, missing = [], []
        keys = [stimulus_key(n) for n in self.names]
        for lab, i in zip(labels, found):
            if i is not None:  # an image of the file: its own row
                groups.append(np.array([i]))
                continue
            rows = np.array([i for i, k in enumerate(keys) if k.startswith(f"{lab}_")])
            if rows.size == 0:
                missing.append(lab)
            groups.append(rows)
        if missing:
            shown = missing if len(missing) <= 20 else missing[:20] + ["..."]
            raise DataError(
                f"{len(missing)} of the {len(labels)} test labels have no features in "
                f"{self.path}: {shown} (no image of that name, no /category_layers entry, and "
                "no image named '<label>_<n>'). Add the features of these images (or "
                "category-averaged features: /category_name + /category_layers)."
            )
        return "layers", groups

    def target_unit(self, layer: str, flat_unit: int, targets) -> np.ndarray:
        """True values of one unit for each test label (from :meth:`test_targets`).

        Returns
        -------
        ndarray of shape (n_labels,), float64
        """
        group, rows = targets
        idx = np.unravel_index(int(flat_unit), self.unit_shape(layer))
        column = np.asarray(self._h5[group][layer][(slice(None), *idx)], dtype=np.float64)
        return np.array([column[r].mean() for r in rows])

    def iter_unit_chunks(
        self, layer: str, rows: np.ndarray, max_units: int,
        unit_range: tuple[int, int] | None = None, group: str = "layers",
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Stream a layer in chunks of flattened units.

        Parameters
        ----------
        layer : str
        rows : ndarray of shape (n_rows,)
            Feature rows to return, in this order (repeats allowed).
        max_units : int
            Units of every chunk but the last, which may be smaller (at least one slice of
            axis 1 is read from disk, then split; slices that do not fill a chunk wait for the
            next), so chunks start at ``start + i * max_units`` whatever the layer's shape.
        unit_range : (start, stop), optional
            Flattened unit range to read (for shards); default all units.
        group : str
            ``layers`` or ``category_layers``.

        Yields
        ------
        start, stop : int
            Flattened unit range of the chunk.
        values : ndarray of shape (n_rows, stop - start), float64
        """
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
