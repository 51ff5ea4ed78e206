"""The encoding model's entry point: select, gather and solve, streamed over unit chunks.

:func:`encode_voxels` runs the two passes of :mod:`bids_decode.encoding`: one over the layer for
each voxel's top-k units (:func:`~bids_decode.encoding.selection.select_units`), then one per
group of voxels, sized from the memory budget, that gathers the group's selected units
(:func:`~bids_decode.encoding.solvers.gather_group`) and solves each voxel with the backend of
``device`` (:meth:`~bids_decode.backends.Backend.solve_voxels`: on ``n_jobs`` threads on the
CPU, batched on a torch device). With every unit selected, one more pass and the dual form
serve every voxel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bids_decode.backends import resolve_backend
from bids_decode.decoding.selection import n_selected
from bids_decode.decoding.solvers import COND_MAX
from bids_decode.encoding.chunks import thread_map
from bids_decode.encoding.selection import select_units
from bids_decode.encoding.solvers import (
    all_units_predictions,
    bytes_per_voxel,
    gather_group,
    group_buffers,
    report_status,
)
from bids_decode.errors import DataError, UsageError
from bids_decode.utils.docs import fill_doc

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class EncodingFit:
    """The result of :func:`encode_voxels`.

    Attributes
    ----------
    pred : ndarray of shape (n_test, n_voxels), float64
        Predicted test responses.
    index : ndarray of shape (n_voxels, k), int64
        Each voxel's selected units by decreasing absolute correlation (ties: lower unit
        first); with every unit selected, k is the layer's units (the full ranking).
    n_layer_units : int
        Units of the layer.
    """

    pred: np.ndarray
    index: np.ndarray
    n_layer_units: int


def check_voxels(V_train) -> np.ndarray:
    """``V_train`` as a finite float64 array of shape (n_train, n_voxels)."""
    V = np.asarray(V_train, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] < 2 or V.shape[1] < 1:
        raise UsageError("V_train must have shape (n_train >= 2, n_voxels >= 1) (samples x "
                         f"voxels); got {V.shape}.")
    if not np.isfinite(V).all():
        bad = np.flatnonzero(~np.isfinite(V).all(axis=0))
        raise DataError(f"V_train (voxel responses) contains NaN or infinite values in "
                        f"{bad.size} voxel(s) (first: voxel {int(bad[0])}); mask those voxels "
                        "out of the ROI or clean the BOLD data before encoding.")
    return V


def _check_args(n_units, alpha, dtype, device) -> np.dtype:
    if int(n_units) != n_units or n_units < 0:
        raise UsageError(f"n_units must be an integer >= 0 (0: all units); got {n_units!r}.")
    if not alpha > 0:
        raise UsageError(f"alpha must be > 0; got {alpha!r}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UsageError(f"dtype must be float32 or float64; got {dtype}.")
    backend = resolve_backend(device)
    backend.check_available()
    return dtype


def group_size(n_vox: int, k: int, n_train: int, n_test: int, itemsize: int, mem_bytes: int,
               n_jobs: int, multiple: int = 1) -> int:
    """Voxels solved per gather pass so that the group's buffers fit ``mem_bytes``, a
    multiple of ``multiple`` when it holds that many
    (:attr:`~bids_decode.backends.Backend.voxel_batch`).

    Counted: the selected index and the predictions of every voxel, each thread's Gram
    workspace, and per voxel of the group :func:`~bids_decode.encoding.solvers.bytes_per_voxel`.
    """
    fixed = n_vox * (8 * k + 8 * n_test) + n_jobs * 3 * 8 * (k + 1) ** 2
    per = bytes_per_voxel(k, n_train, n_test, itemsize)
    if mem_bytes - fixed < per:
        raise UsageError(f"A memory budget of {mem_bytes / 2**20:.0f} MiB cannot hold one "
                         f"voxel's {k} selected units ({(fixed + per) / 2**20:.0f} MiB needed); "
                         "raise the memory budget.")
    size = int((mem_bytes - fixed) // per)
    return min(n_vox, size // multiple * multiple if size >= multiple else size)


@fill_doc
def encode_voxels(chunks, V_train, *, n_units: int, alpha: float, dtype=np.float64,
                  device="cpu", n_jobs=None, mem_bytes=1 << 30) -> EncodingFit:
    """Voxel-wise encoding: per voxel, ridge on the ``n_units`` units most correlated with it.

    fastl2lir 0.11 with features as X and voxels as Y (``n_feat=n_units``), streamed: the layer
    never sits in memory.

    Parameters
    ----------
    chunks : callable
        ``chunks()`` returns a new iterator of ``(start, stop, F_train, F_test)``: consecutive
        unit chunks of one layer from unit 0, ``start`` on the unit grid, ``F_train`` of shape
        (n_train, stop - start), ``F_test`` of shape (n_test, stop - start). Called once for
        the selection and once per voxel group.
    V_train : ndarray of shape (n_train, n_voxels)
        Training responses (any scaling). A voxel shard passes columns starting on the
        :data:`~bids_decode.encoding.VOXEL_BLOCK` grid.
    n_units : int
        Units per voxel (k); 0 or at least the layer's units means all units.
    alpha : float
        Ridge penalty (on the weights and the bias).
    dtype : float32 or float64, default float64
        Precision of the scores and the solves (float32 rankings of near-ties may differ from
        float64's).
    device : str or Backend, default "cpu"
        A ``--device`` string (:func:`~bids_decode.backends.resolve_backend`): ``cpu`` (numpy
        and the compiled top-k kernel on ``n_jobs`` threads), or ``cuda``, ``cuda:N`` or
        ``torch-cpu`` (the scores, the running top k and the batched solves with torch on
        that device; the gather stays on the host). float64 gives the CPU's selections and
        predictions to rounding (a near-tie within rounding may rank differently).
    %(n_jobs)s
    mem_bytes : int, default 1 GiB
        Memory budget of the model's own host arrays (the caller's chunks not counted); on a
        GPU its arrays are held to 80% of its free memory
        (:meth:`~bids_decode.backends.Backend.device_bytes`).

    Returns
    -------
    EncodingFit
    """
    # long: the two passes and the all-units branch read best in one place
    dtype = _check_args(n_units, alpha, dtype, device)
    V = check_voxels(V_train)
    backend = resolve_backend(device)
    n_jobs = backend.n_threads(n_jobs)
    index, n_layer, n_test = select_units(chunks, V, int(n_units), dtype=dtype, n_jobs=n_jobs,
                                          mem_bytes=mem_bytes, device=backend)
    k = n_selected(int(n_units), n_layer)
    if k == n_layer:
        with thread_map(1):
            pred = all_units_predictions(chunks, V, float(alpha), n_test, dtype, backend)
        return EncodingFit(pred=pred, index=index, n_layer_units=n_layer)
    n_vox = V.shape[1]
    size = group_size(n_vox, k, V.shape[0], n_test, dtype.itemsize, mem_bytes, n_jobs,
                      backend.voxel_batch)
    LOGGER.info("encoding %d voxels from %d units (k=%d) in %d group(s) of <= %d voxels",
                n_vox, n_layer, k, -(-n_vox // size), size)
    pred = np.empty((n_test, n_vox), dtype=np.float64)
    status = np.zeros(n_vox, dtype=np.int64)
    Vt = np.ascontiguousarray(V.T, dtype=dtype)
    A, T = group_buffers(size, k, V.shape[0], n_test, dtype)
    with thread_map(n_jobs) as pmap:
        for g0 in range(0, n_vox, size):
            g1 = min(g0 + size, n_vox)
            gather_group(chunks, index[g0:g1], A, T)
            p, status[g0:g1] = backend.solve_voxels(A[:g1 - g0], T[:g1 - g0], Vt[g0:g1],
                                                    float(alpha), COND_MAX, pmap, mem_bytes)
            pred[:, g0:g1] = p.T
    report_status(status)
    return EncodingFit(pred=pred, index=index, n_layer_units=n_layer)

