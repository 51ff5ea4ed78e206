"""Which voxels each unit's decoder uses, and the right-hand sides of their systems.

The all-voxels rule (``n_voxels`` 0, or at least the voxels there are, means every voxel) is
:func:`n_selected`. For a batch of units one GEMM gives the correlations of every voxel with
every unit and the right-hand sides ``Xb' y``; the top ``k`` per unit are picked on the
design's backend (:func:`select_rhs`), in float32 refined to the float64 ranking where the
backend can (:func:`_select_rhs_float32`).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends import CPUBackend, blockwise, row_sums
from bids_decode.backends.cpu_kernels import select_refined
from bids_decode.decoding.design import Design
from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)


def n_selected(n_voxels: int, n_available: int) -> int:
    """Voxels each unit's decoder uses: ``n_voxels``, or all ``n_available`` voxels when
    ``n_voxels`` is 0 or at least ``n_available``.

    Parameters
    ----------
    n_voxels : int
        Voxels asked for per unit (``--n-voxels``; 0: all).
    n_available : int
        Voxels of the ROI (the design's).

    Returns
    -------
    int
    """
    if n_voxels == 0 or n_voxels >= n_available:
        return int(n_available)
    return int(n_voxels)


def uses_all(n_voxels: int, n_available: int) -> bool:
    """Whether ``n_voxels`` means every one of ``n_available`` voxels (:func:`n_selected`)."""
    return n_selected(n_voxels, n_available) == n_available


def _scores_rhs(design: Design, Y):
    """Correlation scores and right-hand sides of a batch of units (one float64 GEMM, host).

    Returns
    -------
    scores : ndarray of shape (n_units, n_voxels), float64
        ``|xz' y|``: the absolute correlations up to a positive factor per unit.
    ct : ndarray of shape (n_units, n_voxels), float64
        ``xz' y`` (signed).
    ysum : ndarray of shape (n_units,), float64
    """
    xz = design.xz
    ct = blockwise(lambda yt: yt @ xz, Y, xz.shape[1], np.float64)  # (n_units, n_voxels)
    return np.abs(ct), ct, row_sums(Y)


def _rhs_selected(design: Design, ct, ysum, index):
    """``Xb[:, S]' y`` per unit from the GEMM output, the bias entry last (on the backend's
    device: numpy arrays or tensors).

    ``X' y = diag(norm) xz' y + mean * sum(y)`` since the centred voxels sum to zero.

    Parameters
    ----------
    design : Design
    ct : array of shape (n_units, n_voxels)
    ysum : array of shape (n_units,), float64
    index : array of shape (n_units, k)

    Returns
    -------
    array of shape (n_units, k + 1), float64
    """
    be = design.backend
    arrays = be.arrays(design)
    c = be.take_along(ct, index)
    rhs = be.empty64((index.shape[0], index.shape[1] + 1), like=ct)
    rhs[:, :-1] = c * arrays["norm"][index] + arrays["mean"][index] * ysum[:, None]
    rhs[:, -1] = ysum
    return rhs


def _select_rhs_float32(design: Design, Y, k: int):
    """Selection and right-hand sides from one float32 GEMM (half the float64 one's time).

    The selection equals the float64 ranking's. A float32 score differs from the exact one
    by at most ``tol = (n + 2) * u * ||y||`` (u = eps / 2 the unit roundoff; ``|xz_v| = 1``;
    the standard bound for a dot product of n terms in any summation order, plus rounding
    xz to float32), so the exact k-th largest lies within ``tol`` of the float32 one, and
    only scores within ``2 tol`` of it (about 10 voxels per unit) are recomputed in float64
    (:func:`bids_decode.backends.cpu_kernels.select_refined`). The right-hand sides take the float32
    products, well inside the float32 solve's own error.

    Returns index (n_units, k) ascending and rhs (n_units, k + 1) float64, bias last.
    """
    xz32, xzt64 = design.backend.float32_scores(design)
    ct = blockwise(lambda yt: yt @ xz32, Y, xz32.shape[1], np.float32)  # (n_units, n_voxels)
    yt = np.ascontiguousarray(np.asarray(Y, dtype=np.float32).T, dtype=np.float64)
    ysum = yt.sum(axis=1)
    n = yt.shape[1]
    half_width = (n + 2) * np.finfo(np.float32).eps * np.sqrt((yt**2).sum(axis=1))  # 2 tol
    index, _ = select_refined(np.abs(ct), k, half_width, yt, xzt64)
    return index, _rhs_selected(design, ct, ysum, index)


def select_rhs(design: Design, Y, k: int):
    """Selected voxels and right-hand sides of a batch of units, on the backend's device.

    Returns
    -------
    index : array of shape (n_units, k), ascending
    rhs : array of shape (n_units, k + 1), float64, bias last
    finite : None or a device flag
        Whether Y was finite, where the backend checks it on the device.
    exact : bool
        Whether ``rhs`` comes from float64 products (else a redo recomputes them).
    """
    be = design.backend
    if design.dtype == np.float32 and be.refines_float32:
        index, rhs = _select_rhs_float32(design, Y, k)
        return index, rhs, None, False
    ct, ysum, finite = be.correlations(design, Y)
    index = be.top_k(be.abs(ct), k)
    return index, _rhs_selected(design, ct, ysum, index), finite, True


def _top_k(scores, k: int, *, ordered: bool = False) -> np.ndarray:
    """Indices of the ``k`` largest scores per row (ascending, or by decreasing score)."""
    if not ordered:
        return CPUBackend.top_k(scores, k)
    p = scores.shape[1]
    idx = np.argpartition(scores, p - k, axis=1)[:, p - k:]
    order = np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def select_voxels(design: Design, Y, n_voxels: int) -> np.ndarray:
    """Indices of the voxels most correlated (in absolute value) with each unit.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    n_voxels : int

    Returns
    -------
    ndarray of shape (n_units, n_voxels), int64
        Sorted by decreasing absolute correlation.
    """
    scores, _, _ = _scores_rhs(design, Y)
    return _top_k(scores, int(n_voxels), ordered=True)


def rhs_float64(design: Design, Y, index, units) -> np.ndarray:
    """Float64 right-hand sides of some units, each from the float64 products of its whole
    grid block (so they do not depend on which other units are redone).

    Returns ndarray of shape (len(units), k + 1).
    """
    Y = np.asarray(Y)
    rhs = np.empty((len(units), index.shape[1] + 1), dtype=np.float64)
    for b in np.unique(units // UNIT_BLOCK):
        s = int(b) * UNIT_BLOCK
        here = (units >= s) & (units < s + UNIT_BLOCK)
        _, ct, ysum = _scores_rhs(design, Y[:, s:s + UNIT_BLOCK])
        local = units[here] - s
        rhs[here] = _rhs_selected(design, ct[local], ysum[local], index[units[here]])
    return rhs
