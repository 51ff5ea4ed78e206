"""Pass 2 of the encoding model: each voxel's ridge on its own selected units, and prediction.

fastl2lir 0.11 solves ``W0[S, S] w = W1[S]`` with ``W0 = [X 1]'[X 1] + alpha I`` over every
feature, which a layer of millions of units cannot hold. Here each voxel's system is built
from its gathered columns: ``A`` of shape (k + 1, n_train) holds its k selected units and a row
of ones (the bias, penalised too), ``(A A' + alpha I) w = A y`` is factorised (Cholesky) and
solved, and the test samples are predicted from the same units
(:func:`bids_decode.backends.cpu_ridge.solve_voxel`).
:func:`gather_group` fills ``A`` for a group of voxels in one pass over the unit chunks.

With every unit selected the voxels share one design, so :func:`all_units_predictions` takes
the dual form ``pred = Kt (K + alpha I)^-1 y`` (``K = [X 1][X 1]'``, ``Kt = [Xt 1][X 1]'``,
accumulated over unit blocks): one pass and one factorisation of n_train x n_train.

Same bits however the work is split: a voxel's ``A`` is the same whatever group it is in (each
is a 64-byte-aligned slot of the group buffer), its solve is one-threaded BLAS/LAPACK calls of
fixed shapes, and the dual sums run over the unit grid in layer order.

The solves themselves are the backend's (:meth:`~bids_decode.backends.Backend.solve_voxels`:
:mod:`bids_decode.backends.cpu_ridge` on threads, or batched on a torch device,
:mod:`bids_decode.backends.torch_encoding`); this module gathers and reports.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from bids_decode.backends import resolve_backend
from bids_decode.backends.cpu_ridge import FAILED, ILL_CONDITIONED_64
from bids_decode.encoding.chunks import checked_chunks
from bids_decode.encoding.selection import voxel_blocks

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


def report_status(status: np.ndarray) -> None:
    """Warn about voxels whose solve failed or is unreliable (the codes of
    :mod:`bids_decode.backends.cpu_ridge`)."""
    n_fail, n_ill = int((status == FAILED).sum()), int((status == ILL_CONDITIONED_64).sum())
    if n_fail:
        warnings.warn(f"{n_fail} voxel(s) have a selected-unit system that is not positive "
                      "definite even in float64 (alpha too small?); their predictions are NaN.",
                      RuntimeWarning, stacklevel=3)
    if n_ill:
        warnings.warn(f"{n_ill} voxel(s) have an ill-conditioned selected-unit system in "
                      "float64; their predictions are unreliable: increase alpha.",
                      RuntimeWarning, stacklevel=3)


def all_units_predictions(chunks, V_train: np.ndarray, alpha: float, n_test: int, dtype,
                          device="cpu"):
    """Predictions of ridge on every unit of the layer (dual form), for every voxel.

    Parameters
    ----------
    chunks : callable
    V_train : ndarray of shape (n_train, n_voxels), float64
    alpha : float
    n_test : int
    dtype : numpy dtype
    device : str or Backend
        Where ``K``, ``Kt`` and the solve live
        (:meth:`~bids_decode.backends.Backend.dual_predictions`).

    Returns
    -------
    ndarray of shape (n_test, n_voxels), float64
    """
    blocks = ((F_train, F_test) for _, _, F_train, F_test
              in checked_chunks(chunks, V_train.shape[0], n_test))
    return resolve_backend(device).dual_predictions(blocks, V_train, alpha, n_test, dtype,
                                                    voxel_blocks(V_train.shape[1]))
