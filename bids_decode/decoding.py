"""Voxel-selecting L2-regularised linear regression (the decoder of Horikawa & Kamitani).

For each target unit, the ``n_voxels`` voxels whose training correlation with the unit is
highest in absolute value are selected, a bias column is appended, and ridge regression
``(Xs' Xs + alpha I) w = Xs' y`` is solved on them (the bias is penalised too, as in
fastl2lir 0.11; voxels with variance < 1e-8 get correlation 0, so they are never preferred).

How the work is organised (the pure functions below; :class:`VoxelSelectionRidge` is a thin
sklearn-style wrapper):

1. :func:`prepare_design`, once per fit: the Gram matrix ``G = Xb' Xb + alpha I`` (``Xb`` is
   X with a bias column) and the centred, unit-norm voxels used for correlations.
2. Per batch of units (:func:`fit_chunk`, :func:`predict_chunk`, :func:`iter_decode`): one
   GEMM gives the correlations of every voxel with every unit *and* the right-hand sides
   ``Xb' y``; the top ``n_voxels`` per unit are picked; a compiled kernel gathers
   ``G[S, S]``, factorises it (Cholesky), solves, and predicts the test samples from the
   selected voxels only. Weights stay sparse: values plus voxel indices.
3. Units whose block is not positive definite or ill-conditioned in float32 are redone in
   float64; a float64 failure gives NaN weights and a warning that says why.
4. ``n_voxels=0`` (all voxels): one factorisation for every unit. Predictions come from the
   hat matrix ``H = X_test (X'X + alpha I)^-1 X'`` (dual form when voxels > samples), so a
   batch of units costs one small GEMM ``H @ Y`` and no dense weights are formed.

Batches are sized from a memory budget and run on ``n_jobs`` threads (BLAS limited to one
thread each); ``device="cuda"`` runs the same steps with torch on the GPU.

**Partition invariance.** Every product over units (the correlation GEMM, the all-voxel
predictions) is computed on fixed blocks of :data:`UNIT_BLOCK` units aligned to the first unit
of the stream, and every other step is per unit. So on one machine a unit's prediction is the
same bits whatever the batch size, thread count, memory budget or chunking of the stream
(chunks that do not end on the grid are re-cut to it), as long as the stream starts on the grid
(the participant level rounds unit shards to it).

The selection is the float64 ranking's whatever ``dtype`` is, so float32 selects the same
voxels as fastl2lir in float64 (up to exact ties): in float64 the GEMM is float64; in
float32 (on the CPU) it is float32, and the few scores within the float32 rounding bound of
the selection threshold are recomputed in float64 (:func:`_select_rhs_float32`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from . import _backends
from .errors import DataError, UsageError
from .grid import UNIT_BLOCK

#: Default memory budget for one batch of units, in bytes (all threads together).
DEFAULT_MEM_BYTES = 1 << 30
#: smallest thread task when a chunk is split for load balance (its GEMM stays efficient)
_MIN_TASK = 128
#: Condition-number estimates above these redo a unit in float64 (float32) or warn (float64).
COND_MAX = {np.dtype(np.float32): 1e4, np.dtype(np.float64): 1e12}
#: Variance below which a voxel counts as constant (fastl2lir's threshold).
CONSTANT_VAR = 1e-8


def _blockwise(fn, Y, n_out: int, dtype) -> np.ndarray:
    """Apply ``fn`` to each :data:`UNIT_BLOCK`-unit block of ``Y``'s columns.

    Each block is copied to a C-contiguous ``(block, n_samples)`` array of ``dtype`` first, so
    the BLAS call behind ``fn`` sees the same shape, layout and data for a unit's block
    wherever the block came from.

    Parameters
    ----------
    fn : callable
        ``fn(Yt_block)`` with ``Yt_block`` of shape (b, n_samples) returns shape (b, n_out).
    Y : ndarray of shape (n_samples, n_units)
    n_out : int
    dtype : numpy dtype
        dtype of the blocks and of the output.

    Returns
    -------
    ndarray of shape (n_units, n_out)
    """
    Yt = np.asarray(Y).T
    out = np.empty((Yt.shape[0], n_out), dtype=dtype)
    for s in range(0, Yt.shape[0], UNIT_BLOCK):
        out[s:s + UNIT_BLOCK] = fn(np.ascontiguousarray(Yt[s:s + UNIT_BLOCK], dtype=dtype))
    return out


def _row_sums(Y) -> np.ndarray:
    """Column sums of ``Y`` (n_samples, n_units), float64, each unit's independent of the others
    (a contiguous reduction per unit)."""
    return np.ascontiguousarray(np.asarray(Y).T, dtype=np.float64).sum(axis=1)


@dataclass(frozen=True)
class Design:
    """Training design shared by every unit batch of one fit.

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
    device : str
        ``"cpu"`` or a torch device string such as ``"cuda"``.
    """

    X: np.ndarray
    xz: np.ndarray
    alpha: float
    mean: np.ndarray
    norm: np.ndarray
    device: str = "cpu"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

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
    device : str, default "cpu"
        ``"cpu"`` (compiled kernel, threads), a torch device such as ``"cuda"``, or
        ``"torch-cpu"`` (the torch path on the CPU; for testing).

    Returns
    -------
    Design
    """
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
                    device=str(device))
    if dtype != np.float64:
        design._cache["x64"] = X64
    return design


