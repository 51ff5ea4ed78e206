"""Which units are decodable: per-unit permutation tests of the decoding accuracy.

H0: the decoded values of a unit carry no information about its true values over the test
images (r <= 0). The test-image labels of the true values are permuted, with the **same**
permutations for every unit (so the max statistic over units is valid), and

    p = (1 + #{k : r_k >= r}) / (1 + n_permutations).

Every unit's statistics depend only on its own column and the fixed permutations: each unit is
centred, normalised and correlated by explicit sequential loops (a compiled kernel on the CPU,
element-wise tensor operations on a GPU), so results do not depend on how units are chunked or
sharded. The per-permutation maxima over units merge exactly (by ``max``), so the memory of the
max statistic is ``n_permutations`` numbers per shard, whatever the layer size.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from bids_decode.backends import CPUBackend, resolve_backend

LOGGER = logging.getLogger(__name__)

#: Default number of permutations (``--n-permutations``).
N_PERMUTATIONS = 1000
#: Default seed of the permutations (``--permutation-seed``).
PERMUTATION_SEED = 0
_TINY = float(np.finfo(np.float64).tiny)


def permutations(n_items: int, n_permutations: int, seed: int) -> np.ndarray:
    """The fixed random permutations of the test images.

    Parameters
    ----------
    n_items : int
        Test images (or categories).
    n_permutations : int
    seed : int

    Returns
    -------
    ndarray of shape (n_permutations, n_items), int64
        Row ``k`` is a permutation of ``range(n_items)``; the same for the same arguments on
        every machine (numpy's PCG64 generator).
    """
    rng = np.random.default_rng(seed)
    base = np.tile(np.arange(n_items, dtype=np.int64), (n_permutations, 1))
    return rng.permuted(base, axis=1)


@functools.cache
def _kernel():
    import numba

    @numba.njit(parallel=True, cache=False)
    def kernel(pred, true, perms_t, out):  # pragma: no cover - compiled
        # pred, true: (m, n) float64, one row per unit; perms_t: (n, K); out: (m, K)
        m, n = pred.shape
        n_perm = perms_t.shape[1]
        tiny = _TINY
        for u in numba.prange(m):
            pc = np.empty(n)
            tc = np.empty(n)
            sp = 0.0
            st = 0.0
            for i in range(n):
                sp += pred[u, i]
                st += true[u, i]
            sp /= n
            st /= n
            npp = 0.0
            ntt = 0.0
            rpp = 0.0
            rtt = 0.0
            for i in range(n):
                pc[i] = pred[u, i] - sp
                tc[i] = true[u, i] - st
                npp += pc[i] * pc[i]
                ntt += tc[i] * tc[i]
                rpp += pred[u, i] * pred[u, i]
                rtt += true[u, i] * true[u, i]
            den = np.sqrt(npp * ntt)
            if not den > max(np.sqrt(rpp * rtt) * 1e-12, tiny):
                for k in range(n_perm):
                    out[u, k] = np.nan
                continue
            for i in range(n):
                pc[i] /= np.sqrt(npp)
                tc[i] /= np.sqrt(ntt)
            acc = np.zeros(n_perm)
            for i in range(n):  # each (unit, permutation) sum runs over the images in order
                ti = tc[i]
                row = perms_t[i]
                for k in range(n_perm):
                    acc[k] += pc[row[k]] * ti
            for k in range(n_perm):
                out[u, k] = acc[k]
    return kernel


def _null_numba(pred: np.ndarray, true: np.ndarray, perms: np.ndarray,
                n_jobs: int | None) -> np.ndarray:
    import numba

    out = np.empty((pred.shape[1], perms.shape[0]))
    kernel = _kernel()
    old = numba.get_num_threads()
    try:
        if n_jobs:
            numba.set_num_threads(max(1, min(int(n_jobs), numba.config.NUMBA_NUM_THREADS)))
        kernel(np.ascontiguousarray(pred.T, dtype=np.float64),
               np.ascontiguousarray(true.T, dtype=np.float64), np.ascontiguousarray(perms.T), out)
    finally:
        numba.set_num_threads(old)
    return out


def _null_torch(pred: np.ndarray, true: np.ndarray, perms: np.ndarray,
                dev) -> np.ndarray:
    """The kernel's arithmetic with element-wise tensor operations (sequential over images),
    on the ``torch.device`` ``dev``."""
    import torch

    p = torch.as_tensor(np.ascontiguousarray(pred.T), dtype=torch.float64, device=dev)
    t = torch.as_tensor(np.ascontiguousarray(true.T), dtype=torch.float64, device=dev)
    m, n = p.shape
    sp = torch.zeros(m, dtype=torch.float64, device=dev)
    st = torch.zeros_like(sp)
    for i in range(n):
        sp += p[:, i]
        st += t[:, i]
    sp /= n
    st /= n
    pc, tc = p - sp[:, None], t - st[:, None]
    npp, ntt, rpp, rtt = (torch.zeros_like(sp) for _ in range(4))
    for i in range(n):
        npp += pc[:, i] * pc[:, i]
        ntt += tc[:, i] * tc[:, i]
        rpp += p[:, i] * p[:, i]
        rtt += t[:, i] * t[:, i]
    den = torch.sqrt(npp * ntt)
    tiny = torch.finfo(torch.float64).tiny
    ok = den > torch.clamp(torch.sqrt(rpp * rtt) * 1e-12, min=tiny)
    pc /= torch.sqrt(npp)[:, None]
    tc /= torch.sqrt(ntt)[:, None]
    idx = torch.as_tensor(perms, device=dev)
    out = torch.zeros((m, perms.shape[0]), dtype=torch.float64, device=dev)
    for i in range(n):
        out += pc[:, idx[:, i]] * tc[:, i:i + 1]
    out[~ok] = float("nan")
    return out.cpu().numpy()


def null_correlations(pred, true, perms, *, device: str = "cpu",
                      n_jobs: int | None = None) -> np.ndarray:
    """Pearson r of each unit's decoded values with its permuted true values.

    Parameters
    ----------
    pred, true : ndarray of shape (n_images, n_units)
        Decoded and true values of each unit.
    perms : ndarray of shape (n_perm, n_images), int
        Permutations of the images; ``r[u, k] = corr(pred[perms[k], u], true[:, u])``.
    device : str or Backend
        ``cpu`` (compiled kernel), or ``cuda``/``cuda:N``/``torch-cpu`` (torch); see
        :func:`bids_decode.backends.resolve_backend`.
    n_jobs : int or None
        CPU threads (None: numba's default).

    Returns
    -------
    ndarray of shape (n_units, n_perm), float64
        NaN rows for units whose decoded or true values are constant.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape} and "
                         f"{true.shape}.")
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    if perms.ndim != 2 or perms.shape[1] != pred.shape[0]:
        raise ValueError(f"perms must have shape (n_perm, {pred.shape[0]}); got {perms.shape}.")
    backend = resolve_backend(device)
    if isinstance(backend, CPUBackend):
        return _null_numba(pred, true, perms, n_jobs)
    return _null_torch(pred, true, perms, backend.torch_device())


