"""Decoding accuracy: profile (per-unit) and pattern (per-image) correlation, identification.

Everything is float64. Pattern statistics accumulate additively over unit chunks (and shards),
so a layer never has to sit in memory whole, and exactly, so the result does not depend on how
the units were split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bids_decode.utils.grid import UNIT_BLOCK


def profile_correlation(pred, true) -> np.ndarray:
    """Pearson r between predicted and true values of each unit over the test images.

    Each unit's r is computed from its own two columns only (contiguous reductions over the
    images), so it is the same bits however the units are chunked.

    Parameters
    ----------
    pred, true : ndarray of shape (n_images, n_units)

    Returns
    -------
    ndarray of shape (n_units,), float64
        NaN where either column is constant (r is undefined).
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape} and "
                         f"{true.shape}.")
    p = np.ascontiguousarray(pred.T)  # (n_units, n_images)
    t = np.ascontiguousarray(true.T)
    pc = p - p.mean(axis=1)[:, None]
    tc = t - t.mean(axis=1)[:, None]
    num = (pc * tc).sum(axis=1)
    den = np.sqrt((pc**2).sum(axis=1) * (tc**2).sum(axis=1))
    tiny = np.finfo(np.float64).tiny
    scale = np.sqrt((p**2).sum(axis=1) * (t**2).sum(axis=1)) * 1e-12
    ok = den > np.maximum(scale, tiny)
    r = np.full(p.shape[0], np.nan)
    r[ok] = num[ok] / den[ok]
    return np.clip(r, -1.0, 1.0, out=r, where=ok)


#: Scales (powers of two) of the three int64 limbs of an exact sum: bits 2^24..2^86,
#: 2^-8..2^23 and 2^-40..2^-9 of each addend (what lies below 2^-40 is dropped).
_LIMB_EXPONENTS = (24, -8, -40)


def _to_limbs(x) -> np.ndarray:
    """Split float64 values into integer limbs whose integer sums are exact.

    ``x ~= sum_k limbs[k] * 2**e_k``, truncated below ``2**-40``; every step is exact in
    float64 (scaling by powers of two, truncation, and the subtraction of a value's own high
    bits), so the limbs are a deterministic function of ``x``.

    Parameters
    ----------
    x : ndarray of float64, any shape, ``|x| < 2**86``

    Returns
    -------
    ndarray of shape (3, *x.shape), int64
    """
    r = np.asarray(x, dtype=np.float64)
    out = np.empty((len(_LIMB_EXPONENTS), *r.shape), dtype=np.int64)
    for i, e in enumerate(_LIMB_EXPONENTS):
        q = np.trunc(r * 2.0**-e)
        out[i] = q
        r = r - q * 2.0**e
    return out


def _from_limbs(limbs) -> np.ndarray:
    """The float64 value of integer limb sums (see :func:`_to_limbs`)."""
    limbs = np.asarray(limbs)
    total = np.zeros(limbs.shape[1:])
    for i in reversed(range(len(_LIMB_EXPONENTS))):  # smallest first
        total = total + limbs[i].astype(np.float64) * 2.0**_LIMB_EXPONENTS[i]
    return total


