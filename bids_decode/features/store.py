"""Where the true features come from: the :class:`FeatureStore` interface.

A store holds the features of a set of stimulus images (and, optionally, category-averaged
features, for imagery) and streams a layer in chunks of flattened units. The participant level
asks it three things: the rows of the training stimuli (:meth:`FeatureStore.rows_for`), where
the target of each test label comes from (:meth:`FeatureStore.targets`), and the training and
test values of a range of units (:meth:`FeatureStore.iter_train_test_chunks`). How the values
are stored stays inside the store: the HDF5 features file
(:class:`bids_decode.features.h5file.FeatureFile`, docs/formats.md) is today's implementation.
A new store is one subclass implementing the four abstract members.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from bids_decode.errors import DataError, UsageError

LOGGER = logging.getLogger(__name__)

#: :attr:`TestTargets.source` of targets read from the image features
IMAGES = "images"
#: :attr:`TestTargets.source` of targets read from the category-averaged features
CATEGORIES = "categories"


def stimulus_key(name: str) -> str:
    """Reduce a stimulus name or path to its file name without extension."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if dot and ext and ext.isalpha() and len(ext) <= 5:
        return stem
    return base


class TestTargets(NamedTuple):
    """Where the true features of each test label come from (:meth:`FeatureStore.targets`).

    Attributes
    ----------
    source : {IMAGES, CATEGORIES}
        The features the rows index: the images', or the category-averaged ones.
    rows : list of ndarray
        For each label, the rows averaged to make its target (one row, or every image of a
        category).
    """

    __test__ = False  # not a pytest test class

    source: str
    rows: list

    @property
    def n_rows(self) -> int:
        """Feature rows read for the targets (the sum of the labels' row counts)."""
        return int(sum(len(r) for r in self.rows))


