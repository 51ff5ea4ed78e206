"""Which units are decodable, and how reliable each accuracy is.

Per-unit permutation tests of the decoding accuracy (profile correlation), Benjamini-Hochberg
q-values, max-statistic (Westfall-Young single-step) family-wise adjusted p-values, and the
split-half reliability of each unit's decoded values (Spearman-Brown corrected).

Permutation test
----------------
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

import numpy as np

from bids_decode.evaluation.metrics import Metric, Output, Result, nanstat, on_finite

#: Default number of permutations (``--n-permutations``).
N_PERMUTATIONS = 1000
#: Default seed of the permutations (``--permutation-seed``).
PERMUTATION_SEED = 0
#: q-value threshold that defines a decodable unit.
FDR_LEVEL = 0.05
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
    from bids_decode.backends import CPUBackend, resolve_backend

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


def permutation_pvalues(n_exceed, n_permutations: int) -> np.ndarray:
    """``(1 + n_exceed) / (1 + n_permutations)``; NaN where ``n_exceed`` < 0 (NaN units).

    Parameters
    ----------
    n_exceed : ndarray of shape (n_units,), int
    n_permutations : int

    Returns
    -------
    ndarray of shape (n_units,), float64
    """
    c = np.asarray(n_exceed)
    p = (1.0 + c) / (1.0 + n_permutations)
    return np.where(c >= 0, p, np.nan)


def maxstat_pvalues(statistic, max_null) -> np.ndarray:
    """Westfall-Young single-step (max-statistic) adjusted p-values.

    ``p_fwer[u] = (1 + #{k : max_null[k] >= statistic[u]}) / (1 + n_permutations)``, where
    ``max_null[k]`` is the largest null r over all units of the family under permutation ``k``.

    Parameters
    ----------
    statistic : ndarray of shape (n_units,)
        Observed r (NaN for NaN units).
    max_null : ndarray of shape (n_permutations,)
        Per-permutation maxima over the family (merged over chunks and shards).

    Returns
    -------
    ndarray of shape (n_units,), float64 (NaN for NaN units)
    """
    stat = np.asarray(statistic, dtype=np.float64)
    srt = np.sort(np.asarray(max_null, dtype=np.float64))
    n = srt.size
    out = np.full(stat.shape, np.nan)
    ok = np.isfinite(stat)
    out[ok] = (1.0 + n - np.searchsorted(srt, stat[ok], side="left")) / (1.0 + n)
    return out


def fdr_bh(p) -> np.ndarray:
    """Benjamini-Hochberg q-values over the finite entries of ``p`` (NaN stays NaN).

    ``q_(i) = min_{j >= i} min(1, p_(j) * m / j)`` for the sorted p-values ``p_(1..m)``.

    Parameters
    ----------
    p : ndarray of shape (n,)

    Returns
    -------
    ndarray of shape (n,), float64
    """
    return on_finite(_bh_finite, p, np.nan)


def _bh_finite(p: np.ndarray) -> np.ndarray:
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(scaled, 1.0)
    return q


def spearman_brown(r, factor: float = 2.0) -> np.ndarray:
    """Reliability of a measure ``factor`` times as long as one whose reliability is ``r``.

    ``factor * r / (1 + (factor - 1) * r)``; with two halves (factor 2), ``2r / (1 + r)``.
    NaN where the denominator is not positive.

    Parameters
    ----------
    r : float or ndarray

    Returns
    -------
    ndarray (same shape as r), float64
    """
    r = np.asarray(r, dtype=np.float64)
    den = 1.0 + (factor - 1.0) * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, factor * r / den, np.nan)


def ceiling(reliability) -> np.ndarray:
    """Noise ceiling of an accuracy: ``sqrt(reliability)`` where reliability > 0, else NaN."""
    rel = np.asarray(reliability, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(rel > 0, np.sqrt(np.where(rel > 0, rel, 0.0)), np.nan)


def pearson(a, b) -> float:
    """Pearson r over the entries finite in both (NaN with fewer than 3 or no variance)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a = a[ok] - a[ok].mean()
    b = b[ok] - b[ok].mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(np.clip(a @ b / den, -1, 1)) if den > 0 else float("nan")


def split_half_reliability(half_a, half_b) -> float:
    """Spearman-Brown-corrected correlation across units of two half-data accuracies.

    Parameters
    ----------
    half_a, half_b : ndarray of shape (n_units,)
        Each unit's accuracy from each half of the test blocks (NaN units ignored).
    """
    return float(spearman_brown(pearson(half_a, half_b)))


def disattenuate(r, reliability_a, reliability_b) -> float:
    """``r / sqrt(reliability_a * reliability_b)``; NaN unless both reliabilities are > 0."""
    if not (reliability_a > 0 and reliability_b > 0):
        return float("nan")
    return float(r / np.sqrt(reliability_a * reliability_b))


# --------------------------------------------------------------------- the layer's metric

class UnitStatistics(Metric):
    """Permutation tests and split-half reliability of each unit's accuracy, as a metric.

    A shard fills it chunk by chunk (:meth:`update`) and saves it into its work file
    (``stats`` group); the layer's metric merges the shards and :meth:`finalize` gives
    p-values, q-values, family-wise p-values, reliabilities and noise ceilings.

    Parameters
    ----------
    lo, hi : int
        Units of the layer covered.
    n_permutations, seed : int
        Permutation test (0 permutations: none).
    halves : bool
        Whether decoded values of the two split halves are given to :meth:`update`.
    device : str
    n_jobs : int or None
    mem_bytes : int
        Memory for the permutation kernel's output (see :class:`PermutationTest`).
    """

    DATASETS = {
        "p_value": Output("One-sided permutation p-value of the accuracy (H0: r <= 0)"),
        "q_value": Output("Benjamini-Hochberg q-value over the layer's units"),
        "p_fwer": Output("Max-statistic (Westfall-Young) family-wise adjusted p-value"),
        "reliability": Output("Split-half reliability of the decoded values (odd vs even "
                              "presentations, Spearman-Brown corrected)"),
        "accuracy_ceiling": Output("sqrt(reliability): the highest accuracy the noise allows"),
        "accuracy_normalised": Output("accuracy / accuracy_ceiling"),
        "accuracy_halves": Output("Accuracy from the odd and from the even presentations "
                                  "(first axis of length 2)"),
    }
    COLUMNS = {
        "n_decodable": "Units whose Benjamini-Hochberg q-value (over the layer's units, from "
                       "one-sided permutation p-values) is below 0.05",
        "fraction_decodable": "n_decodable / n_units (NaN units count as not decodable)",
        "reliability_mean": "Mean over units of the split-half reliability of the decoded "
                            "values (odd vs even presentations, Spearman-Brown corrected)",
        "accuracy_ceiling_mean": "Mean over units of sqrt(reliability), the highest accuracy "
                                 "the measurement noise allows",
    }

    def __init__(self, lo: int, hi: int, *, n_permutations: int, seed: int, halves: bool,
                 device: str = "cpu", n_jobs: int | None = None, mem_bytes: int = 256 * 2**20):
        super().__init__(lo, hi)
        n = hi - lo
        self.n_permutations, self.seed = int(n_permutations), int(seed)
        self._settings = {"device": device, "n_jobs": n_jobs, "mem_bytes": mem_bytes}
        self._test: PermutationTest | None = None
        self.statistic = np.full(n, np.nan)
        self.n_exceed = np.full(n, -1, dtype=np.int32)
        self.max_null = np.full(self.n_permutations, -np.inf)
        self.half_accuracy = np.full((2, n), np.nan, dtype=np.float32) if halves else None
        self.reliability = np.full(n, np.nan, dtype=np.float32) if halves else None

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> UnitStatistics:
        return cls(lo, hi, n_permutations=config.n_permutations, seed=config.permutation_seed,
                   halves=halves, **settings)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        from bids_decode.evaluation.metrics import profile_correlation

        sl = self._local(start, stop)
        if self.n_permutations > 0:
            if self._test is None:
                self._test = PermutationTest(len(pred), self.n_permutations, self.seed,
                                             **self._settings)
            self.statistic[sl], self.n_exceed[sl] = self._test.update(pred, true)
            np.maximum(self.max_null, self._test.max_null, out=self.max_null)
        if self.reliability is not None and halves is not None:
            for h in (0, 1):
                self.half_accuracy[h, sl] = profile_correlation(halves[h], true)
            self.reliability[sl] = spearman_brown(profile_correlation(halves[0], halves[1]))

    def spawn(self, lo, hi) -> UnitStatistics:
        return UnitStatistics(lo, hi, n_permutations=self.n_permutations, seed=self.seed,
                              halves=True, **self._settings)

    def merge(self, other: UnitStatistics) -> None:
        sl = self._local(other.lo, other.hi)
        if other.reliability is None:
            self.half_accuracy = self.reliability = None  # reliability needs every shard
        elif self.reliability is not None:
            self.half_accuracy[:, sl] = other.half_accuracy
            self.reliability[sl] = other.reliability
        if self.n_permutations and other.n_permutations:
            self.statistic[sl], self.n_exceed[sl] = other.statistic, other.n_exceed
            np.maximum(self.max_null, other.max_null, out=self.max_null)

    def save(self, work) -> None:
        g = work.create_group("stats")
        g.attrs.update({"n_permutations": self.n_permutations, "permutation_seed": self.seed})
        if self.n_permutations > 0:
            g.create_dataset("statistic", data=self.statistic)
            g.create_dataset("n_exceed", data=self.n_exceed)
            g.create_dataset("max_null", data=self.max_null)
        if self.reliability is not None:
            g.create_dataset("half_accuracy", data=self.half_accuracy)
            g.create_dataset("reliability", data=self.reliability)

    def _read(self, work) -> None:
        g = work.get("stats")
        if g is None or "reliability" not in g:
            self.half_accuracy = self.reliability = None
        else:
            self.half_accuracy[...] = g["half_accuracy"][()]
            self.reliability[...] = g["reliability"][()]
        if self.n_permutations and g is not None and "n_exceed" in g:
            self.statistic[...] = g["statistic"][()]
            self.n_exceed[...] = g["n_exceed"][()]
            np.maximum(self.max_null, g["max_null"][()], out=self.max_null)
        else:
            self.n_permutations = 0

    def finalize(self, done: dict) -> Result:
        """Needs ``done["accuracy"]``
        (:class:`~bids_decode.evaluation.metrics.ProfileCorrelation`)."""
        arrays: dict[str, np.ndarray] = {}
        n_units = self.hi - self.lo
        cols = dict.fromkeys(self.COLUMNS, float("nan"))
        if self.n_permutations:
            p = permutation_pvalues(self.n_exceed, self.n_permutations)
            q = fdr_bh(p)
            arrays["p_value"] = p.astype(np.float32)
            arrays["q_value"] = q.astype(np.float32)
            arrays["p_fwer"] = maxstat_pvalues(self.statistic, self.max_null).astype(np.float32)
            n_dec = int(np.sum(q < FDR_LEVEL))
            cols["n_decodable"] = n_dec
            cols["fraction_decodable"] = n_dec / n_units if n_units else float("nan")
        if self.reliability is not None:
            rel = self.reliability.astype(np.float64)
            ceil = ceiling(rel)
            with np.errstate(invalid="ignore", divide="ignore"):
                norm = np.asarray(done["accuracy"], dtype=np.float64) / ceil
            arrays.update({"reliability": self.reliability,
                           "accuracy_ceiling": ceil.astype(np.float32),
                           "accuracy_normalised": norm.astype(np.float32),
                           "accuracy_halves": self.half_accuracy})
            cols["reliability_mean"] = nanstat(np.nanmean, rel)
            cols["accuracy_ceiling_mean"] = nanstat(np.nanmean, ceil)
        attrs = {"n_permutations": self.n_permutations, "permutation_seed": self.seed,
                 "fdr_level": FDR_LEVEL}
        return Result(arrays, cols, attrs)
