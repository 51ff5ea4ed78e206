"""Where the decoder and the feature extraction run: backend objects resolved from ``--device``.

:func:`resolve_backend` turns a ``--device`` string into one shared backend object (the same
object for the same string in a process), validated once:

- ``"cpu"`` → :class:`CPUBackend`: numpy GEMMs on the unit grid and the compiled (numba)
  kernel of :mod:`bids_decode.backends.kernels`, run on ``n_jobs`` threads;
- ``"torch-cpu"``, ``"cuda"``, ``"cuda:N"`` → :class:`TorchBackend`: every step with torch on
  that device (``torch-cpu`` runs the GPU code path on the CPU, for tests).

A backend offers the few array operations in which the devices differ (the correlation
GEMM, top-k, gathers, the batched solve, copies to and from the host); the selection, the
right-hand sides and the float64 redo are written once against them in
:mod:`bids_decode.decoding.solvers`. Each backend owns its device state per design (the design's
arrays on the device, the test data), held in a weak mapping so it goes with the design,
and its memory model (:meth:`Backend.batch_size_for`).
"""

from __future__ import annotations

import functools
import os
import re
import weakref

import numpy as np

from bids_decode.backends import kernels as _backends
from bids_decode.errors import UsageError
from bids_decode.utils.grid import UNIT_BLOCK

#: the accepted ``--device`` strings
DEVICE_PATTERN = re.compile(r"^(cpu|torch-cpu|cuda(:\d+)?)$")


def resolve_backend(device="cpu") -> Backend:
    """The backend of a ``--device`` value (a backend object passes through).

    Parameters
    ----------
    device : str or Backend
        ``"cpu"``, ``"torch-cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    Backend
        One object per device string and process, so its device state is shared.

    Raises
    ------
    UsageError
        For any other string.
    """
    if isinstance(device, Backend):
        return device
    return _resolve(str(device))


@functools.cache
def _resolve(device: str) -> Backend:
    if not DEVICE_PATTERN.match(device):
        raise UsageError(f"--device must be cpu, cuda or cuda:N; got {device!r}.")
    return CPUBackend() if device == "cpu" else TorchBackend(device)


def resolve_n_jobs(n_jobs) -> int:
    """``n_jobs``, or all CPUs the process may use for None or <= 0."""
    if n_jobs is None or n_jobs <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    return int(n_jobs)


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


