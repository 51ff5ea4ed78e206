"""The torch kernel: the batch solve of the CPU kernel
(:func:`bids_decode.backends.cpu_kernels.solve_selected_numba`) with batched torch calls on
any device.

Batched gather, a blocked (:func:`blocked_cholesky`) or ``torch.linalg.cholesky_ex`` Cholesky
and two triangular solves (:func:`solve_selected_torch`); CUDA in practice, and the CPU
backend's fallback where numba is missing. torch is imported where it is used (optional).
"""

from __future__ import annotations

import logging

from bids_decode.backends.base import ILL_CONDITIONED

LOGGER = logging.getLogger(__name__)

#: Tuning of the torch path: the factorisation ("torch": ``torch.linalg.cholesky_ex``;
#: "blocked": :func:`blocked_cholesky`, GEMM-rich) and the units gathered at once.
TORCH_DEFAULTS = {"cholesky": "blocked", "sub_batch": 4096, "block": 64}


def blocked_cholesky(A, block: int = 64, *, zero_upper: bool = True):
    """Left-looking blocked Cholesky of a batch, in place, with batched GEMMs.

    Parameters
    ----------
    A : Tensor of shape (n_units, m, m)
        Symmetric matrices (only the lower triangle is read); overwritten by ``L``
        (the strict upper triangle is zeroed unless ``zero_upper`` is False).
    block : int
        Block size; the diagonal blocks go to ``torch.linalg.cholesky_ex``.
    zero_upper : bool
        Zero the strict upper triangle (False leaves what was there, for callers that read
        only the lower triangle: one pass over the batch less).

    Returns
    -------
    L : Tensor of shape (n_units, m, m)
        ``A`` itself.
    info : Tensor of shape (n_units,), int32
        0, or the 1-based order of the first non-positive leading minor.
    """
    import torch

    m = A.shape[-1]
    info = torch.zeros(A.shape[0], dtype=torch.int32, device=A.device)
    for j0 in range(0, m, block):
        j1 = min(j0 + block, m)
        if j0:
            A[:, j0:, j0:j1].baddbmm_(A[:, j0:, :j0], A[:, j0:j1, :j0].mT, alpha=-1)
        L11, inf = torch.linalg.cholesky_ex(A[:, j0:j1, j0:j1])
        info = torch.where((info == 0) & (inf > 0), inf + j0, info)
        A[:, j0:j1, j0:j1] = L11
        if j1 < m:
            A[:, j1:, j0:j1] = torch.linalg.solve_triangular(
                L11.mT, A[:, j1:, j0:j1], upper=True, left=False)
    return (A.tril_() if zero_upper else A), info


def solve_selected_torch(gram, index, rhs, cond_max, xt=None, *, sub_batch=None,
                         cholesky=None):
    """Same contract as :func:`~bids_decode.backends.cpu_kernels.solve_selected_numba`, with
    torch tensors on any device.

    Parameters
    ----------
    gram : Tensor of shape (n_voxels + 1, n_voxels + 1)
    index : Tensor of shape (n_units, k), int64, sorted ascending
    rhs : Tensor of shape (n_units, k + 1)
    cond_max : float
    xt : Tensor of shape (n_voxels, n_test) or None
    sub_batch : int or None
        Units gathered at once (the gather holds ``sub_batch * (k + 1)**2`` elements and
        as many int64 indices); None: ``TORCH_DEFAULTS["sub_batch"]``.
    cholesky : {"torch", "blocked"} or None
        None: ``TORCH_DEFAULTS["cholesky"]``.

    Returns
    -------
    coef, intercept, status, pred : Tensors
        See :func:`~bids_decode.backends.cpu_kernels.solve_selected_numba`.
    """
    import torch

    sub_batch = sub_batch or TORCH_DEFAULTS["sub_batch"]
    cholesky = cholesky or TORCH_DEFAULTS["cholesky"]
    n_units, k = index.shape
    P = gram.shape[0]
    dev = gram.device
    coef = torch.zeros((n_units, k), dtype=gram.dtype, device=dev)
    intercept = torch.zeros(n_units, dtype=gram.dtype, device=dev)
    status = torch.zeros(n_units, dtype=torch.int64, device=dev)
    pred = None if xt is None else torch.zeros((n_units, xt.shape[1]), dtype=gram.dtype, device=dev)
    bias = torch.full((1,), P - 1, dtype=torch.int64, device=dev)
    for s in range(0, n_units, sub_batch):
        e = min(s + sub_batch, n_units)
        sel = torch.cat([index[s:e], bias.expand(e - s, 1)], dim=1)  # (b, m)
        # broadcast advanced indexing: no (b, m, m) int64 index is materialised
        sub = gram[sel[:, :, None], sel[:, None, :]]
        if cholesky == "blocked":
            L, info = blocked_cholesky(sub, TORCH_DEFAULTS["block"], zero_upper=False)
        else:
            L, info = torch.linalg.cholesky_ex(sub)
        diag = torch.diagonal(L, dim1=-2, dim2=-1)
        ratio = (diag.amax(dim=1) / diag.amin(dim=1)) ** 2
        bad_cond = ~(ratio <= cond_max)
        st = torch.where(info != 0, info.to(torch.int64),
                         torch.where(bad_cond, torch.full_like(status[s:e], ILL_CONDITIONED),
                                     torch.zeros_like(status[s:e])))
        # two triangular solves read only the lower triangle (cholesky_solve would copy L
        # into column-major order first)
        z = torch.linalg.solve_triangular(L, rhs[s:e, :, None].to(gram.dtype), upper=False)
        w = torch.linalg.solve_triangular(L.mT, z, upper=True)[:, :, 0]
        w = torch.where((st == 0)[:, None], w, torch.zeros_like(w))
        status[s:e] = st
        coef[s:e] = w[:, :k]
        intercept[s:e] = w[:, k]
        if xt is not None:
            # weights scattered into a dense (b, n_voxels) block, then one GEMM with the test
            # data: fewer bytes than gathering a (b, k, n_test) block of it
            dense = torch.zeros((e - s, xt.shape[0]), dtype=w.dtype, device=dev)
            dense.scatter_(1, index[s:e], w[:, :k])
            pred[s:e] = dense @ xt + w[:, k:]
    return coef, intercept, status, pred
