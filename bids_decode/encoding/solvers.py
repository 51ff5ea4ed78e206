"""Pass 2 of the encoding model: each voxel's ridge on its own selected units, and prediction.

fastl2lir 0.11 solves ``W0[S, S] w = W1[S]`` with ``W0 = [X 1]'[X 1] + alpha I`` over every
feature, which a layer of millions of units cannot hold. Here each voxel's system is built
from its gathered columns: ``A`` of shape (k + 1, n_train) holds its k selected units and a row
of ones (the bias, penalised too), ``(A A' + alpha I) w = A y`` is factorised (Cholesky) and
solved, and the test samples are predicted from the same units (:func:`solve_voxel`).
:func:`gather_group` fills ``A`` for a group of voxels in one pass over the unit chunks.

With every unit selected the voxels share one design, so :func:`all_units_predictions` takes
the dual form ``pred = Kt (K + alpha I)^-1 y`` (``K = [X 1][X 1]'``, ``Kt = [Xt 1][X 1]'``,
accumulated over unit blocks): one pass and one factorisation of n_train x n_train.

Same bits however the work is split: a voxel's ``A`` is the same whatever group it is in (each
is a 64-byte-aligned slot of the group buffer), its solve is one-threaded BLAS/LAPACK calls of
fixed shapes, and the dual sums run over the unit grid in layer order.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from bids_decode.decoding.solvers import COND_MAX
from bids_decode.encoding.chunks import checked_chunks
from bids_decode.encoding.selection import voxel_blocks
from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)

_ALIGN = 64  # bytes
#: selected columns copied at a time by the gather (its temporary: this many training rows)
_GATHER_ROWS = 2048


def group_buffers(n_group: int, k: int, n_train: int, n_test: int, dtype):
    """Empty buffers for a group's gathered columns, each voxel's slot 64-byte aligned.

    Returns
    -------
    A : ndarray of shape (n_group, k + 1, n_train)
        Last row of each voxel's block all ones (the bias).
    T : ndarray of shape (n_group, k, n_test)
    """
    def aligned(shape):
        isz = np.dtype(dtype).itemsize
        per = int(np.prod(shape[1:]))
        stride = -(-per * isz // _ALIGN) * _ALIGN // isz
        raw = np.empty(n_group * stride * isz + _ALIGN, dtype=np.uint8)
        off = (-raw.ctypes.data) % _ALIGN
        strides = (stride * isz, shape[2] * isz, isz)
        return np.ndarray(shape, dtype=dtype, buffer=raw, offset=off, strides=strides)

    A = aligned((n_group, k + 1, n_train))
    A[:, k, :] = 1.0
    return A, aligned((n_group, k, n_test))


def bytes_per_voxel(k: int, n_train: int, n_test: int, itemsize: int) -> int:
    """Memory a voxel takes in a group: its gathered columns and its share of the gather index."""
    return ((k + 1) * n_train + k * n_test) * itemsize + 2 * _ALIGN + 3 * 8 * k


def gather_group(chunks, index: np.ndarray, A: np.ndarray, T: np.ndarray):
    """The selected units' training and test features of a group of voxels, in one pass.

    Parameters
    ----------
    chunks : callable
        As for :func:`bids_decode.encoding.encode_voxels`.
    index : ndarray of shape (n_group, k), int64
        Each voxel's selected units (the order of ``A``'s rows).
    A : ndarray of shape (>= n_group, k + 1, n_train)
    T : ndarray of shape (>= n_group, k, n_test)
        Buffers from :func:`group_buffers` (reused from group to group, so their pages are
        touched once); the first ``n_group`` voxels' slots are filled.
    """
    n_group, k = index.shape
    n_train, n_test = A.shape[2], T.shape[2]
    flat = index.ravel()
    order = np.argsort(flat, kind="stable")
    units = flat[order]
    owner, pos = np.divmod(order, k)
    for start, stop, F_train, F_test in checked_chunks(chunks, n_train, n_test):
        lo, hi = np.searchsorted(units, [start, stop])
        if lo == hi:
            continue
        # units as rows (one copy of the chunk), then row copies in slices of _GATHER_ROWS
        # (the temporaries stay small however many voxels share the chunk)
        ft, tt = np.ascontiguousarray(F_train.T), np.ascontiguousarray(F_test.T)
        for s in range(lo, hi, _GATHER_ROWS):
            e = min(s + _GATHER_ROWS, hi)
            cols = units[s:e] - start
            A[owner[s:e], pos[s:e]] = ft[cols]
            T[owner[s:e], pos[s:e]] = tt[cols]


def solve_voxel(A: np.ndarray, T: np.ndarray, y: np.ndarray, alpha: float):
    """One voxel's ridge on its gathered units, and its test predictions.

    Parameters
    ----------
    A : ndarray of shape (k + 1, n_train), C-contiguous
        Selected units' training features, the bias row (ones) last.
    T : ndarray of shape (k, n_test)
        Their test features.
    y : ndarray of shape (n_train,), same dtype as ``A``
        The voxel's training responses.
    alpha : float

    Returns
    -------
    pred : ndarray of shape (n_test,), float64
        NaN when the system is not positive definite even in float64.
    status : int
        0 solved, 1 redone in float64 (float32 failed or ill-conditioned), 2 failed (NaN),
        3 ill-conditioned in float64 (solved, unreliable).
    """
    w, status = _ridge(A, y, alpha)
    if status and A.dtype != np.float64:
        w64, s64 = _ridge(A.astype(np.float64), y.astype(np.float64), alpha)
        if w64 is None:
            return np.full(T.shape[1], np.nan), 2
        return w64[:-1] @ T.astype(np.float64) + w64[-1], 1 if s64 == 0 else 3
    if w is None:
        return np.full(T.shape[1], np.nan), 2
    return (w[:-1] @ T + w[-1]).astype(np.float64), 3 if status else 0


def _ridge(A, y, alpha):
    """``(A A' + alpha I)^-1 A y`` by Cholesky (LAPACK ``?potrf``/``?potrs``); ``(w, 0)``,
    ``(w, 1)`` when ill-conditioned, or ``(None, 1)`` when not positive definite."""
    from scipy.linalg import get_blas_funcs, get_lapack_funcs

    syrk = get_blas_funcs("syrk", dtype=A.dtype)
    potrf, potrs = get_lapack_funcs(("potrf", "potrs"), dtype=A.dtype)
    G = syrk(1.0, A.T, trans=1, lower=1)  # A A', lower triangle (A.T is Fortran-ordered)
    G[np.diag_indices_from(G)] += alpha
    c, info = potrf(G, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        return None, 1
    d = np.diag(c)
    ill = not d.min() > 0 or (d.max() / d.min()) ** 2 > COND_MAX[A.dtype]
    w, info = potrs(c, A @ y, lower=1)
    return w, int(ill or info != 0)


def report_status(status: np.ndarray) -> None:
    """Warn about voxels whose solve failed or is unreliable (:func:`solve_voxel`'s codes)."""
    n_fail, n_ill = int((status == 2).sum()), int((status == 3).sum())
    if n_fail:
        warnings.warn(f"{n_fail} voxel(s) have a selected-unit system that is not positive "
                      "definite even in float64 (alpha too small?); their predictions are NaN.",
                      RuntimeWarning, stacklevel=3)
    if n_ill:
        warnings.warn(f"{n_ill} voxel(s) have an ill-conditioned selected-unit system in "
                      "float64; their predictions are unreliable: increase alpha.",
                      RuntimeWarning, stacklevel=3)


def all_units_predictions(chunks, V_train: np.ndarray, alpha: float, n_test: int, dtype):
    """Predictions of ridge on every unit of the layer (dual form), for every voxel.

    Parameters
    ----------
    chunks : callable
    V_train : ndarray of shape (n_train, n_voxels), float64
    alpha : float
    n_test : int
    dtype : numpy dtype

    Returns
    -------
    ndarray of shape (n_test, n_voxels), float64
    """
    import scipy.linalg

    n = V_train.shape[0]
    K = np.zeros((n, n), dtype=dtype)
    Kt = np.zeros((n_test, n), dtype=dtype)
    for _, _, F_train, F_test in checked_chunks(chunks, n, n_test):
        for s in range(0, F_train.shape[1], UNIT_BLOCK):
            fb = np.ascontiguousarray(F_train[:, s:s + UNIT_BLOCK].T, dtype=dtype)
            tb = np.ascontiguousarray(F_test[:, s:s + UNIT_BLOCK].T, dtype=dtype)
            K += fb.T @ fb
            Kt += tb.T @ fb
    K += 1.0  # the bias column
    Kt += 1.0
    K[np.diag_indices_from(K)] += alpha
    H = scipy.linalg.solve(K, Kt.T, assume_a="pos").T  # (n_test, n_train)
    pred = np.empty((n_test, V_train.shape[1]), dtype=np.float64)
    for v0, v1 in voxel_blocks(V_train.shape[1]):
        pred[:, v0:v1] = H @ np.ascontiguousarray(V_train[:, v0:v1], dtype=dtype)
    return pred
