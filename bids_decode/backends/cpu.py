"""The CPU backend: numpy GEMMs on the unit grid, the compiled kernel on ``n_jobs`` threads.

:class:`CPUBackend` runs the batch solve with the numba kernel
(:mod:`bids_decode.backends.cpu_kernels`), or with the torch kernel on the CPU where numba is
missing (:func:`solve_cpu`). :func:`cpu_info` records the CPU and the code paths the kernels
take on it (for provenance).
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from bids_decode.backends import cpu_kernels, cpu_ridge, torch_kernels
from bids_decode.backends.base import Backend, blockwise, row_sums
from bids_decode.backends.cpu_topk import TopUnits
from bids_decode.backends.cpuinfo import cpu_model, isa_info
from bids_decode.backends.lapack import lapack_info, lapack_provider
from bids_decode.backends.numba_cache import have_numba

LOGGER = logging.getLogger(__name__)


def resolve_n_jobs(n_jobs) -> int:
    """``n_jobs``, or all CPUs the process may use for None or <= 0."""
    if n_jobs is None or n_jobs <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    return int(n_jobs)


def solve_cpu(gram, index, rhs, cond_max, xt):
    """:func:`bids_decode.backends.cpu_kernels.solve_selected_numba`, or its torch fallback without
    numba (same arguments and returns, numpy arrays)."""
    if have_numba():
        return cpu_kernels.solve_selected_numba(gram, index, rhs, cond_max, xt)
    import torch  # fallback without numba: batched torch CPU calls

    t = torch.from_numpy
    out = torch_kernels.solve_selected_torch(
        t(np.ascontiguousarray(gram)), t(index), t(rhs.astype(gram.dtype)), cond_max,
        None if xt is None else t(np.ascontiguousarray(xt, dtype=gram.dtype)))
    return tuple(None if o is None else o.numpy() for o in out)


class CPUBackend(Backend):
    """numpy GEMMs on the unit grid, the compiled kernel, ``n_jobs`` threads."""

    name = "cpu"
    threads = True
    host_finite_check = True

    def __init__(self):
        super().__init__()
        self.refines_float32 = have_numba()

    def check_available(self) -> None:
        if have_numba():
            lapack_provider()  # a bad BIDS_DECODE_LAPACK is a usage error

    def n_threads(self, n_jobs) -> int:
        return resolve_n_jobs(n_jobs)

    def _workspace_bytes(self, k: int, itemsize: int) -> int:
        # the kernel gathers the Gram blocks of a sub-batch of units at once
        return cpu_kernels.SUB_BATCH * (k + 1) ** 2 * itemsize

    # -- arrays of one design
    def arrays(self, design) -> dict:
        """``xz``, ``norm`` and ``mean`` of the design (float64; the host arrays)."""
        return {"xz": design.xz, "norm": design.norm, "mean": design.mean}

    def gram(self, design):
        """``X'X + alpha I`` in the design's dtype."""
        return design.gram

    def gram64(self, design):
        """``X'X + alpha I`` in float64 (recomputed, not upcast)."""
        return design.gram_as(np.float64)

    def float32_scores(self, design):
        """``xz`` in float32 and ``xz'`` in float64, C-contiguous (the refined selection)."""
        return self.cached(design, "xz32", lambda: (design.xz.astype(np.float32),
                                                    np.ascontiguousarray(design.xz.T)))

    def test_data(self, design, xt):
        return xt

    # -- array operations
    def correlations(self, design, Y):
        """``xz' y`` per unit (one float64 GEMM per grid block) and ``sum(y)``.

        Returns ct (n_units, n_voxels) float64, ysum (n_units,) float64, and None (the
        targets were checked on the host).
        """
        xz = design.xz
        return blockwise(lambda yt: yt @ xz, Y, xz.shape[1], np.float64), row_sums(Y), None

    @staticmethod
    def top_k(scores, k: int):
        """Indices of the ``k`` largest scores per row, ascending."""
        p = scores.shape[1]
        idx = np.argpartition(scores, p - k, axis=1)[:, p - k:]
        idx.sort(axis=1)
        return idx

    abs = staticmethod(np.abs)

    @staticmethod
    def take_along(a, index):
        return np.take_along_axis(a, index, axis=1)

    @staticmethod
    def empty64(shape, like):
        return np.empty(shape, dtype=np.float64)

    @staticmethod
    def astype(a, dtype):
        return a.astype(dtype)

    @staticmethod
    def as_float64(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    @staticmethod
    def solve(gram, index, rhs, cond_max, xt):
        return solve_cpu(gram, index, rhs, cond_max, xt)

    @staticmethod
    def flagged(status):
        """Units whose solve failed (status != 0)."""
        return np.flatnonzero(status != 0)

    @staticmethod
    def to_host(a):
        return a

    # -- the encoding model
    @staticmethod
    def top_units(vz_blocks, k: int, mem_bytes: int):
        """Each voxel's heap, updated by the compiled kernel on threads."""
        return TopUnits(vz_blocks, k)

    @staticmethod
    def solve_voxels(A, T, Yt, alpha: float, cond_max, pmap, mem_bytes: int):
        """One-threaded LAPACK per voxel, voxels on ``pmap``'s threads."""
        return cpu_ridge.solve_voxels(A, T, Yt, alpha, cond_max, pmap)

    @staticmethod
    def dual_predictions(blocks, V_train, alpha: float, n_test: int, dtype, voxel_blocks):
        return cpu_ridge.dual_predictions(blocks, V_train, alpha, n_test, dtype, voxel_blocks)


def cpu_info() -> dict:
    """The CPU and the code paths the decoder's kernels take on it (for provenance).

    Returns
    -------
    dict
        ``model`` (``/proc/cpuinfo``), ``host_isa``, ``kernel_isa`` and ``numba_cpu``
        (:func:`~bids_decode.backends.cpuinfo.isa_info`), ``lapack`` (the kernel's) and
        ``lapack_chosen_by`` (:func:`~bids_decode.backends.lapack.lapack_info`; with numba),
        ``openblas`` (numpy's OpenBLAS version and kernel family), and the settings
        ``MKL_ENABLE_INSTRUCTIONS``, ``MKL_CBWR`` and ``OPENBLAS_CORETYPE`` when set.
    """
    info = {"model": cpu_model(), **isa_info()}
    if have_numba():
        info.update(lapack_info())
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        if blas:
            info["openblas"] = f"{blas[0].get('version')} {blas[0].get('architecture')}"
    for var in ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OPENBLAS_CORETYPE"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info
