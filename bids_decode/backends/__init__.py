"""Backends (the first stage after the shared utilities): where the decoder and the feature
extraction run, resolved from ``--device``.

:func:`resolve_backend` turns a ``--device`` string into one shared backend object (the same
object for the same string in a process), validated once:

- ``"cpu"`` → :class:`CPUBackend`: numpy GEMMs on the unit grid and the compiled (numba)
  kernels, run on ``n_jobs`` threads;
- ``"torch-cpu"``, ``"cuda"``, ``"cuda:N"`` → :class:`TorchBackend`: every step with torch on
  that device (``torch-cpu`` runs the GPU code path on the CPU, for tests).

A backend offers the few array operations in which the devices differ (the correlation
GEMM, top-k, gathers, the batched solve, copies to and from the host); the selection, the
right-hand sides and the float64 redo are written once against them in
:mod:`bids_decode.decoding`. Each backend owns its device state per design (the design's
arrays on the device, the test data), held in a weak mapping so it goes with the design,
and its memory model (:meth:`Backend.batch_size_for`).

Modules, each importing only those above it:

- :mod:`~bids_decode.backends.base`: the :class:`Backend` interface, the solve's status codes,
  the unit-grid helpers :func:`blockwise` and :func:`row_sums`;
- :mod:`~bids_decode.backends.numba_cache`: numba (optional) and the disk cache of compiled
  kernels;
- :mod:`~bids_decode.backends.cpuinfo`: the CPU's model and vector instruction sets;
- :mod:`~bids_decode.backends.lapack`: which LAPACK the CPU kernel calls (MKL or SciPy's),
  calibrated per machine;
- :mod:`~bids_decode.backends.cpu_topk`: the numba kernel of the encoding model's running
  top-k units per voxel, and its state;
- :mod:`~bids_decode.backends.cpu_ridge`: the encoding model's per-voxel LAPACK solves and its
  dual form, and the solve's status codes;
- :mod:`~bids_decode.backends.cpu_kernels`: the numba kernels (batch solve, refined float32
  selection, :func:`~bids_decode.backends.cpu_kernels.warm_up`);
- :mod:`~bids_decode.backends.torch_kernels`: the batch solve with torch on any device;
- :mod:`~bids_decode.backends.torch_encoding`: the encoding model's top k and batched solves
  with torch on any device;
- :mod:`~bids_decode.backends.cpu`, :mod:`~bids_decode.backends.torch`: the two backends
  (and :func:`cpu_info` for provenance);
- :mod:`~bids_decode.backends.resolve`: :func:`resolve_backend`.
"""

from __future__ import annotations

from bids_decode.backends.base import ILL_CONDITIONED, Backend, blockwise, row_sums
from bids_decode.backends.cpu import CPUBackend, cpu_info
from bids_decode.backends.resolve import DEVICE_PATTERN, resolve_backend
from bids_decode.backends.torch import TorchBackend

__all__ = ["DEVICE_PATTERN", "ILL_CONDITIONED", "Backend", "CPUBackend", "TorchBackend",
           "blockwise", "cpu_info", "resolve_backend", "row_sums"]
