"""Solver functions of the voxel-selecting ridge decoder: pure functions of arrays.

The steps are described in :mod:`bids_decode.decoding`. Here: the training design
(:func:`prepare_design`), the selection and right-hand sides, the batch solve with its
float64 redo (:func:`solve_selected`, written once against a
:class:`~bids_decode.backends.Backend`), the all-voxel solves, and sparse prediction.
Streaming over unit chunks and threads is in :mod:`bids_decode.decoding.streaming`, the sklearn
estimator in :mod:`bids_decode.decoding.estimator`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from bids_decode.backends import (
    ILL_CONDITIONED,
    Backend,
    CPUBackend,
    blockwise,
    resolve_backend,
    row_sums,
)
from bids_decode.backends.cpu_kernels import select_refined
from bids_decode.errors import DataError, UsageError
from bids_decode.utils.docs import fill_doc
from bids_decode.utils.grid import UNIT_BLOCK

#: Condition-number estimates above these redo a unit in float64 (float32) or warn (float64).
COND_MAX = {np.dtype(np.float32): 1e4, np.dtype(np.float64): 1e12}
#: Variance below which a voxel counts as constant (fastl2lir's threshold).
CONSTANT_VAR = 1e-8

_NONFINITE_Y = "Y contains NaN or infinite values; remove those units or samples."


@dataclass(frozen=True, eq=False)
class Design:
    """Training design shared by every unit batch of one fit (hashable by identity, so a
    backend can keep its device state per design).

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_voxels + 1)
        Training data with a bias column appended, in ``dtype``.
    gram : ndarray of shape (n_voxels + 1, n_voxels + 1)
        ``X' X + alpha * I`` in ``dtype``.
    xz : ndarray of shape (n_samples, n_voxels), float64
        Training data centred and scaled to unit norm per voxel (for correlations);
        constant voxels are all zero, so they are never selected first.
    alpha : float
    mean : ndarray of shape (n_voxels,), float64
        Voxel means.
    norm : ndarray of shape (n_voxels,), float64
        Norms of the centred voxels (0 for constant voxels).
    backend : Backend
        Where the batches are solved (:func:`~bids_decode.backends.resolve_backend`).
    """

    X: np.ndarray
    xz: np.ndarray
    alpha: float
    mean: np.ndarray
    norm: np.ndarray
    backend: Backend = field(default_factory=lambda: resolve_backend("cpu"))
    #: host arrays derived on first use (the Gram matrices, their factor, float64 X)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> str:
        """The backend's ``--device`` string."""
        return self.backend.name

    @property
    def gram(self) -> np.ndarray:
        """``X' X + alpha I`` in ``dtype``, computed on first use (the all-voxel dual path
        never needs it)."""
        if "gram" not in self._cache:
            g = self.X.T @ self.X
            g[np.diag_indices_from(g)] += self.alpha
            self._cache["gram"] = g
        return self._cache["gram"]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def n_voxels(self) -> int:
        return self.X.shape[1] - 1

    def gram_as(self, dtype) -> np.ndarray:
        """The Gram matrix in another dtype (float64 is recomputed, not upcast)."""
        dtype = np.dtype(dtype)
        if dtype == self.X.dtype:
            return self.gram
        key = ("gram", dtype)
        if key not in self._cache:
            Xb = self.X.astype(dtype) if dtype != np.float64 else _with_bias(self._x64())
            g = Xb.T @ Xb
            g[np.diag_indices_from(g)] += self.alpha
            self._cache[key] = g
        return self._cache[key]

    def _x64(self) -> np.ndarray:
        return self._cache.get("x64", self.X[:, :-1])