class PatternAccumulator:
    """Sums over units that give image-by-image correlations of decoded and true patterns.

    ``C[i, j]`` = Pearson r over units between decoded image ``i`` and true image ``j``.

    The sums are exact and order-independent, so a layer gives the same bits however its units
    are chunked, sharded or merged: units are taken in blocks of :data:`UNIT_BLOCK` counted
    from the first unit given (a shard starts on that grid); each block's sums are computed in
    float64 from that block alone, split into integer limbs (:func:`_to_limbs`) and added as
    integers. Columns that do not fill a block wait for the next :meth:`update`.

    Parameters
    ----------
    n_images : int
    """

    FIELDS = ("n", "sp", "st", "spp", "stt", "cross")

    def __init__(self, n_images: int):
        self.n = 0
        self._limbs = {
            f: np.zeros((len(_LIMB_EXPONENTS), n_images) if f != "cross"
                        else (len(_LIMB_EXPONENTS), n_images, n_images), dtype=np.int64)
            for f in self.FIELDS[1:]}
        self._pending = None  # (pred, true) columns short of a block

    def update(self, pred, true) -> None:
        """Add the next units.

        Parameters
        ----------
        pred, true : ndarray of shape (n_images, n_units_chunk)
        """
        pred = np.asarray(pred, dtype=np.float64)
        true = np.asarray(true, dtype=np.float64)
        if self._pending is not None:
            pred = np.concatenate([self._pending[0], pred], axis=1)
            true = np.concatenate([self._pending[1], true], axis=1)
            self._pending = None
        n_full = pred.shape[1] // UNIT_BLOCK * UNIT_BLOCK
        for s in range(0, n_full, UNIT_BLOCK):
            self._add_block(pred[:, s:s + UNIT_BLOCK], true[:, s:s + UNIT_BLOCK])
        if n_full < pred.shape[1]:
            self._pending = (pred[:, n_full:], true[:, n_full:])

    def _add_block(self, pred, true) -> None:
        p = np.ascontiguousarray(pred)
        t = np.ascontiguousarray(true)
        self.n += p.shape[1]
        sums = {"sp": p.sum(axis=1), "st": t.sum(axis=1), "spp": (p * p).sum(axis=1),
                "stt": (t * t).sum(axis=1), "cross": p @ t.T}
        for f, v in sums.items():
            self._limbs[f] += _to_limbs(v)

    def _flush(self) -> None:
        """Add the last, incomplete block (the end of a layer or of the last shard)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._add_block(*pending)

    def merge(self, other: PatternAccumulator) -> None:
        """Add another accumulator's sums (exact: any merge order gives the same bits)."""
        self._flush()
        other._flush()
        self.n += other.n
        for f in self._limbs:
            self._limbs[f] += other._limbs[f]

    def state(self) -> dict:
        """The sums as arrays (int64 limbs), for a work file; see :meth:`from_state`."""
        self._flush()
        return {"n": np.asarray(self.n), **{f: v.copy() for f, v in self._limbs.items()}}

    @classmethod
    def from_state(cls, state: dict) -> PatternAccumulator:
        acc = cls(np.shape(state["sp"])[1])
        acc.n = int(state["n"])
        for f in acc._limbs:
            acc._limbs[f] = np.array(state[f], dtype=np.int64)
        return acc

    def sums(self) -> dict:
        """The float64 sums: ``sp``, ``st``, ``spp``, ``stt`` (n_images,), ``cross``
        (n_images, n_images)."""
        self._flush()
        return {f: _from_limbs(v) for f, v in self._limbs.items()}

    def correlation_matrix(self) -> np.ndarray:
        """``(n_images, n_images)`` Pearson r of decoded image i and true image j."""
        s = self.sums()  # flushes the last block first
        n = self.n
        cov = s["cross"] - np.outer(s["sp"], s["st"]) / n
        vp = s["spp"] - s["sp"]**2 / n
        vt = s["stt"] - s["st"]**2 / n
        den = np.sqrt(np.outer(np.maximum(vp, 0), np.maximum(vt, 0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(den > 0, cov / den, np.nan)
        return np.clip(c, -1, 1)


def pattern_correlation(corr: np.ndarray) -> np.ndarray:
    """Per-image correlation of decoded and true pattern (diagonal of ``corr``)."""
    return np.diag(corr).copy()


def pairwise_identification(corr: np.ndarray) -> np.ndarray:
    """Per-image pairwise identification accuracy.

    For decoded image ``i``, the fraction of other images ``j`` whose true pattern is less
    correlated with it than its own true pattern (ties count one half).

    Parameters
    ----------
    corr : ndarray of shape (n_images, n_images)

    Returns
    -------
    ndarray of shape (n_images,)
    """
    n = corr.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    diag = np.diag(corr)[:, None]
    off = ~np.eye(n, dtype=bool)
    wins = (diag > corr) & off
    ties = (diag == corr) & off
    acc = (wins.sum(axis=1) + 0.5 * ties.sum(axis=1)) / (n - 1)
    acc[~np.isfinite(np.diag(corr))] = np.nan
    return acc


def rank_units(accuracy) -> np.ndarray:
    """Rank of each unit by accuracy, 1 = best; ties share the best rank; NaN units rank last.

    Parameters
    ----------
    accuracy : ndarray of shape (n_units,)
        Profile correlation of each unit (NaN where undefined).

    Returns
    -------
    ndarray of shape (n_units,), int64
    """
    from scipy.stats import rankdata

    acc = np.asarray(accuracy, dtype=np.float64)
    last = int(np.isfinite(acc).sum()) + 1
    return on_finite(lambda a: rankdata(-a, method="min"), acc, last, np.int64)


def on_finite(fn, x, fill, dtype=np.float64) -> np.ndarray:
    """``fn`` applied to the finite entries of ``x`` together; ``fill`` elsewhere.

    Parameters
    ----------
    fn : callable, ndarray of shape (n_finite,) -> ndarray of shape (n_finite,)
    x : ndarray of shape (n,)
    fill : scalar
    dtype : numpy dtype of the result

    Returns
    -------
    ndarray of shape (n,)
    """
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    out = np.full(x.shape, fill, dtype=dtype)
    out[ok] = fn(x[ok])
    return out


# --------------------------------------------------------------------- the metric interface

@dataclass(frozen=True)
class Output:
    """A dataset of each layer group of ``*_decoding.h5``.

    Attributes
    ----------
    description : str
    per : {"unit", "image"}
        Last axis: the layer's units (stored in the layer's unit shape) or the test images.
    """

    description: str
    per: str = "unit"


@dataclass
class Result:
    """What a metric gives for one layer.

    Attributes
    ----------
    datasets : dict name -> ndarray
        Unit datasets flat over units (last axis ``n_units``), image datasets ``(n_images,)``.
    columns : dict name -> float
        Summary columns of ``*_decoding.tsv``.
    attrs : dict name -> value
        Attributes of the layer group.
    """

    datasets: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


class Metric:
    """A score streamed over unit chunks: ``update`` / ``merge`` / ``finalize``.

    A metric covers units ``lo:hi`` of a layer (a shard, or the whole layer). :meth:`update`
    adds a chunk of units; :meth:`merge` folds in another metric of the same kind whose units
    lie inside this one's (any order gives the same bits); :meth:`save` / :meth:`load` keep
    the state in a work file between the decoding jobs; :meth:`finalize` gives the layer's
    datasets, summary columns and attributes.

    Subclasses declare ``DATASETS`` (name -> :class:`Output`), ``COLUMNS`` (summary column
    -> description) and ``ATTRS`` (the summary columns also stored as layer attributes);
    :mod:`bids_decode.outputs.schema` builds the output schema from these declarations. A new score
    is one subclass (declarations, :meth:`build`, :meth:`update`, :meth:`merge`,
    :meth:`spawn`, :meth:`save`, ``_read``, :meth:`finalize`) listed in
    :data:`bids_decode.outputs.schema.METRICS`, whose order is the order of finalization.

    Parameters
    ----------
    lo, hi : int
        Units of the layer this metric covers.
    """

    DATASETS: dict[str, Output] = {}
    COLUMNS: dict[str, str] = {}
    ATTRS: tuple[str, ...] = ()

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = int(lo), int(hi)

    @classmethod
    def build(cls, lo: int, hi: int, *, n_images: int, config, halves: bool,
              **settings) -> Metric:
        """The participant level's instance for units ``lo:hi`` (see
        :func:`bids_decode.participant.layer_metrics`).

        Parameters
        ----------
        n_images : int
            Test images.
        config : RunConfig
        halves : bool
            Whether split-half decoded values will be given to :meth:`update`.
        settings
            ``device``, ``n_jobs``, ``mem_bytes`` for metrics that compute heavily.
        """
        raise NotImplementedError

    def update(self, start: int, stop: int, pred, true, *, constant=None,
               halves=None) -> None:
        """Add units ``start:stop`` of the layer.

        Parameters
        ----------
        start, stop : int
            Layer positions of the chunk (inside ``lo:hi``).
        pred, true : ndarray of shape (n_images, stop - start), float64
            Decoded and true values, z-scored with the same unit statistics.
        constant : ndarray of shape (stop - start,), bool, optional
            Units constant over the reference samples.
        halves : ndarray of shape (2, n_images, stop - start), optional
            Decoded values of the odd and of the even presentations.
        """
        raise NotImplementedError

    def merge(self, other: Metric) -> None:
        raise NotImplementedError

    def spawn(self, lo: int, hi: int) -> Metric:
        """An empty metric of the same kind and settings over units ``lo:hi``."""
        raise NotImplementedError

    def save(self, work) -> None:
        """Store the state into an open work file (h5py group)."""
        raise NotImplementedError

    def _read(self, work) -> None:
        raise NotImplementedError

    def load(self, work, lo: int, hi: int) -> None:
        """Merge the state that :meth:`save` stored for units ``lo:hi``."""
        part = self.spawn(lo, hi)
        part._read(work)
        self.merge(part)

    def finalize(self, done: dict) -> Result:
        """The layer's outputs; ``done`` holds the datasets of the metrics finalized before."""
        raise NotImplementedError

    def _local(self, start: int, stop: int) -> slice:
        if not self.lo <= start <= stop <= self.hi:
            raise ValueError(f"units {start}:{stop} lie outside {self.lo}:{self.hi}")
        return slice(start - self.lo, stop - self.lo)


def nanstat(fn, a) -> float:
    """``fn`` over a float64 copy of ``a``; NaN when no entry is finite (no warning)."""
    a = np.asarray(a, dtype=np.float64)
    return float(fn(a)) if np.isfinite(a).any() else float("nan")


class ProfileCorrelation(Metric):
    """Per-unit accuracy: :func:`profile_correlation` over the test images, and its ranks.

    Parameters
    ----------
    lo, hi : int
    dtype : numpy dtype
        Precision the accuracies are kept in before the summary (float32 in work files).
    """

    DATASETS = {
        "accuracy": Output("Pearson r between decoded and true values over the test images "
                           "(NaN for constant units)"),
        "rank": Output("Rank of the unit by accuracy (1 = best; NaN units last)"),
    }
    COLUMNS = {
        "n_constant_units": "Units constant over the training images (NaN accuracy)",
        "profile_r_mean": "Mean over units of the Pearson r between decoded and true values "
                          "over test images (NaN units ignored)",
        "profile_r_median": "Median of the same",
    }
    ATTRS = ("n_constant_units", "profile_r_mean")

    def __init__(self, lo: int, hi: int, dtype=np.float32):
        super().__init__(lo, hi)
        self.dtype = np.dtype(dtype)
        self.values = np.full(hi - lo, np.nan, dtype=self.dtype)
        self.n_constant = 0

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> ProfileCorrelation:
        return cls(lo, hi, np.float32)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        self.values[self._local(start, stop)] = profile_correlation(pred, true)
        if constant is not None:
            self.n_constant += int(np.count_nonzero(constant))

    def spawn(self, lo, hi) -> ProfileCorrelation:
        return ProfileCorrelation(lo, hi, self.dtype)

    def merge(self, other: ProfileCorrelation) -> None:
        self.values[self._local(other.lo, other.hi)] = other.values
        self.n_constant += other.n_constant

    def save(self, work) -> None:
        work.create_dataset("accuracy", data=self.values)
        work.attrs["n_constant_units"] = self.n_constant

    def _read(self, work) -> None:
        self.values[:] = work["accuracy"][()]
        self.n_constant = int(work.attrs["n_constant_units"])

    def finalize(self, done: dict) -> Result:
        acc = self.values
        cols = {"n_constant_units": self.n_constant,
                "profile_r_mean": nanstat(np.nanmean, acc),
                "profile_r_median": nanstat(np.nanmedian, acc)}
        return Result({"accuracy": acc.astype(np.float32), "rank": rank_units(acc)}, cols,
                      {k: cols[k] for k in self.ATTRS})


class PatternIdentification(Metric):
    """Per-image pattern correlation and pairwise identification (:class:`PatternAccumulator`).

    Parameters
    ----------
    lo, hi : int
    n_images : int
    """

    DATASETS = {
        "pattern_r": Output("Pearson r over units between decoded and true pattern of each "
                            "test image", per="image"),
        "identification": Output("Pairwise identification accuracy of each test image",
                                 per="image"),
    }
    COLUMNS = {
        "pattern_r_mean": "Mean over test images of the Pearson r between decoded and true "
                          "patterns (z-scored with training statistics)",
        "identification_accuracy": "Mean pairwise identification accuracy (chance 0.5)",
    }
    ATTRS = ("pattern_r_mean", "identification_accuracy")

    def __init__(self, lo: int, hi: int, n_images: int):
        super().__init__(lo, hi)
        self.n_images = int(n_images)
        self.sums = PatternAccumulator(n_images)

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> PatternIdentification:
        return cls(lo, hi, n_images)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        self._local(start, stop)
        self.sums.update(pred, true)

    def spawn(self, lo, hi) -> PatternIdentification:
        return PatternIdentification(lo, hi, self.n_images)

    def merge(self, other: PatternIdentification) -> None:
        self._local(other.lo, other.hi)
        self.sums.merge(other.sums)

    def save(self, work) -> None:
        g = work.create_group("pattern")
        for k, v in self.sums.state().items():
            g.create_dataset(k, data=v)

    def _read(self, work) -> None:
        self.sums = PatternAccumulator.from_state(
            {k: work["pattern"][k][()] for k in PatternAccumulator.FIELDS})

    def finalize(self, done: dict) -> Result:
        corr = self.sums.correlation_matrix()
        pattern_r = pattern_correlation(corr)
        ident = pairwise_identification(corr)
        cols = {"pattern_r_mean": nanstat(np.nanmean, pattern_r),
                "identification_accuracy": nanstat(np.nanmean, ident)}
        return Result({"pattern_r": pattern_r, "identification": ident}, cols, dict(cols))


def finalize_all(metrics: list[Metric]) -> Result:
    """Finalize metrics in order; one :class:`Result` with all their outputs."""
    out = Result()
    for m in metrics:
        r = m.finalize(out.datasets)
        out.datasets.update(r.datasets)
        out.columns.update(r.columns)
        out.attrs.update(r.attrs)
    return out
