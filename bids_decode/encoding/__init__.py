"""Encoding (stage 4, beside decoding): each voxel predicted from a layer's units.

The lab's encoding model is fastl2lir 0.11 with the roles swapped: the DNN features of a
layer (up to millions of units) are X, the voxels are Y. For each voxel, the ``n_units`` (k,
500 in the lab's scripts) units whose training correlation with the voxel is highest in
absolute value are selected, a bias column is appended, and ridge regression
``([Xs 1]'[Xs 1] + alpha I) w = [Xs 1]' y`` is solved on them (the bias penalised too; units
with variance < 1e-8 score 0). The test samples are predicted from the same units.

A layer never sits in memory; :func:`encode_voxels` streams its unit chunks:

1. :mod:`~bids_decode.encoding.selection`: one pass keeps each voxel's running top k, one GEMM
   per (:data:`VOXEL_BLOCK` voxels x 64 units) block and the backend's top-k update (a
   compiled heap on the CPU, a stable-sort merge on a torch device);
2. :mod:`~bids_decode.encoding.solvers`: voxels in groups sized from the memory budget, each
   group gathering its selected units' columns in one more pass, then per voxel its own
   (k + 1) x (k + 1) Gram, Cholesky and solve (with every unit selected: the dual form, one
   pass for all voxels);
3. :mod:`~bids_decode.encoding.streaming`: the entry point and :class:`EncodingFit`;
   :mod:`~bids_decode.encoding.chunks`: the chunk checks and the threads.

Every device step is a method of the backend of ``device``
(:func:`~bids_decode.backends.resolve_backend`: ``cpu``, ``torch-cpu``, ``cuda``, ``cuda:N``).
The results are the same bits however the work is split (chunk sizes, memory budget, thread
count, and voxel subsets starting on the :data:`VOXEL_BLOCK` grid; on torch-cpu too, checked
in tests; on a GPU, cuBLAS does not promise it); see
:mod:`~bids_decode.encoding.selection` and :mod:`~bids_decode.encoding.solvers` for why.
"""

from __future__ import annotations

from bids_decode.encoding.selection import VOXEL_BLOCK, select_units, voxel_blocks
from bids_decode.encoding.streaming import EncodingFit, encode_voxels

__all__ = ["VOXEL_BLOCK", "EncodingFit", "encode_voxels", "select_units", "voxel_blocks"]
