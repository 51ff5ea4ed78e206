"""The CPU solve of the encoding model: each voxel's ridge on its gathered units, and the
dual form with every unit selected.

:func:`solve_voxels` runs :func:`solve_voxel` (one-threaded LAPACK ``?potrf``/``?potrs`` on
the voxel's own (k + 1) x (k + 1) Gram) for a group of voxels on threads;
:func:`dual_predictions` accumulates ``K = [X 1][X 1]'`` and ``Kt = [Xt 1][X 1]'`` over the
unit grid and solves once for every voxel. The status codes (:data:`SOLVED`, ...) are shared
with the torch solve (:mod:`bids_decode.backends.torch_encoding`).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)

#: status of a voxel's solve: solved; redone in float64 (float32 failed or ill-conditioned);
#: failed (not positive definite even in float64: NaN); ill-conditioned in float64 (solved,
#: unreliable)
SOLVED, REDONE_FLOAT64, FAILED, ILL_CONDITIONED_64 = 0, 1, 2, 3


def solve_voxel(A: np.ndarray, T: np.ndarray, y: np.ndarray, alpha: float, cond_max):
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
    cond_max : mapping
        Largest condition number trusted, per numpy dtype
        (:data:`bids_decode.decoding.solvers.COND_MAX`).

    Returns
    -------
    pred : ndarray of shape (n_test,), float64
        NaN when the system is not positive definite even in float64.
    status : int
        :data:`SOLVED`, :data:`REDONE_FLOAT64`, :data:`FAILED` or :data:`ILL_CONDITIONED_64`.
    """
    w, status = _ridge(A, y, alpha, cond_max)
    if status and A.dtype != np.float64:
        w64, s64 = _ridge(A.astype(np.float64), y.astype(np.float64), alpha, cond_max)
        if w64 is None:
            return np.full(T.shape[1], np.nan), FAILED
        return (w64[:-1] @ T.astype(np.float64) + w64[-1],
                REDONE_FLOAT64 if s64 == 0 else ILL_CONDITIONED_64)
    if w is None:
        return np.full(T.shape[1], np.nan), FAILED
    return (w[:-1] @ T + w[-1]).astype(np.float64), ILL_CONDITIONED_64 if status else SOLVED


def _ridge(A, y, alpha, cond_max):
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
    ill = not d.min() > 0 or (d.max() / d.min()) ** 2 > cond_max[A.dtype]
    w, info = potrs(c, A @ y, lower=1)
    return w, int(ill or info != 0)


def solve_voxels(A, T, Yt, alpha: float, cond_max, pmap):
    """:func:`solve_voxel` for a group of voxels, on ``pmap``'s threads.

    Parameters
    ----------
    A : ndarray of shape (n_group, k + 1, n_train)
    T : ndarray of shape (n_group, k, n_test)
    Yt : ndarray of shape (n_group, n_train), ``A``'s dtype
    alpha : float
    cond_max : mapping
    pmap : callable
        ``pmap(fn, items) -> list`` (:func:`bids_decode.encoding.chunks.thread_map`).

    Returns
    -------
    pred : ndarray of shape (n_group, n_test), float64
    status : ndarray of shape (n_group,), int64
    """
    out = pmap(lambda j: solve_voxel(A[j], T[j], Yt[j], alpha, cond_max), range(len(Yt)))
    pred = np.empty((len(Yt), T.shape[2]), dtype=np.float64)
    status = np.zeros(len(Yt), dtype=np.int64)
    for j, (p, s) in enumerate(out):
        pred[j], status[j] = p, s
    return pred, status


def dual_predictions(blocks, V_train, alpha: float, n_test: int, dtype, voxel_blocks):
    """Predictions of ridge on every unit (dual form), for every voxel.

    Parameters
    ----------
    blocks : iterable of (F_train, F_test)
        The layer's unit chunks in order, ``F_train`` of shape (n_train, n), ``F_test`` of
        shape (n_test, n).
    V_train : ndarray of shape (n_train, n_voxels), float64
    alpha : float
    n_test : int
    dtype : numpy dtype
    voxel_blocks : list of (v0, v1)
        The voxel grid (each block's product has a fixed shape).

    Returns
    -------
    ndarray of shape (n_test, n_voxels), float64
    """
    import scipy.linalg

    n = V_train.shape[0]
    K = np.zeros((n, n), dtype=dtype)
    Kt = np.zeros((n_test, n), dtype=dtype)
    for F_train, F_test in blocks:
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
    for v0, v1 in voxel_blocks:
        pred[:, v0:v1] = H @ np.ascontiguousarray(V_train[:, v0:v1], dtype=dtype)
    return pred
