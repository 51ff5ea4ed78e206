"""Decoding (after inputs and features): voxel-selecting L2-regularised linear regression (the
decoder of Horikawa & Kamitani).

For each target unit, the ``n_voxels`` voxels whose training correlation with the unit is
highest in absolute value are selected, a bias column is appended, and ridge regression
``(Xs' Xs + alpha I) w = Xs' y`` is solved on them (the bias is penalised too, as in
fastl2lir 0.11; voxels with variance < 1e-8 get correlation 0, so they are never preferred).

How the work is organised (pure functions of arrays, streamed over unit chunks and threads,
on a backend of :mod:`bids_decode.backends`; this module gathers the public names):

- :mod:`~bids_decode.decoding.scaling`: the targets z-scored with the training statistics
  (:class:`UnitScale`);
- :mod:`~bids_decode.decoding.design`: the training design of a fit (:func:`prepare_design`);
- :mod:`~bids_decode.decoding.selection`: the all-voxels rule (:func:`n_selected`), the
  selected voxels and the right-hand sides;
- :mod:`~bids_decode.decoding.solvers`: the batch solve with its float64 redo, the all-voxel
  solves, sparse prediction;
- :mod:`~bids_decode.decoding.streaming`: unit chunks re-cut to the grid, on threads;
- :mod:`~bids_decode.decoding.estimator`: :class:`VoxelSelectionRidge`, a thin sklearn-style
  wrapper.

The steps:

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
thread each); ``device="cuda"`` runs the same steps with torch on the GPU (the backend
objects of :mod:`bids_decode.backends` differ only in their array operations).

**Partition invariance.** Every product over units (the correlation GEMM, the all-voxel
predictions) is computed on fixed blocks of :data:`UNIT_BLOCK` units aligned to the first unit
of the stream, and every other step is per unit. So on one machine a unit's prediction is the
same bits whatever the batch size, thread count, memory budget or chunking of the stream
(chunks that do not end on the grid are re-cut to it), as long as the stream starts on the grid
(the participant level rounds unit shards to it).

The selection is the float64 ranking's whatever ``dtype`` is, so float32 selects the same
voxels as fastl2lir in float64 (up to exact ties): in float64 the GEMM is float64; in
float32 (on the CPU) it is float32, and the few scores within the float32 rounding bound of
the selection threshold are recomputed in float64
(:func:`bids_decode.decoding.selection._select_rhs_float32`).
"""

from __future__ import annotations

from bids_decode.backends import Backend, resolve_backend
from bids_decode.decoding.design import CONSTANT_VAR, Design, prepare_design
from bids_decode.decoding.estimator import VoxelSelectionRidge
from bids_decode.decoding.scaling import UnitScale
from bids_decode.decoding.selection import n_selected, select_voxels
from bids_decode.decoding.solvers import COND_MAX, fit_chunk, predict_sparse
from bids_decode.decoding.streaming import (
    DEFAULT_MEM_BYTES,
    batch_size_for,
    decode_units,
    iter_decode,
    predict_chunk,
)
from bids_decode.utils.grid import UNIT_BLOCK

__all__ = [
    "COND_MAX", "CONSTANT_VAR", "DEFAULT_MEM_BYTES", "UNIT_BLOCK", "Backend", "Design",
    "UnitScale", "VoxelSelectionRidge", "batch_size_for", "decode_units", "fit_chunk",
    "iter_decode", "n_selected", "predict_chunk", "predict_sparse", "prepare_design",
    "resolve_backend", "select_voxels",
]