def _with_bias(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


@fill_doc
def prepare_design(X, alpha, *, dtype=np.float64, device="cpu") -> Design:
    """Precompute what every unit batch of a fit shares.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_voxels)
        Training data.
    alpha : float
        Ridge penalty (on the weights and the bias).
    dtype : numpy dtype, default float64
        Precision of the Gram matrix and the solves (float32 or float64).
    %(device)s

    Returns
    -------
    Design
    """
    backend = resolve_backend(device)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UsageError(f"dtype must be float32 or float64; got {dtype}.")
    X64 = np.asarray(X, dtype=np.float64)
    if X64.ndim != 2:
        raise UsageError(f"X must be 2-D (n_samples, n_voxels); got shape {X64.shape}.")
    if not np.isfinite(X64).all():
        raise DataError("X contains NaN or infinite values; clean or mask them before decoding.")
    Xb = _with_bias(X64.astype(dtype))
    mean = X64.mean(axis=0)
    xc = X64 - mean
    norm = np.sqrt((xc**2).sum(axis=0))
    const = norm <= np.sqrt(CONSTANT_VAR * X64.shape[0])
    norm[const] = 0.0
    xz = np.divide(xc, norm, out=np.zeros_like(xc), where=~const)
    design = Design(X=Xb, xz=xz, alpha=float(alpha), mean=mean, norm=norm,
                    backend=backend)
    if dtype != np.float64:
        design._cache["x64"] = X64
    return design


def check_y(design: Design, Y) -> np.ndarray:
    """Y as a 2-D array of shape (n_samples, n_units); finiteness is checked here on the CPU,
    on the device otherwise."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != design.X.shape[0]:
        raise UsageError(
            f"Y must have shape (n_samples={design.X.shape[0]}, n_units); got {Y.shape}.")
    if design.backend.host_finite_check and not np.isfinite(Y).all():
        raise DataError(_NONFINITE_Y)
    return Y


def uses_all(design: Design, n_voxels: int) -> bool:
    """Whether ``n_voxels`` means every voxel (0, or at least the design's voxels)."""
    return n_voxels == 0 or n_voxels >= design.n_voxels


# ----------------------------------------------------------------------------------------
# selection and right-hand sides


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


def _select_rhs(design: Design, Y, k: int):
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
    index, rhs, finite, exact = _select_rhs(design, Y, n_voxels)
    xt_d = be.test_data(design, xt)
    coef, intercept, status, pred = be.solve(be.gram(design), index, be.astype(rhs, dtype),
                                             COND_MAX[dtype], xt_d)
    bad = be.flagged(status)  # a device synchronises here
    if finite is not None and not bool(finite):
        raise DataError(_NONFINITE_Y)
    if len(bad):
        # right-hand sides of the redone units from float64 products (the float32 ones
        # would carry their rounding through an ill-conditioned block)
        rhs_bad = rhs[bad] if exact else _rhs_float64(design, Y, index, bad)
        c64, b64, s64, p64 = be.solve(be.gram64(design), index[bad], rhs_bad,
                                      COND_MAX[np.dtype(np.float64)], be.as_float64(xt_d))
        _merge_redo(bad, s64, (coef, c64), (intercept, b64), (pred, p64))
    if not keep_coef:
        return None, None, None, be.to_host(pred)
    return be.to_host(coef), be.to_host(index), be.to_host(intercept), be.to_host(pred)


def _rhs_float64(design: Design, Y, index, units) -> np.ndarray:
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


def _all_voxel_factor(design: Design):
    """Cholesky factor of ``G`` (primal), cached."""
    if "chol" not in design._cache:
        import scipy.linalg

        design._cache["chol"] = scipy.linalg.cho_factor(design.gram, lower=True)
    return design._cache["chol"]


def hat_matrix(design: Design, X_test) -> np.ndarray:
    """``H`` of shape (n_test, n_samples) with ``predictions = H @ Y`` for all-voxel ridge.

    Primal ``Xt_b G^-1 Xb'`` when voxels + 1 <= samples, dual ``Xt_b Xb' (Xb Xb' + alpha I)^-1``
    otherwise (the same matrix; one factorisation of the smaller side).
    """
    import scipy.linalg

    Xb = design.X
    Xt = _with_bias(np.asarray(X_test, dtype=design.dtype))
    if Xb.shape[1] <= Xb.shape[0]:
        H = scipy.linalg.cho_solve(_all_voxel_factor(design), Xt.T).T @ Xb.T
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
    if uses_all(design, n_voxels):
        import scipy.linalg

        factor, Xt = _all_voxel_factor(design), design.X.T
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
