"""The backend interface: the device-dependent steps of the selected-voxel decoder.

:class:`Backend` declares the few array operations in which the devices differ (the
correlation GEMM, top-k, gathers, the batched solve, copies to and from the host), its device
state per design and its memory model; :mod:`bids_decode.backends.cpu` and
:mod:`bids_decode.backends.torch` implement it. Also here: the status codes of the batch solve
and the unit-grid helpers both backends use (:func:`blockwise`, :func:`row_sums`).
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)

# status codes of a unit's solve (else a positive LAPACK ``info``: not positive definite)
OK = 0
ILL_CONDITIONED = -1


def blockwise(fn, Y, n_out: int, dtype) -> np.ndarray:
    """Apply ``fn`` to each :data:`~bids_decode.utils.grid.UNIT_BLOCK`-unit block of ``Y``'s
    columns.

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


def row_sums(Y) -> np.ndarray:
    """Column sums of ``Y`` (n_samples, n_units), float64, each unit's independent of the others
    (a contiguous reduction per unit)."""
    return np.ascontiguousarray(np.asarray(Y).T, dtype=np.float64).sum(axis=1)


class Backend:
    """The device-dependent steps of the selected-voxel decoder (base class).

    A backend provides, on its device (numpy arrays for :class:`CPUBackend`, tensors for
    :class:`TorchBackend`):

    - design state: ``arrays(design)`` (``xz``, ``norm``, ``mean``), ``gram(design)``,
      ``gram64(design)``, ``test_data(design, xt)``;
    - ``correlations(design, Y)`` → ``(ct, ysum, finite)``: ``xz' y`` per grid block;
    - ``top_k(scores, k)`` (ascending indices), ``abs``, ``take_along(a, index)``,
      ``empty64(shape, like)``, ``astype(a, dtype)``, ``as_float64(a)``;
    - ``solve(gram, index, rhs, cond_max, xt)`` → ``(coef, intercept, status, pred)`` (the
      contract of :func:`bids_decode.backends.cpu_kernels.solve_selected_numba`),
      ``flagged(status)`` (units with status != 0; a device synchronises here) and
      ``to_host(a)``;
    - for the encoding model (:mod:`bids_decode.encoding`): ``top_units(vz_blocks, k,
      mem_bytes)`` (the running top-k state of the selection pass), ``solve_voxels(A, T, Yt,
      alpha, cond_max, pmap, mem_bytes)`` (each voxel's ridge on its gathered units),
      ``dual_predictions(...)`` (every unit selected) and ``device_bytes(mem_bytes)`` (the
      budget of the arrays on the device).

    Attributes
    ----------
    name : str
        The ``--device`` string.
    threads : bool
        Whether unit tasks run on ``n_jobs`` CPU threads (else one at a time).
    host_finite_check : bool
        Whether targets are checked for NaN on the host before a batch (else on the device,
        read with the results).
    refines_float32 : bool
        Whether float32 designs select from a float32 GEMM refined to the float64 ranking
        (:func:`bids_decode.decoding.selection._select_rhs_float32`).
    voxel_batch : int
        The encoding model's voxel groups are multiples of it (when they hold that many), so
        that a fixed-shape batched solve sees the same voxels together however the work is
        split.
    """

    name = "?"
    threads = False
    host_finite_check = False
    refines_float32 = False
    voxel_batch = 1

    def __init__(self):
        self._states = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def cached(self, design, key, make):
        """``make()`` once per design and key, kept while the design lives."""
        state = self._states.get(design)
        if state is None:
            state = self._states.setdefault(design, {})
        if key not in state:  # threads may race to make it: one atomic store
            state[key] = make()
        return state[key]

    def check_available(self) -> None:
        """Refuse a device this process cannot use (:class:`UsageError`), before any work."""

    def torch_device(self):
        """The ``torch.device`` of this backend (networks and permutation tests run there)."""
        import torch

        return torch.device("cpu")

    def n_threads(self, n_jobs) -> int:
        """Threads for unit tasks: ``n_jobs`` resolved on the CPU, 1 on a device."""
        return 1

    def memory_model(self, n_samples: int, n_voxels: int, k: int, itemsize: int,
                     n_jobs: int) -> tuple[int, int]:
        """Bytes the decoder holds: ``(per unit of a task, fixed for n_jobs threads)``.

        Per unit: the float64 GEMM output, scores and partition indices (8 bytes each per
        voxel), the float64 copy of Y, and the outputs, plus :meth:`_gather_bytes`; fixed: each
        thread's solver workspace (:meth:`_workspace_bytes`). Used by :meth:`batch_size_for`
        and by the run's memory plan (:func:`bids_decode.resources.memory_plan`).
        """
        per_unit = 8 * (4 * n_voxels + 2 * n_samples + 4 * (k + 1)) + self._gather_bytes(
            k, itemsize)
        return per_unit, self._workspace_bytes(k, itemsize) * n_jobs

    def batch_size_for(self, n_samples: int, n_voxels: int, k: int, itemsize: int,
                       mem_bytes: int, n_jobs: int) -> int:
        """Units per task so that ``n_jobs`` tasks stay within ``mem_bytes``
        (:meth:`memory_model`)."""
        per_unit, fixed = self.memory_model(n_samples, n_voxels, k, itemsize, n_jobs)
        return int(max(16, min(65536, (mem_bytes - fixed) // (per_unit * max(1, n_jobs)))))

    def _workspace_bytes(self, k: int, itemsize: int) -> int:
        return 8 * (k + 1) ** 2

    def _gather_bytes(self, k: int, itemsize: int) -> int:
        return 0

    # -- the encoding model (bids_decode.encoding); each backend implements these
    def device_bytes(self, mem_bytes: int) -> int:
        """Budget of the encoding model's arrays on this backend's device: ``mem_bytes``."""
        return int(mem_bytes)

    def top_units(self, vz_blocks, k: int, mem_bytes: int):
        """The running top-k state of the selection pass, with ``offer(start, fc, inv_norm,
        pmap)``, ``index()`` and ``nbytes`` (:class:`bids_decode.backends.cpu_topk.TopUnits`).
        """
        raise NotImplementedError

    def solve_voxels(self, A, T, Yt, alpha: float, cond_max, pmap, mem_bytes: int):
        """Each voxel's ridge on its gathered units and its predictions, ``(pred, status)``
        (:func:`bids_decode.backends.cpu_ridge.solve_voxels`)."""
        raise NotImplementedError

    def dual_predictions(self, blocks, V_train, alpha: float, n_test: int, dtype,
                         voxel_blocks):
        """Predictions with every unit selected
        (:func:`bids_decode.backends.cpu_ridge.dual_predictions`)."""
        raise NotImplementedError
