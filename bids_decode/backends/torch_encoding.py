"""The torch steps of the encoding model on any device (:class:`TorchBackend`): the running
top k units per voxel and the batched per-voxel ridge.

The counterparts of :class:`bids_decode.backends.cpu_topk.TopUnits` and
:mod:`bids_decode.backends.cpu_ridge`, with the same results:

- :class:`TorchTopUnits`: each voxel's kept units stay on the device, sorted by decreasing
  score then increasing unit. A step of units is scored with one batched GEMM per voxel block
  (each matrix of the batch of the fixed shape VOXEL_BLOCK x UNIT_BLOCK, as on the CPU) and
  merged with a *stable* descending sort of ``[kept, new]``: the new units come after every
  kept one in layer order, so equal scores keep the lower unit, as the CPU heap does
  (``torch.topk`` leaves the order of ties unspecified).
- :func:`solve_voxels_torch`: per batch of voxels, ``G = A A' + alpha I`` by ``torch.bmm``,
  ``torch.linalg.cholesky_ex``, ``torch.cholesky_solve``; float32 failures and ill-conditioned
  systems redone in float64 on the device, and NaN where float64 fails too (the CPU's codes).
- :func:`dual_predictions_torch`: with every unit selected, the dual form with ``K`` and
  ``Kt`` accumulated on the device over the unit grid.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends.cpu_ridge import (
    FAILED,
    ILL_CONDITIONED_64,
    REDONE_FLOAT64,
    SOLVED,
)
from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)

#: the most units merged into the running top k at once (fewer when the budget is short)
MERGE_UNITS = 8192
#: voxels per batched solve (a fixed shape: the same bits whatever the device batch); the
#: voxel groups of :func:`bids_decode.encoding.encode_voxels` are multiples of it
SOLVE_BLOCK = 32


class TorchTopUnits:
    """The running top k units of every voxel, on a torch device.

    Parameters
    ----------
    vz_blocks : list of ndarray of shape (n_block_voxels, n_train)
        The voxels centred and scaled to unit norm, per voxel block.
    k : int
        Units kept per voxel; 0 keeps every unit.
    device : torch.device
    mem_bytes : int
        Budget of the device state; the merge step is sized to a quarter of it.
    """

    def __init__(self, vz_blocks, k: int, device, mem_bytes: int):
        import torch

        self.vz = [torch.as_tensor(b, device=device) for b in vz_blocks]
        self.k = int(k)
        self.device = device
        self.scores = [torch.empty((b.shape[0], 0), dtype=b.dtype, device=device)
                       for b in self.vz]
        self.units = [torch.empty((b.shape[0], 0), dtype=torch.int64, device=device)
                      for b in self.vz]
        vb = max(b.shape[0] for b in self.vz)
        per_unit = vb * 4 * (self.vz[0].element_size() + 8)  # GEMM out, cat, sort, gather
        fit = (mem_bytes // 4) // per_unit - self.k
        self.step = int(min(MERGE_UNITS, max(UNIT_BLOCK, fit // UNIT_BLOCK * UNIT_BLOCK)))

    @property
    def nbytes(self) -> int:
        """Bytes held on the device (voxels, kept units, the merge's workspace)."""
        held = sum(t.nelement() * t.element_size()
                   for t in (*self.vz, *self.scores, *self.units))
        vb = max(b.shape[0] for b in self.vz)
        kept = max(s.shape[1] for s in self.scores)
        return held + vb * 4 * (self.vz[0].element_size() + 8) * (kept + self.step)

    def offer(self, start: int, fc: np.ndarray, inv_norm: np.ndarray, pmap=None) -> None:
        """Offer the centred units ``start:start + n`` to every voxel (``pmap`` unused: one
        device).

        Parameters
        ----------
        start : int
            Layer index of the first unit (on the unit grid).
        fc : ndarray of shape (n, n_train), the state's dtype
        inv_norm : ndarray of shape (n,)
        """
        import torch

        fcd = torch.as_tensor(fc, device=self.device)
        invd = torch.as_tensor(inv_norm, device=self.device)
        for s in range(0, fcd.shape[0], self.step):
            f, iv = fcd[s:s + self.step], invd[s:s + self.step]
            m = f.shape[0]
            nb = -(-m // UNIT_BLOCK)
            if m % UNIT_BLOCK:  # the layer's last block: zero units, cut off below
                f = torch.nn.functional.pad(f, (0, 0, 0, nb * UNIT_BLOCK - m))
                iv = torch.nn.functional.pad(iv, (0, nb * UNIT_BLOCK - m))
            fb = f.reshape(nb, UNIT_BLOCK, f.shape[1]).mT
            units = torch.arange(start + s, start + s + m, device=self.device)
            for b, vz in enumerate(self.vz):
                g = torch.bmm(vz.expand(nb, *vz.shape), fb)  # (nb, Vb, UNIT_BLOCK)
                sc = (g.abs() * iv.view(nb, 1, UNIT_BLOCK)).permute(1, 0, 2)
                self._merge(b, sc.reshape(vz.shape[0], -1)[:, :m], units)

    def _merge(self, b: int, scores, units) -> None:
        import torch

        cs = torch.cat([self.scores[b], scores], dim=1)
        cu = torch.cat([self.units[b], units.expand(scores.shape[0], -1)], dim=1)
        srt, order = torch.sort(cs, dim=1, descending=True, stable=True)
        keep = self.k or cs.shape[1]
        self.scores[b] = srt[:, :keep].contiguous()
        self.units[b] = torch.gather(cu, 1, order[:, :keep])

    def index(self) -> np.ndarray:
        """The kept units of each voxel by decreasing score (then by unit), on the host.

        Returns
        -------
        ndarray of shape (n_voxels, n_kept), int64
        """
        import torch

        return torch.cat(self.units, dim=0).cpu().numpy()


def _ridge_batch(a, t, y, alpha: float, cond_max: float):
    """Batched ``(a a' + alpha I)^-1 a y`` and its predictions; ``(pred, info, ill)``."""
    import torch

    G = torch.bmm(a, a.mT)
    G.diagonal(dim1=-2, dim2=-1).add_(alpha)
    L, info = torch.linalg.cholesky_ex(G)
    d = L.diagonal(dim1=-2, dim2=-1)
    ill = ~((d.amax(dim=1) / d.amin(dim=1)) ** 2 <= cond_max)
    w = torch.cholesky_solve(torch.bmm(a, y[:, :, None]), L)[:, :, 0]
    pred = torch.bmm(w[:, None, :-1], t)[:, 0] + w[:, -1:]
    return pred, info != 0, ill


def solve_voxels_torch(A, T, Yt, alpha: float, cond_max, device, batch: int):
    """:func:`bids_decode.backends.cpu_ridge.solve_voxels` with batched torch calls.

    The voxels go to the device ``batch`` at a time and are solved in sub-batches of
    :data:`SOLVE_BLOCK` (the last one padded with zero systems): batched triangular solves
    round differently with the batch size, a fixed shape does not. A sub-batch with a failure
    is redone whole in float64 (float32 only), so the redo has a fixed shape too.

    Parameters
    ----------
    A : ndarray of shape (n_group, k + 1, n_train)
    T : ndarray of shape (n_group, k, n_test)
    Yt : ndarray of shape (n_group, n_train), ``A``'s dtype
    alpha : float
    cond_max : mapping
        Largest condition number trusted, per numpy dtype.
    device : torch.device
    batch : int
        Voxels sent to the device at once (rounded up to a multiple of :data:`SOLVE_BLOCK`).

    Returns
    -------
    pred : ndarray of shape (n_group, n_test), float64
    status : ndarray of shape (n_group,), int64
        The codes of :mod:`bids_decode.backends.cpu_ridge`.
    """
    import torch

    n = len(Yt)
    batch = -(-max(1, batch) // SOLVE_BLOCK) * SOLVE_BLOCK
    pred = np.empty((n, T.shape[2]), dtype=np.float64)
    status = np.zeros(n, dtype=np.int64)
    for s in range(0, n, batch):
        e = min(s + batch, n)
        pad = -(e - s) % SOLVE_BLOCK
        a, t, y = (torch.nn.functional.pad(torch.as_tensor(x[s:e], device=device),
                                           (0, 0) * (x.ndim - 1) + (0, pad))
                   for x in (A, T, Yt))
        for j in range(0, e - s + pad, SOLVE_BLOCK):
            sl = slice(j, j + SOLVE_BLOCK)
            p, st = _solve_block(a[sl], t[sl], y[sl], alpha, cond_max)
            m = min(SOLVE_BLOCK, e - s - j)
            pred[s + j:s + j + m] = p[:m].cpu().numpy()
            status[s + j:s + j + m] = st[:m].cpu().numpy()
    return pred, status


def _solve_block(a, t, y, alpha: float, cond_max):
    """One sub-batch: ``(pred float64, status)``, float32 failures redone in float64."""
    import torch

    single = a.dtype == torch.float32
    p, fail, ill = _ridge_batch(a, t, y, alpha, cond_max[np.dtype(np.float32 if single
                                                                  else np.float64)])
    st = torch.where(fail, FAILED, torch.where(ill, ILL_CONDITIONED_64, SOLVED))
    p = p.double()
    if single and bool((fail | ill).any()):
        p64, f64, i64 = _ridge_batch(a.double(), t.double(), y.double(), alpha,
                                     cond_max[np.dtype(np.float64)])
        redo = fail | ill
        p = torch.where(redo[:, None], p64, p)
        st = torch.where(redo, torch.where(f64, FAILED, torch.where(
            i64, ILL_CONDITIONED_64, REDONE_FLOAT64)), st)
    p[st == FAILED] = float("nan")
    return p, st


def dual_predictions_torch(blocks, V_train, alpha: float, n_test: int, dtype, voxel_blocks,
                           device):
    """:func:`bids_decode.backends.cpu_ridge.dual_predictions` on a torch device (same
    arguments, and ``device``)."""
    import torch

    tdt = getattr(torch, np.dtype(dtype).name)
    n = V_train.shape[0]
    K = torch.zeros((n, n), dtype=tdt, device=device)
    Kt = torch.zeros((n_test, n), dtype=tdt, device=device)
    for F_train, F_test in blocks:
        f = torch.as_tensor(np.asarray(F_train), device=device).to(tdt)
        ft = torch.as_tensor(np.asarray(F_test), device=device).to(tdt)
        for s in range(0, f.shape[1], UNIT_BLOCK):
            fb = f[:, s:s + UNIT_BLOCK].T.contiguous()
            K += fb.T @ fb
            Kt += ft[:, s:s + UNIT_BLOCK] @ fb
    K += 1.0  # the bias column
    Kt += 1.0
    K.diagonal().add_(alpha)
    H = torch.cholesky_solve(Kt.T, torch.linalg.cholesky(K)).T  # (n_test, n_train)
    Vd = torch.as_tensor(V_train, device=device).to(tdt)
    pred = np.empty((n_test, V_train.shape[1]), dtype=np.float64)
    for v0, v1 in voxel_blocks:
        pred[:, v0:v1] = (H @ Vd[:, v0:v1]).double().cpu().numpy()
    return pred