class FeatureStore(ABC):
    """Features of stimulus images, read in chunks of flattened units.

    Attributes
    ----------
    path : Path
        Where the features are (named in messages, sidecars and work-file fingerprints).
    names : list of str
        Stimulus name of each image row, shape (n_images,).
    layers : list of str
        Layers, in the network's forward order.
    """

    path: Path
    names: list[str]
    layers: list[str]

    @abstractmethod
    def unit_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of one stimulus's values of ``layer`` (e.g. (channels, height, width))."""

    @abstractmethod
    def category_names(self) -> list[str] | None:
        """Category of each row of the category-averaged features; None without them."""

    @abstractmethod
    def iter_unit_chunks(
        self, layer: str, rows: np.ndarray, max_units: int,
        unit_range: tuple[int, int] | None = None, source: str = IMAGES,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Stream the values of ``rows`` in chunks of at most ``max_units`` flattened units.

        Parameters
        ----------
        layer : str
        rows : ndarray of shape (n_rows,)
            Rows of ``source`` to return, in this order (repeats allowed).
        max_units : int
            Units of every chunk but the last; chunks start at ``lo + i * max_units``.
        unit_range : (lo, hi), optional
            Flattened unit range to read; default all units.
        source : {IMAGES, CATEGORIES}

        Yields
        ------
        start, stop : int
            Flattened unit range of the chunk.
        values : ndarray of shape (n_rows, stop - start), float64
        """

    def n_units(self, layer: str) -> int:
        """Flattened units of ``layer``."""
        return int(math.prod(self.unit_shape(layer)))

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

    @cached_property
    def _lookup(self) -> tuple[dict[str, int], dict[str, int]]:
        """First row of each name, and of each name without folder and extension."""
        index: dict[str, int] = {}
        key_index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            index.setdefault(name, i)
            key_index.setdefault(stimulus_key(name), i)
        return index, key_index

    def _find(self, label: str) -> int | None:
        """Row of a label: exact name, else file name without extension (None: none)."""
        index, key_index = self._lookup
        i = index.get(label)
        return key_index.get(stimulus_key(label)) if i is None else i

    def rows_for(self, labels: Sequence[str], *, what: str = "stimuli") -> np.ndarray:
        """Row index of each label (exact name, else file name without extension).

        Returns
        -------
        ndarray of shape (n_labels,), int64

        Raises
        ------
        DataError
            When some labels have no row, listing a few of them.
        """
        found = [self._find(lab) for lab in labels]
        missing = [lab for lab, i in zip(labels, found) if i is None]
        if missing:
            uniq = sorted(set(missing))
            raise DataError(
                f"{len(uniq)} {what} named in the events have no features in {self.path}, e.g. "
                f"{uniq[:5]} (the file has e.g. {self.names[:3]}). Compute features for every "
                "stimulus image, or choose the right column with --stimulus-column."
            )
        return np.asarray(found, dtype=np.int64)

    def targets(self, labels: Sequence[str]) -> TestTargets:
        """Where the true features of each test label come from.

        Each label is, in this order of preference: an image of the store (its own row);
        for every label at once, a category of the category-averaged features (imagery); or
        the category of every image named ``<label>_<n>`` (their rows, averaged).

        Raises
        ------
        DataError
            When some labels match none of these, listing them.
        """
        found = [self._find(lab) for lab in labels]
        if all(i is not None for i in found):
            return TestTargets(IMAGES, [np.array([i]) for i in found])
        cats = self.category_names()
        if cats is not None:
            index = {c: i for i, c in enumerate(cats)}
            if all(lab in index for lab in labels):
                return TestTargets(CATEGORIES, [np.array([index[lab]]) for lab in labels])
        groups, missing = [], []
        keys = [stimulus_key(n) for n in self.names]
        for lab, i in zip(labels, found):
            if i is not None:  # an image of the store: its own row
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
        return TestTargets(IMAGES, groups)

    def image_rows(self, labels: Sequence[str]) -> np.ndarray | None:
        """The image row of each label when every label is one image, else None.

        Returns
        -------
        ndarray of shape (n_labels,), int64, or None
            None when some label names a category (several images, or category features).
        """
        found = self.targets(labels)
        if found.source != IMAGES or any(len(r) != 1 for r in found.rows):
            return None
        return np.array([r[0] for r in found.rows], dtype=np.int64)

    def iter_train_test_chunks(
        self, layer: str, train_rows: np.ndarray, targets: TestTargets, max_units: int,
        unit_range: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Stream the training values and the test targets of ``layer`` in unit chunks.

        Every value is computed per unit (a label's target is the contiguous sum of its rows,
        then divided by their count), so a unit gets the same bits in any chunking.

        Parameters
        ----------
        layer : str
        train_rows : ndarray of shape (n_train,)
            Image rows of the training samples (:meth:`rows_for`).
        targets : TestTargets
            From :meth:`targets`.
        max_units : int
            Units per chunk (:meth:`iter_unit_chunks`).
        unit_range : (lo, hi), optional

        Yields
        ------
        start, stop : int
        Y_train : ndarray of shape (n_train, stop - start), float64
        Y_test : ndarray of shape (n_labels, stop - start), float64
            Each label's target, its rows averaged.
        """
        if targets.source != IMAGES:
            yield from self._iter_separate(layer, train_rows, targets, max_units, unit_range)
            return
        n_train = len(train_rows)
        sizes = np.array([len(g) for g in targets.rows])
        rows = np.concatenate([train_rows, *targets.rows])
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        for s, e, Y in self.iter_unit_chunks(layer, rows, max_units, unit_range):
            # per unit, a contiguous sum over each label's rows (the same bits in any chunk)
            Yt = np.ascontiguousarray(Y[n_train:].T)
            Yte = np.add.reduceat(Yt, starts, axis=1).T
            yield s, e, Y[:n_train], Yte / sizes[:, None]

    def _iter_separate(self, layer, train_rows, targets, max_units, unit_range):
        """:meth:`iter_train_test_chunks` with targets from another source (one row each)."""
        for (s, e, Ytr), (_, _, Yte) in zip(
                self.iter_unit_chunks(layer, train_rows, max_units, unit_range),
                self.iter_unit_chunks(layer, np.concatenate(targets.rows), max_units,
                                      unit_range, source=targets.source)):
            yield s, e, Ytr, Yte