# ----------------------------------------------------------------------------------------
# selection and right-hand sides


def _scores_rhs(design: Design, Y):
    """Correlation scores and right-hand sides of a batch of units (one float64 GEMM).

    Returns
    -------
    scores : ndarray of shape (n_units, n_voxels), float64
        ``|xz' y|``: the absolute correlations up to a positive factor per unit.
    ct : ndarray of shape (n_units, n_voxels), float64
        ``xz' y`` (signed).
    ysum : ndarray of shape (n_units,), float64
    """
    xz = design.xz
    ct = _blockwise(lambda yt: yt @ xz, Y, xz.shape[1], np.float64)  # (n_units, n_voxels)
    return np.abs(ct), ct, _row_sums(Y)


def _rhs_selected(design: Design, ct, ysum, index) -> np.ndarray:
    """``Xb[:, S]' y`` per unit from the GEMM output, the bias entry last.

    ``X' y = diag(norm) xz' y + mean * sum(y)`` since the centred voxels sum to zero.
    """
    c = np.take_along_axis(ct, index, axis=1)
    rhs = np.empty((index.shape[0], index.shape[1] + 1), dtype=np.float64)
    rhs[:, :-1] = c * design.norm[index] + design.mean[index] * ysum[:, None]
    rhs[:, -1] = ysum
    return rhs


def _select_rhs_float32(design: Design, Y, k: int):
    """Selection and right-hand sides from one float32 GEMM (half the float64 one's time).

    The selection equals the float64 ranking's. A float32 score differs from the exact one
    by at most ``tol = (n + 2) * u * ||y||`` (u = eps / 2 the unit roundoff; ``|xz_v| = 1``;
    the standard bound for a dot product of n terms in any summation order, plus rounding
    xz to float32), so the exact k-th largest lies within ``tol`` of the float32 one, and
    only scores within ``2 tol`` of it (about 10 voxels per unit) are recomputed in float64
    (:func:`bids_decode._backends.select_refined`). The right-hand sides take the float32
    products, well inside the float32 solve's own error.

    Returns index (n_units, k) ascending and rhs (n_units, k + 1) float64, bias last.
    """
    if "xz32" not in design._cache:  # one atomic store: threads may race to make it
        design._cache["xz32"] = (design.xz.astype(np.float32),
                                 np.ascontiguousarray(design.xz.T))
    xz32, xzt64 = design._cache["xz32"]
    ct = _blockwise(lambda yt: yt @ xz32, Y, xz32.shape[1], np.float32)  # (n_units, n_voxels)
    yt = np.ascontiguousarray(np.asarray(Y, dtype=np.float32).T, dtype=np.float64)
    ysum = yt.sum(axis=1)
    n = yt.shape[1]
    half_width = (n + 2) * np.finfo(np.float32).eps * np.sqrt((yt**2).sum(axis=1))  # 2 tol
    index, _ = _backends.select_refined(np.abs(ct), k, half_width, yt, xzt64)
    return index, _rhs_selected(design, ct, ysum, index)


def _top_k(scores, k: int, *, ordered: bool = False) -> np.ndarray:
    """Indices of the ``k`` largest scores per row (ascending, or by decreasing score)."""
    p = scores.shape[1]
    idx = np.argpartition(scores, p - k, axis=1)[:, p - k:]
    if ordered:
        order = np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1)
    idx.sort(axis=1)
    return idx


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
# batch solvers


