"""Exact sums over units: float64 values split into int64 limbs, and the pattern sums.

Pattern statistics accumulate additively over unit chunks (and shards), so a layer never has
to sit in memory whole, and exactly, so the result does not depend on how the units were
split: each block's float64 sums are cut into integer limbs (:func:`to_limbs`) whose integer
sums do not depend on the order of the addends.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)

#: Scales (powers of two) of the three int64 limbs of an exact sum: bits 2^24..2^86,
#: 2^-8..2^23 and 2^-40..2^-9 of each addend (what lies below 2^-40 is dropped).
_LIMB_EXPONENTS = (24, -8, -40)


def to_limbs(x) -> np.ndarray:
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


def from_limbs(limbs) -> np.ndarray:
    """The float64 value of integer limb sums (see :func:`to_limbs`)."""
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
    float64 from that block alone, split into integer limbs (:func:`to_limbs`) and added as
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
            self._limbs[f] += to_limbs(v)

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
        return {f: from_limbs(v) for f, v in self._limbs.items()}

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