class PermutationTest:
    """Streaming permutation test of the unit accuracies of one layer (or one shard of it).

    :meth:`update` returns each chunk's observed r and exceedance counts (exact, per unit) and
    keeps the per-permutation maxima over units, which merge exactly by ``max``
    (:meth:`merge`), so chunks and shards can be combined in any order.

    Parameters
    ----------
    n_images : int
    n_permutations : int
    seed : int
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``torch-cpu`` (see :func:`null_correlations`).
    n_jobs : int or None
    mem_bytes : int
        Memory for one kernel call's ``(units, n_permutations + 1)`` float64 output.
    """

    def __init__(self, n_images: int, n_permutations: int = N_PERMUTATIONS,
                 seed: int = PERMUTATION_SEED, *, device: str = "cpu",
                 n_jobs: int | None = None, mem_bytes: int = 256 * 2**20):
        self.n_permutations = int(n_permutations)
        self.seed = int(seed)
        self.device = device
        self.n_jobs = n_jobs
        # row 0 is the identity: the observed r comes from the same arithmetic as the nulls
        self.perms = np.vstack([np.arange(n_images, dtype=np.int64)[None],
                                permutations(n_images, self.n_permutations, self.seed)])
        self.max_null = np.full(self.n_permutations, -np.inf)
        self.block = int(max(1, mem_bytes // (16 * (self.n_permutations + 1))))

    def update(self, pred, true) -> tuple[np.ndarray, np.ndarray]:
        """Test a chunk of units.

        Parameters
        ----------
        pred, true : ndarray of shape (n_images, n_units_chunk)

        Returns
        -------
        statistic : ndarray of shape (n_units_chunk,), float64
            Observed r (NaN for units with constant decoded or true values).
        n_exceed : ndarray of shape (n_units_chunk,), int32
            Permutations whose r is >= the observed r (-1 for NaN units).
        """
        stats, counts = [], []
        for a in range(0, pred.shape[1], self.block):
            r = null_correlations(pred[:, a:a + self.block], true[:, a:a + self.block],
                                  self.perms, device=self.device, n_jobs=self.n_jobs)
            obs, null = r[:, 0], r[:, 1:]
            finite = np.isfinite(obs)
            count = (null >= obs[:, None]).sum(axis=1).astype(np.int32)
            count[~finite] = -1
            stats.append(obs.copy())
            counts.append(count)
            null[~finite] = -np.inf  # in place: NaN units do not enter the maxima
            if null.shape[0]:
                np.maximum(self.max_null, null.max(axis=0), out=self.max_null)
        if not stats:
            return np.empty(0), np.empty(0, np.int32)
        return np.concatenate(stats), np.concatenate(counts)

    def merge(self, max_null) -> None:
        """Fold in the per-permutation maxima of another chunk or shard."""
        np.maximum(self.max_null, np.asarray(max_null, dtype=np.float64), out=self.max_null)