def _uses_all(design: Design, n_voxels: int) -> bool:
    return n_voxels == 0 or n_voxels >= design.n_voxels


def _solve_cpu(gram, index, rhs, cond_max, xt):
    if _backends.have_numba():
        return _backends.solve_selected_numba(gram, index, rhs, cond_max, xt)
    import torch  # fallback without numba: batched torch CPU calls

    t = torch.from_numpy
    out = _backends.solve_selected_torch(
        t(np.ascontiguousarray(gram)), t(index), t(rhs.astype(gram.dtype)), cond_max,
        None if xt is None else t(np.ascontiguousarray(xt, dtype=gram.dtype)))
    return tuple(None if o is None else o.numpy() for o in out)


def _solve_selected(design: Design, Y, n_voxels: int, xt, *, keep_coef: bool = True):
    """Select, solve and (optionally) predict one batch of units; redo failures in float64.

    Returns coef (n_units, k), index (n_units, k) sorted ascending, intercept (n_units,),
    pred (n_units, n_test) or None. With ``keep_coef=False`` (predictions only) a torch device
    returns None for coef, index and intercept instead of copying them back.
    """
    if design.device != "cpu":
        return _solve_selected_torch(design, Y, n_voxels, xt, keep_coef=keep_coef)
    dtype = design.dtype
    if dtype == np.float32 and _backends.have_numba():
        index, rhs = _select_rhs_float32(design, Y, n_voxels)
    else:
        scores, ct, ysum = _scores_rhs(design, Y)
        index = _top_k(scores, n_voxels)
        rhs = _rhs_selected(design, ct, ysum, index)
    coef, intercept, status, pred = _solve_cpu(design.gram, index, rhs.astype(dtype),
                                               COND_MAX[dtype], xt)
    bad = np.flatnonzero(status != 0)
    if bad.size:
        xt64 = None if xt is None else np.asarray(xt, dtype=np.float64)
        # right-hand sides of the redone units from float64 products (the float32 ones
        # would carry their rounding through an ill-conditioned block)
        rhs[bad] = _rhs_float64(design, Y, index, bad)
        c64, b64, s64, p64 = _solve_cpu(design.gram_as(np.float64), index[bad], rhs[bad],
                                        COND_MAX[np.dtype(np.float64)], xt64)
        _merge_redo(bad, s64, (coef, c64), (intercept, b64), (pred, p64))
    return coef, index, intercept, pred


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


def _torch_state(design: Design):
    """Design tensors on the torch device (created once per design)."""
    import torch

    if "torch" not in design._cache:
        dev = torch.device("cpu" if design.device == "torch-cpu" else design.device)
        design._cache["torch"] = {
            "xz": torch.as_tensor(design.xz, device=dev),
            "norm": torch.as_tensor(design.norm, device=dev),
            "mean": torch.as_tensor(design.mean, device=dev),
            "gram": torch.as_tensor(design.gram, device=dev),
        }
    return design._cache["torch"]


