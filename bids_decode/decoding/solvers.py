"""Solver functions of the voxel-selecting ridge decoder: pure functions of arrays.

The steps are described in :mod:`bids_decode.decoding`. Here: the batch solve with its
float64 redo (:func:`solve_selected`, written once against a
:class:`~bids_decode.backends.Backend`), the all-voxel solves (:func:`hat_matrix`,
:func:`fit_chunk`), and sparse prediction (:func:`predict_sparse`). The training design is in
:mod:`bids_decode.decoding.design`, the selection and right-hand sides in
:mod:`bids_decode.decoding.selection`, streaming over unit chunks and threads in
:mod:`bids_decode.decoding.streaming`, the sklearn estimator in
:mod:`bids_decode.decoding.estimator`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from bids_decode.backends import ILL_CONDITIONED, blockwise
from bids_decode.decoding.design import NONFINITE_Y, Design, check_y, with_bias
from bids_decode.decoding.selection import rhs_float64, select_rhs, uses_all
from bids_decode.errors import DataError
from bids_decode.utils.docs import fill_doc

LOGGER = logging.getLogger(__name__)

#: Condition-number estimates above these redo a unit in float64 (float32) or warn (float64).
COND_MAX = {np.dtype(np.float32): 1e4, np.dtype(np.float64): 1e12}


# ----------------------------------------------------------------------------------------
# the batch solve


def solve_selected(design: Design, Y, n_voxels: int, xt, *, keep_coef: bool = True):
    """Select, solve and (optionally) predict one batch of units; redo failures in float64.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    n_voxels : int
        Voxels per unit (fewer than the design's).
    xt : ndarray of shape (n_voxels_total, n_test) or None
        Test data, transposed, in the design's dtype.
    keep_coef : bool
        False: return None for coef, index and intercept (predictions only; a device then
        copies nothing else back).

    Returns
    -------
    coef : ndarray of shape (n_units, k)
    index : ndarray of shape (n_units, k), ascending
    intercept : ndarray of shape (n_units,)
    pred : ndarray of shape (n_units, n_test) or None
    """
    be, dtype = design.backend, design.dtype
    index, rhs, finite, exact = select_rhs(design, Y, n_voxels)
    xt_d = be.test_data(design, xt)
    coef, intercept, status, pred = be.solve(be.gram(design), index, be.astype(rhs, dtype),
                                             COND_MAX[dtype], xt_d)
    bad = be.flagged(status)  # a device synchronises here
    if finite is not None and not bool(finite):
        raise DataError(NONFINITE_Y)
    if len(bad):
        # right-hand sides of the redone units from float64 products (the float32 ones
        # would carry their rounding through an ill-conditioned block)
        rhs_bad = rhs[bad] if exact else rhs_float64(design, Y, index, bad)
        c64, b64, s64, p64 = be.solve(be.gram64(design), index[bad], rhs_bad,
                                      COND_MAX[np.dtype(np.float64)], be.as_float64(xt_d))
        _merge_redo(bad, s64, (coef, c64), (intercept, b64), (pred, p64))
    if not keep_coef:
        return None, None, None, be.to_host(pred)
    return be.to_host(coef), be.to_host(index), be.to_host(intercept), be.to_host(pred)


def _merge_redo(bad, status64, *pairs) -> None:
    """Write float64 redos into the batch outputs; NaN (with a warning) where they failed.

    Works on numpy arrays and on torch tensors (on their device) alike.
    """
    _report_failures(status64)
    failed = status64 > 0
    for out, redo in pairs:
        if out is None:
            continue
        redo = redo.astype(out.dtype) if isinstance(redo, np.ndarray) else redo.to(out.dtype)
        redo[failed] = np.nan
        out[bad] = redo


def _report_failures(status64) -> None:
    n_npd = int((status64 > 0).sum())
    n_ill = int((status64 == ILL_CONDITIONED).sum())
    if n_npd:
        warnings.warn(
            f"{n_npd} unit(s) have a selected-voxel Gram block that is not positive definite "
            "even in float64 (alpha too small for the data?); their weights and predictions "
            "are NaN.", RuntimeWarning, stacklevel=3)
    if n_ill:
        warnings.warn(
            f"{n_ill} unit(s) have an ill-conditioned selected-voxel Gram block in float64 "
            f"(condition estimate > {COND_MAX[np.dtype(np.float64)]:.0e}); their weights are "
            "unreliable: increase alpha.", RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------
# all voxels


def hat_matrix(design: Design, X_test) -> np.ndarray:
    """``H`` of shape (n_test, n_samples) with ``predictions = H @ Y`` for all-voxel ridge.

    Primal ``Xt_b G^-1 Xb'`` when voxels + 1 <= samples, dual ``Xt_b Xb' (Xb Xb' + alpha I)^-1``
    otherwise (the same matrix; one factorisation of the smaller side).
    """
    import scipy.linalg

    Xb = design.X
    Xt = with_bias(np.asarray(X_test, dtype=design.dtype))
    if Xb.shape[1] <= Xb.shape[0]:
        H = scipy.linalg.cho_solve(design.gram_factor(), Xt.T).T @ Xb.T
    else:
        K = Xb @ Xb.T
        K[np.diag_indices_from(K)] += design.alpha
        H = scipy.linalg.solve(K, Xb @ Xt.T, assume_a="pos").T
    return H


# ----------------------------------------------------------------------------------------
# public batch functions


@fill_doc
def fit_chunk(design: Design, Y, n_voxels: int):
    """Fit the selected-voxel ridge for a batch of units.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    %(n_voxels)s

    Returns
    -------
    coef : ndarray of shape (n_units, k)
        Weights of the selected voxels (k = n_voxels, or all voxels).
    index : ndarray of shape (n_units, k) or None
        Selected voxel indices, ascending per unit; None when every voxel is used.
    intercept : ndarray of shape (n_units,)
    """
    Y = check_y(design, Y)
    if uses_all(n_voxels, design.n_voxels):
        import scipy.linalg

        factor, Xt = design.gram_factor(), design.X.T
        sol = blockwise(lambda yt: scipy.linalg.cho_solve(factor, Xt @ yt.T).T, Y,
                        Xt.shape[0], design.dtype)  # (n_units, n_voxels + 1), bias last
        return np.ascontiguousarray(sol[:, :-1]), None, sol[:, -1].copy()
    coef, index, intercept, _ = solve_selected(design, Y, int(n_voxels), None)
    return coef, index, intercept


def predict_sparse(X, coef, index, intercept) -> np.ndarray:
    """Predict from sparse (selected-voxel) weights.

    Parameters
    ----------
    X : ndarray of shape (n_test, n_voxels)
    coef : ndarray of shape (n_units, k)
    index : ndarray of shape (n_units, k) or None
    intercept : ndarray of shape (n_units,)

    Returns
    -------
    ndarray of shape (n_test, n_units)
    """
    X = np.asarray(X, dtype=coef.dtype)
    if index is None:
        return X @ coef.T + intercept
    # (n_test, n_units, k) gathered in unit blocks to bound memory
    out = np.empty((X.shape[0], coef.shape[0]), dtype=coef.dtype)
    step = max(1, 2**22 // max(1, X.shape[0] * coef.shape[1]))
    for s in range(0, coef.shape[0], step):
        e = min(s + step, coef.shape[0])
        out[:, s:e] = np.einsum("tuk,uk->tu", X[:, index[s:e]], coef[s:e]) + intercept[s:e]
    return out