def solve_cpu(gram, index, rhs, cond_max, xt):
    """:func:`bids_decode.backends.kernels.solve_selected_numba`, or its torch fallback without
    numba (same arguments and returns, numpy arrays)."""
    if _backends.have_numba():
        return _backends.solve_selected_numba(gram, index, rhs, cond_max, xt)
    import torch  # fallback without numba: batched torch CPU calls

    t = torch.from_numpy
    out = _backends.solve_selected_torch(
        t(np.ascontiguousarray(gram)), t(index), t(rhs.astype(gram.dtype)), cond_max,
        None if xt is None else t(np.ascontiguousarray(xt, dtype=gram.dtype)))
    return tuple(None if o is None else o.numpy() for o in out)


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
      contract of :func:`bids_decode.backends.kernels.solve_selected_numba`), ``flagged(status)``
      (units with status != 0; a device synchronises here) and ``to_host(a)``.

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
        (:func:`bids_decode.decoding.solvers._select_rhs_float32`).
    """

    name = "?"
    threads = False
    host_finite_check = False
    refines_float32 = False

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


class CPUBackend(Backend):
    """numpy GEMMs on the unit grid, the compiled kernel, ``n_jobs`` threads."""

    name = "cpu"
    threads = True
    host_finite_check = True

    def __init__(self):
        super().__init__()
        self.refines_float32 = _backends.have_numba()

    def check_available(self) -> None:
        if _backends.have_numba():
            _backends.lapack_provider()  # a bad BIDS_DECODE_LAPACK is a usage error

    def n_threads(self, n_jobs) -> int:
        return resolve_n_jobs(n_jobs)

    def _workspace_bytes(self, k: int, itemsize: int) -> int:
        # the kernel gathers the Gram blocks of a sub-batch of units at once
        return _backends.SUB_BATCH * (k + 1) ** 2 * itemsize

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


class TorchBackend(Backend):
    """Every step with torch on one device (``cuda``, ``cuda:N``, or ``torch-cpu``)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def check_available(self) -> None:
        self.torch_device()

    def torch_device(self):
        import torch

        if self.name.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(
                f"--device {self.name} was asked for but PyTorch {torch.__version__} sees no "
                f"CUDA GPU (torch.version.cuda is {torch.version.cuda}; in a container: docker "
                "--gpus all, apptainer --nv). Use --device cpu, or run on a GPU node with a "
                "CUDA build of PyTorch.")
        return torch.device("cpu" if self.name == "torch-cpu" else self.name)

    def _gather_bytes(self, k: int, itemsize: int) -> int:
        # the gathered (k+1)^2 block and its int64 index, gathered in sub-batches
        return (8 + itemsize * 3) * (k + 1) ** 2 // 8

    # -- arrays of one design, on the device (created once per design)
    def arrays(self, design) -> dict:
        import torch

        def make():
            dev = self.torch_device()
            return {key: torch.as_tensor(getattr(design, key), device=dev)
                    for key in ("xz", "norm", "mean", "gram")}
        return self.cached(design, "arrays", make)

    def gram(self, design):
        return self.arrays(design)["gram"]

    def gram64(self, design):
        import torch

        return self.cached(design, "gram64", lambda: torch.as_tensor(
            design.gram_as(np.float64), device=self.torch_device()))

    def test_data(self, design, xt):
        """The test data on the device, sent once per :func:`iter_decode` call."""
        import torch

        if xt is None:
            return None
        state = self._states.setdefault(design, {})
        if state.get("xt_src") is not xt:
            state["xt"] = torch.as_tensor(np.asarray(xt, dtype=design.dtype),
                                          device=self.torch_device())
            state["xt_src"] = xt
        return state["xt"]

    # -- array operations
    def correlations(self, design, Y):
        """As :meth:`CPUBackend.correlations`, on the device; Y goes there in its own dtype
        (float32 from a features file: half the bytes) and its finiteness is returned as a
        device flag, read at the one synchronisation point."""
        import torch

        xz = self.arrays(design)["xz"]
        dev = xz.device
        Yd = torch.as_tensor(np.asarray(Y)).to(dev, non_blocking=True)
        finite = torch.isfinite(Yd).all()
        Y64 = Yd.to(torch.float64)
        # (n_units, n_voxels) float64, one fixed-shape GEMM per grid block (see UNIT_BLOCK)
        ct = torch.empty((Y64.shape[1], xz.shape[1]), dtype=torch.float64, device=dev)
        for s in range(0, Y64.shape[1], UNIT_BLOCK):
            torch.matmul(Y64[:, s:s + UNIT_BLOCK].T.contiguous(), xz,
                         out=ct[s:s + UNIT_BLOCK])
        return ct, torch.as_tensor(row_sums(Y), device=dev), finite

    @staticmethod
    def top_k(scores, k: int):
        import torch

        return torch.topk(scores, k, dim=1, sorted=False).indices.sort(dim=1).values

    @staticmethod
    def abs(a):
        return a.abs()

    @staticmethod
    def take_along(a, index):
        import torch

        return torch.gather(a, 1, index)

    @staticmethod
    def empty64(shape, like):
        import torch

        return torch.empty(shape, dtype=torch.float64, device=like.device)

    @staticmethod
    def astype(a, dtype):
        import torch

        return a.to(getattr(torch, np.dtype(dtype).name))

    @staticmethod
    def as_float64(a):
        return None if a is None else a.double()

    @staticmethod
    def solve(gram, index, rhs, cond_max, xt):
        return _backends.solve_selected_torch(gram, index, rhs, cond_max, xt)

    @staticmethod
    def flagged(status):
        import torch

        return torch.nonzero(status != 0).flatten()  # synchronises

    @staticmethod
    def to_host(a):
        return None if a is None else a.cpu().numpy()