def _solve_selected_torch(design: Design, Y, n_voxels: int, xt, *, keep_coef: bool = True):
    """:func:`_solve_selected` with every step on the torch device.

    Y goes to the device in its own dtype (float32 from a features file: half the bytes of
    float64) and is converted there; the finiteness check is read at the one synchronisation
    point, with the results.
    """
    import torch

    st = _torch_state(design)
    dev = st["xz"].device
    Yd = torch.as_tensor(np.asarray(Y)).to(dev, non_blocking=True)
    finite = torch.isfinite(Yd).all()
    Y64 = Yd.to(torch.float64)
    # (n_units, n_voxels) float64, one fixed-shape GEMM per grid block (see UNIT_BLOCK)
    ct = torch.empty((Y64.shape[1], st["xz"].shape[1]), dtype=torch.float64, device=dev)
    for s in range(0, Y64.shape[1], UNIT_BLOCK):
        torch.matmul(Y64[:, s:s + UNIT_BLOCK].T.contiguous(), st["xz"],
                     out=ct[s:s + UNIT_BLOCK])
    ysum = torch.as_tensor(_row_sums(Y), device=dev)
    del Yd, Y64
    index = torch.topk(ct.abs(), n_voxels, dim=1, sorted=False).indices.sort(dim=1).values
    rhs = torch.empty((index.shape[0], n_voxels + 1), dtype=torch.float64, device=dev)
    rhs[:, :-1] = (torch.gather(ct, 1, index) * st["norm"][index]
                   + st["mean"][index] * ysum[:, None])
    rhs[:, -1] = ysum
    del ct
    dtype = design.dtype
    xt_t = None
    if xt is not None:  # the test data, sent once per iter_decode call
        if st.get("xt_src") is not xt:
            st["xt"] = torch.as_tensor(np.asarray(xt, dtype=dtype), device=dev)
            st["xt_src"] = xt
        xt_t = st["xt"]
    coef, intercept, status, pred = _backends.solve_selected_torch(
        st["gram"], index, rhs.to(st["gram"].dtype), COND_MAX[dtype], xt_t)
    bad = torch.nonzero(status != 0).flatten()  # synchronises
    if not bool(finite):
        raise DataError(_NONFINITE_Y)
    if bad.numel():
        if "gram64" not in st:
            st["gram64"] = torch.as_tensor(design.gram_as(np.float64), device=dev)
        c64, b64, s64, p64 = _backends.solve_selected_torch(
            st["gram64"], index[bad], rhs[bad], COND_MAX[np.dtype(np.float64)],
            None if xt_t is None else xt_t.double())
        _merge_redo(bad, s64, (coef, c64), (intercept, b64), (pred, p64))
    pred_np = None if pred is None else pred.cpu().numpy()
    if not keep_coef:
        return None, None, None, pred_np
    return coef.cpu().numpy(), index.cpu().numpy(), intercept.cpu().numpy(), pred_np


def _report_failures(status64) -> None:
    n_npd = int((status64 > 0).sum())
    n_ill = int((status64 == _backends.ILL_CONDITIONED).sum())
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


def _all_voxel_factor(design: Design):
    """Cholesky factor of ``G`` (primal), cached."""
    if "chol" not in design._cache:
        import scipy.linalg

        design._cache["chol"] = scipy.linalg.cho_factor(design.gram, lower=True)
    return design._cache["chol"]


def _hat_matrix(design: Design, X_test) -> np.ndarray:
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


def fit_chunk(design: Design, Y, n_voxels: int):
    """Fit the selected-voxel ridge for a batch of units.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    n_voxels : int
        Voxels per unit; 0 or >= the number of voxels means all voxels.

    Returns
    -------
    coef : ndarray of shape (n_units, k)
        Weights of the selected voxels (k = n_voxels, or all voxels).
    index : ndarray of shape (n_units, k) or None
        Selected voxel indices, ascending per unit; None when every voxel is used.
    intercept : ndarray of shape (n_units,)
    """
    Y = _check_y(design, Y)
    if _uses_all(design, n_voxels):
        import scipy.linalg

        factor, Xt = _all_voxel_factor(design), design.X.T
        sol = _blockwise(lambda yt: scipy.linalg.cho_solve(factor, Xt @ yt.T).T, Y,
                         Xt.shape[0], design.dtype)  # (n_units, n_voxels + 1), bias last
        return np.ascontiguousarray(sol[:, :-1]), None, sol[:, -1].copy()
    coef, index, intercept, _ = _solve_selected(design, Y, int(n_voxels), None)
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


def predict_chunk(design: Design, Y, X_test, n_voxels: int, *, n_jobs=None,
                  batch_size=None, mem_bytes=DEFAULT_MEM_BYTES) -> np.ndarray:
    """Fit a batch of units and predict the test samples.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    X_test : ndarray of shape (n_test, n_voxels)
    n_voxels : int
    n_jobs : int or None
        Threads (None: all CPUs the process may use; ignored on a GPU).
    batch_size : int or None
        Units per thread task (None: from ``mem_bytes``).
    mem_bytes : int
        Memory budget for the units in flight.

    Returns
    -------
    ndarray of shape (n_test, n_units)
    """
    Y = _check_y(design, Y)
    return np.concatenate(list(iter_decode(design, [Y], X_test, n_voxels, n_jobs=n_jobs,
                                           batch_size=batch_size, mem_bytes=mem_bytes)),
                          axis=1)


