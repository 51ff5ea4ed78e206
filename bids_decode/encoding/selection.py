"""Pass 1 of the encoding model: each voxel's top-k units by absolute Pearson r, streamed.

For a voxel ``v`` and a unit ``u`` over the training samples, ``|r(u, v)| = |fc_u' vz_v| /
||fc_u||`` (``fc_u`` the centred unit, ``vz_v`` the centred unit-norm voxel), so every block of
units costs one GEMM with the voxels, and the backend's running top-k state offers the
block to each voxel's k best so far (on the CPU a compiled heap,
:class:`bids_decode.backends.cpu_topk.TopUnits`; with torch a stable sort on the device,
:class:`bids_decode.backends.torch_encoding.TorchTopUnits`). Units whose variance is below
:data:`~bids_decode.decoding.design.CONSTANT_VAR` score 0,
as in fastl2lir, so they are never selected before a correlated unit.

Same bits however the work is split: every GEMM has the fixed shape
(:data:`VOXEL_BLOCK` voxels) x (:data:`~bids_decode.utils.grid.UNIT_BLOCK` units), both
blocks counted from the first voxel and the first unit; each unit is centred on its own; each
voxel's heap sees the units in layer order and keeps the earlier unit of equal scores. So the
selection does not depend on the chunk sizes, the thread count or which voxels are encoded
together (a voxel shard starts on the :data:`VOXEL_BLOCK` grid).

In float32 the scores are float32 GEMMs: units whose correlations differ by less than the
float32 rounding may rank in another order than in float64 (fastl2lir's precision).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends import resolve_backend
from bids_decode.decoding.design import CONSTANT_VAR
from bids_decode.encoding.chunks import checked_chunks, thread_map
from bids_decode.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: Voxels per block of the voxel grid: every selection GEMM covers one such block, and voxel
#: shards start on it (so a voxel's results do not depend on which voxels share its run).
VOXEL_BLOCK = 256


def voxel_blocks(n_voxels: int) -> list[tuple[int, int]]:
    """``[(v0, v1), ...]``: the :data:`VOXEL_BLOCK` grid over ``n_voxels`` voxels."""
    return [(v0, min(v0 + VOXEL_BLOCK, n_voxels)) for v0 in range(0, n_voxels, VOXEL_BLOCK)]


def standardized_voxels(V_train: np.ndarray, dtype) -> list[np.ndarray]:
    """Voxels centred and scaled to unit norm (constant voxels all zero), per voxel block.

    Parameters
    ----------
    V_train : ndarray of shape (n_train, n_voxels), float64
    dtype : numpy dtype
        Precision of the selection GEMMs.

    Returns
    -------
    list of ndarray of shape (v1 - v0, n_train)
        One C-contiguous array per block of :func:`voxel_blocks`.
    """
    vc = V_train - V_train.mean(axis=0)
    norm = np.sqrt((vc**2).sum(axis=0))
    const = norm <= np.sqrt(CONSTANT_VAR * V_train.shape[0])
    if const.any():
        LOGGER.warning("%d voxel(s) are constant over the training samples; their units are "
                       "chosen by index and their predictions are constant.", int(const.sum()))
    vz = np.divide(vc, norm, out=np.zeros_like(vc), where=~const)
    return [np.ascontiguousarray(vz[:, v0:v1].T, dtype=dtype)
            for v0, v1 in voxel_blocks(vz.shape[1])]


def centred_units(F_train: np.ndarray, dtype):
    """Units of a chunk centred, transposed, and their inverse norms.

    Returns
    -------
    fc : ndarray of shape (n_units, n_train), ``dtype``, C-contiguous
    inv_norm : ndarray of shape (n_units,), ``dtype``
        ``1 / ||fc_u||``, 0 where the unit's variance is below ``CONSTANT_VAR``.
    """
    ft = np.ascontiguousarray(F_train.T, dtype=np.float64)
    ft -= ft.mean(axis=1, keepdims=True)
    sq = (ft * ft).sum(axis=1)
    const = sq < CONSTANT_VAR * ft.shape[1]
    inv = np.divide(1.0, np.sqrt(sq), out=np.zeros_like(sq), where=~const)
    return ft.astype(dtype), inv.astype(dtype)


def select_units(chunks, V_train: np.ndarray, k: int, *, dtype=np.float64, n_jobs: int = 1,
                 mem_bytes: int = 1 << 30, device="cpu"):
    """Each voxel's ``k`` units of highest absolute correlation, in one pass over the layer.

    Parameters
    ----------
    chunks : callable
        As for :func:`bids_decode.encoding.encode_voxels`.
    V_train : ndarray of shape (n_train, n_voxels), float64, finite
    k : int
        Units per voxel; 0 keeps every unit (ranked).
    dtype : float32 or float64
        Precision of the scores.
    n_jobs : int
        Threads (over voxel blocks).
    mem_bytes : int
        Budget for the state (the caller's chunks not counted); on a GPU, the state is held
        to the device's budget (:meth:`~bids_decode.backends.Backend.device_bytes`).
    device : str or Backend
        Where the scores and the running top k live
        (:func:`~bids_decode.backends.resolve_backend`).

    Returns
    -------
    index : ndarray of shape (n_voxels, min(k, n_layer_units)) (all units for k = 0), int64
        By decreasing absolute correlation, ties by unit index.
    n_layer_units : int
    n_test : int
        Test samples (rows of every chunk's ``F_test``).
    """
    backend = resolve_backend(device)
    budget = backend.device_bytes(mem_bytes)
    state = backend.top_units(standardized_voxels(V_train, dtype), k, budget)
    if state.nbytes > budget:
        raise UsageError(_too_big(state.nbytes, budget, k, V_train.shape[1]))
    n_layer = n_test = 0
    with thread_map(n_jobs) as pmap:
        for start, stop, F_train, F_test in checked_chunks(chunks, V_train.shape[0]):
            n_layer, n_test = stop, F_test.shape[0]
            state.offer(start, *centred_units(F_train, dtype), pmap)
            if state.nbytes > budget:
                raise UsageError(_too_big(state.nbytes, budget, k, V_train.shape[1]))
    LOGGER.debug("selected %s units per voxel of %d", k or "all", n_layer)
    return state.index(), n_layer, n_test


def _too_big(nbytes: int, mem_bytes: int, k: int, n_vox: int) -> str:
    what = "every unit of the layer (n_units 0)" if k == 0 else f"{k} units"
    return (f"Ranking {what} for {n_vox} voxels needs {nbytes / 2**20:.0f} MiB, more than the "
            f"memory budget of {mem_bytes / 2**20:.0f} MiB; raise the memory budget or select "
            "fewer units per voxel.")