def batch_size_for(design: Design, n_voxels: int, mem_bytes=DEFAULT_MEM_BYTES,
                   n_jobs: int = 1) -> int:
    """Units per thread task so that ``n_jobs`` tasks stay within ``mem_bytes``.

    Counts per unit the float64 GEMM output, scores and partition indices (8 bytes each per
    voxel), the float64 copy of Y, and the outputs; on a GPU the gathered ``(k+1)^2`` block
    and its int64 index are the largest terms.
    """
    p = design.n_voxels
    n = design.X.shape[0]
    k = p if _uses_all(design, n_voxels) else int(n_voxels)
    per_unit = 8 * (4 * p + 2 * n + 4 * (k + 1))
    if design.device != "cpu":
        per_unit += (8 + design.dtype.itemsize * 3) * (k + 1) ** 2 // 8  # gathered in sub-batches
    fixed = 8 * (k + 1) ** 2 * n_jobs  # per-thread workspace
    return int(max(16, min(65536, (mem_bytes - fixed) // (per_unit * max(1, n_jobs)))))


def iter_decode(design: Design, Y_chunks, X_test, n_voxels: int, *, n_jobs=None,
                batch_size=None, mem_bytes=DEFAULT_MEM_BYTES):
    """Stream predictions for chunks of units: one fit per unit, nothing kept but predictions.

    Parameters
    ----------
    design : Design
        From :func:`prepare_design` on the training data.
    Y_chunks : iterable of ndarray of shape (n_samples, n_units_i)
        Training targets, in unit chunks (e.g. read from HDF5 one block at a time).
    X_test : ndarray of shape (n_test, n_voxels)
    n_voxels : int
        Voxels selected per unit; 0 (or >= the number of voxels) means all voxels.
    n_jobs : int or None
        CPU threads (None: all CPUs the process may use). Ignored on a GPU.
    batch_size : int or None
        Units per thread task; None sizes it from ``mem_bytes``. Results do not depend on it.
    mem_bytes : int
        Memory budget for the units in flight (the design itself is not counted).

    Yields
    ------
    ndarray of shape (n_test, n_units_i)
        Predictions for each chunk, in order, in the design's dtype.
    """
    X_test = np.asarray(X_test)
    if X_test.ndim != 2 or X_test.shape[1] != design.n_voxels:
        raise UsageError(f"X_test must have shape (n_test, {design.n_voxels}); got {X_test.shape}.")
    n_jobs = _n_jobs(n_jobs) if design.device == "cpu" else 1
    if batch_size is None:
        batch_size = batch_size_for(design, n_voxels, mem_bytes, n_jobs)
    checked = (_check_y(design, Y) for Y in Y_chunks)
    empty = np.empty((X_test.shape[0], 0), dtype=design.dtype)
    if _uses_all(design, n_voxels):
        H = _hat_matrix(design, X_test)
        yield from _regrid(checked, lambda Y: np.ascontiguousarray(_blockwise(
            lambda yt: (H @ yt.T).T, Y, H.shape[0], design.dtype).T), empty)
        return
    xt = np.ascontiguousarray(np.asarray(X_test, dtype=design.dtype).T)  # (n_voxels, n_test)

    def task(Yb):
        return _solve_selected(design, Yb, int(n_voxels), xt, keep_coef=False)[3].T

    with _UnitPool(n_jobs) as pool:
        yield from _regrid(checked, lambda Y: np.concatenate(
            pool.map(task, Y, batch_size), axis=1), empty)


def _regrid(chunks, fn, empty):
    """``fn`` over a stream of unit chunks re-cut to the :data:`UNIT_BLOCK` grid.

    Parameters
    ----------
    chunks : iterable of ndarray of shape (n_samples, n_units_i)
        Consecutive unit chunks; the first starts on the grid.
    fn : callable
        ``fn(Y)`` for ``Y`` of shape (n_samples, n) whose first column is on the grid and
        whose width is a multiple of ``UNIT_BLOCK`` (but for the stream's last piece); returns
        an array of shape (n_out, n).
    empty : ndarray of shape (n_out, 0)
        The output of an empty chunk.

    Yields
    ------
    ndarray of shape (n_out, n_units_i)
        ``fn``'s output for each input chunk, in order. Chunks already cut on the grid pass
        through without copies.
    """
    widths: list[int] = []  # input chunks not yet yielded
    done: list[np.ndarray] = []  # outputs not yet yielded
    carry = None  # input columns past the last full block

    def ready():
        while widths and sum(d.shape[1] for d in done) >= widths[0]:
            w = widths.pop(0)
            if w == 0:
                yield empty
                continue
            out = done[0] if done[0].shape[1] == w else np.concatenate(done, axis=1)
            done[:] = [out[:, w:]] if out.shape[1] > w else []
            yield out[:, :w]

    for Y in chunks:
        widths.append(Y.shape[1])
        if carry is not None:
            Y = np.concatenate([carry, Y], axis=1)
        n_full = Y.shape[1] // UNIT_BLOCK * UNIT_BLOCK
        if n_full:
            done.append(fn(Y[:, :n_full]))
        carry = Y[:, n_full:] if n_full < Y.shape[1] else None
        yield from ready()
    if carry is not None:
        done.append(fn(carry))
    yield from ready()


class _UnitPool:
    """Runs a function over grid-aligned unit tasks on ``n_jobs`` threads, BLAS single-threaded.

    One thread (a GPU, or ``n_jobs=1``) runs the tasks in the caller's thread.
    """

    def __init__(self, n_jobs: int):
        self.n_jobs = n_jobs
        self._stack = contextlib.ExitStack()
        self._map = map

    def __enter__(self):
        from threadpoolctl import threadpool_limits

        # one BLAS thread each: OpenBLAS's threaded potrf at this size is many times slower,
        # and a GEMM's bits may depend on its thread count
        self._stack.enter_context(threadpool_limits(1))
        if self.n_jobs > 1:
            self._map = self._stack.enter_context(ThreadPoolExecutor(self.n_jobs)).map
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def map(self, fn, Y, batch_size: int) -> list:
        """``[fn(Y[:, s:e]) ...]`` over tasks whose bounds are multiples of ``UNIT_BLOCK``."""
        size = _task_size(Y.shape[1], batch_size, self.n_jobs)
        return list(self._map(fn, [Y[:, s:s + size] for s in range(0, Y.shape[1], size)]))


def _task_size(n_units: int, batch_size: int, n_jobs: int) -> int:
    """Units per thread task: a multiple of ``UNIT_BLOCK``, about ``batch_size`` at most, and
    small enough that a chunk makes at least four tasks per thread (so no thread idles on the
    last one) where the grid allows, equal in size."""
    blocks = -(-n_units // UNIT_BLOCK)
    per_task = max(1, int(batch_size) // UNIT_BLOCK)
    if n_jobs > 1:
        per_task = min(per_task, max(_MIN_TASK // UNIT_BLOCK, -(-blocks // (4 * n_jobs))))
    n_tasks = -(-blocks // per_task)
    return max(1, -(-blocks // max(1, n_tasks))) * UNIT_BLOCK


def decode_units(X_train, Y, X_test, alpha=100.0, n_voxels=500, *, device="cpu",
                 dtype=np.float32, mem_bytes=DEFAULT_MEM_BYTES, n_jobs=None,
                 batch_size=None) -> np.ndarray:
    """Decode every unit: fit one selected-voxel ridge per unit and predict the test samples.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, n_voxels)
    Y : ndarray of shape (n_samples, n_units), or iterable of ndarray (n_samples, n_units_i)
        Training targets; an iterable is consumed chunk by chunk (memory stays bounded).
    X_test : ndarray of shape (n_test, n_voxels)
    alpha : float, default 100.0
    n_voxels : int, default 500
        Voxels selected per unit; 0 = all voxels.
    device : str, default "cpu"
        ``"cpu"`` or a torch device such as ``"cuda"``.
    dtype : float32 or float64, default float32
    mem_bytes : int, default 1 GiB
        Budget for the units in flight (``--mem`` less the design and the outputs).
    n_jobs : int or None
        CPU threads (None: all CPUs the process may use).
    batch_size : int or None
        Units per thread task (None: from ``mem_bytes``).

    Returns
    -------
    ndarray of shape (n_test, n_units)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 30)), rng.standard_normal((40, 7))
    >>> decode_units(X, Y, X[:5], alpha=1.0, n_voxels=5).shape
    (5, 7)
    """
    design = prepare_design(X_train, alpha, dtype=dtype, device=device)
    chunks = [Y] if isinstance(Y, np.ndarray) else Y
    return np.concatenate(list(iter_decode(design, chunks, X_test, n_voxels, n_jobs=n_jobs,
                                           batch_size=batch_size, mem_bytes=mem_bytes)), axis=1)


def _n_jobs(n_jobs) -> int:
    if n_jobs is None or n_jobs <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    return int(n_jobs)


def _check_y(design: Design, Y) -> np.ndarray:
    """Y as a 2-D array; finiteness is checked here on the CPU, on the device otherwise."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != design.X.shape[0]:
        raise UsageError(
            f"Y must have shape (n_samples={design.X.shape[0]}, n_units); got {Y.shape}.")
    if design.device == "cpu" and not np.isfinite(Y).all():
        raise DataError(_NONFINITE_Y)
    return Y


_NONFINITE_Y = "Y contains NaN or infinite values; remove those units or samples."


class VoxelSelectionRidge(RegressorMixin, BaseEstimator):
    """Ridge regression on the voxels most correlated with each target.

    Parameters
    ----------
    alpha : float, default 100.0
        L2 penalty (applied to the weights and the bias, as in fastl2lir).
    n_voxels : int, default 500
        Voxels selected per target by absolute Pearson correlation; 0 = all voxels.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the Gram matrix and the solves; the same default as the participant
        level (``--dtype``). float32 selects the float64 ranking's voxels and redoes
        ill-conditioned units in float64; its predictions agree with float64 to about 1e-6
        relative. Use float64 to reproduce a float64 reference to ~1e-12.
    device : str, default "cpu"
        ``"cpu"`` or a torch device such as ``"cuda"``.
    n_jobs : int or None, default None
        CPU threads for the fit (None: all CPUs the process may use).
    batch_size : int or None, default None
        Units per thread task (None: from a 1 GiB budget). Results do not depend on it.

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, k)
    voxel_index_ : ndarray of shape (n_targets, k) or None
        Selected voxels per target, ascending; None when every voxel is used.
    intercept_ : ndarray of shape (n_targets,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 30)), rng.standard_normal((40, 3))
    >>> VoxelSelectionRidge(alpha=1.0, n_voxels=5).fit(X, Y).predict(X).shape
    (40, 3)
    """

    def __init__(self, alpha=100.0, n_voxels=500, dtype="float32", device="cpu", n_jobs=None,
                 batch_size=None):
        self.alpha = alpha
        self.n_voxels = n_voxels
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.batch_size = batch_size

    def _check(self, X, Y=None):
        X = np.asarray(X)
        if X.ndim != 2:
            raise UsageError(f"X must be 2-D (n_samples, n_voxels); got shape {X.shape}.")
        if Y is not None:
            Y = np.asarray(Y)
            if Y.ndim == 1:
                Y = Y[:, None]
            if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
                raise UsageError(
                    f"Y must have shape (n_samples={X.shape[0]}, n_targets); got {Y.shape}."
                )
        if not self.alpha >= 0:
            raise UsageError(f"alpha must be >= 0; got {self.alpha}.")
        if int(self.n_voxels) < 0:
            raise UsageError(f"n_voxels must be >= 0; got {self.n_voxels}.")
        return X, Y

    def fit(self, X, Y):
        X, Y = self._check(X, Y)
        design = prepare_design(X, self.alpha, dtype=np.dtype(self.dtype), device=self.device)
        n_voxels = int(self.n_voxels)
        if _uses_all(design, n_voxels):
            self.coef_, self.voxel_index_, self.intercept_ = fit_chunk(design, Y, n_voxels)
        else:
            Y = _check_y(design, Y)
            n_jobs = _n_jobs(self.n_jobs) if design.device == "cpu" else 1
            bs = self.batch_size or batch_size_for(design, n_voxels, DEFAULT_MEM_BYTES, n_jobs)
            with _UnitPool(n_jobs) as pool:
                parts = pool.map(lambda Yb: _solve_selected(design, Yb, n_voxels, None), Y,
                                 bs)
            self.coef_ = np.concatenate([p[0] for p in parts])
            self.voxel_index_ = np.concatenate([p[1] for p in parts])
            self.intercept_ = np.concatenate([p[2] for p in parts])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        X, _ = self._check(X)
        if X.shape[1] != self.n_features_in_:
            raise UsageError(
                f"X has {X.shape[1]} voxels; the decoder was fitted on {self.n_features_in_}."
            )
        return predict_sparse(X, self.coef_, self.voxel_index_, self.intercept_)
