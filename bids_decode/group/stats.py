"""Group level, step 3: between-subject statistics of unit accuracies, and the summary rows."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from bids_decode.evaluation.correlation import nanstat
from bids_decode.evaluation.pvalues import FDR_LEVEL
from bids_decode.evaluation.reliability import disattenuate, split_half_reliability

TOP_PERCENTS = (1, 5, 10)


def nanmean(a) -> float:
    return nanstat(np.nanmean, a)


@dataclass
class LayerResult:
    """What the tables, figures and the report need of one (ROI, layer)."""

    pairs: list[dict]
    overlap: list[dict]
    subject_means: dict[str, float]
    distributions: dict[str, dict]
    scatter: tuple[np.ndarray, np.ndarray] | None
    averaged: dict | None
    decodable_all: float = float("nan")


class _Ranked:
    """One subject's accuracies over a set of units: centred values, sort order, ranks."""

    def __init__(self, x: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        self.n = x.size
        self.xc = x - x.mean() if x.size else x
        self.norm = float(np.sqrt(self.xc @ self.xc))
        x32 = x.astype(np.float32)
        # accuracies are stored as float32: sorting them as float32 is exact and faster
        self.order = np.argsort(x32 if np.array_equal(x32, x) else x)
        xs = x[self.order]
        start = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if x.size else np.array([], int)
        counts = np.diff(np.r_[start, x.size])
        ranks = np.empty(x.size)
        ranks[self.order] = np.repeat(start + (counts + 1) / 2.0, counts)  # ties: average
        self.rc = ranks - ranks.mean() if x.size else ranks
        self.rnorm = float(np.sqrt(self.rc @ self.rc))

    def top(self, n_top: int) -> np.ndarray:
        return self.order[self.n - n_top:]


def _corr(a: np.ndarray, b: np.ndarray, na: float, nb: float) -> float:
    if a.size < 3 or na == 0 or nb == 0:
        return float("nan")
    return float(np.clip((a @ b) / (na * nb), -1.0, 1.0))


def pair_statistics(acc: dict[str, np.ndarray], percents=TOP_PERCENTS
                    ) -> tuple[list[dict], list[dict]]:
    """Between-subject correlation and top-k% overlap of unit accuracies for every pair.

    Each subject's accuracies are centred and sorted once over the units finite in every
    subject (the usual case: NaN units are the constant features, the same for all); a pair
    whose finite units differ from that set is recomputed over its own common units.

    Parameters
    ----------
    acc : dict subject -> ndarray of shape (n_units,)
    percents : sequence of float
        k of the top-k% overlaps.

    Returns
    -------
    pairs : list of dict with subject_a, subject_b, r (Pearson), spearman_r, n_units
    overlap : list of dict with subject_a, subject_b, top_percent, n_units, n_top, n_shared,
        overlap (n_shared / n_top), chance (n_top / n_units); ``n_top = round(k/100 * n)``,
        at least 1, the same for both subjects, so the overlap is symmetric.
    """
    subs = list(acc)
    finite = {s: np.isfinite(acc[s]) for s in subs}
    common = np.logical_and.reduce([finite[s] for s in subs])
    cache: dict[str, _Ranked] = {}
    pairs, overlap = [], []
    for a, b in combinations(subs, 2):
        ok = finite[a] & finite[b]
        if np.array_equal(ok, common):
            for s in (a, b):
                if s not in cache:
                    cache[s] = _Ranked(acc[s][common])
            ra, rb = cache[a], cache[b]
        else:
            ra, rb = _Ranked(acc[a][ok]), _Ranked(acc[b][ok])
        n = ra.n
        pairs.append({"subject_a": a, "subject_b": b, "r": _corr(ra.xc, rb.xc, ra.norm, rb.norm),
                      "spearman_r": _corr(ra.rc, rb.rc, ra.rnorm, rb.rnorm), "n_units": n})
        if n == 0:
            continue
        for k in percents:
            n_top = max(1, int(round(k / 100 * n)))
            in_b = np.zeros(n, dtype=bool)
            in_b[rb.top(n_top)] = True
            shared = int(in_b[ra.top(n_top)].sum())
            overlap.append({"subject_a": a, "subject_b": b, "top_percent": k, "n_units": n,
                            "n_top": n_top, "n_shared": shared, "overlap": shared / n_top,
                            "chance": n_top / n})
    return pairs, overlap


def pair_correlations(acc: dict[str, np.ndarray]) -> list[dict]:
    """Pearson and Spearman r of unit accuracies for every subject pair (see pair_statistics)."""
    return pair_statistics(acc, percents=())[0]


def top_overlap(acc: dict[str, np.ndarray], percents=TOP_PERCENTS) -> list[dict]:
    """Top-k% overlap of unit accuracies for every subject pair (see pair_statistics)."""
    return pair_statistics(acc, percents)[1]


def reliability_columns(pairs: list[dict], groups: dict) -> float:
    """Add reliability_a/b and r_disattenuated to each pair; return the fraction of units
    decodable (q < 0.05) in every subject (NaN when a subject lacks q-values).

    Parameters
    ----------
    pairs : list of dict
        Rows of :func:`pair_statistics` (changed in place).
    groups : dict subject -> h5py.Group of the layer in that subject's output
    """
    rel, decodable = {}, []
    for label, g in groups.items():
        rel[label] = float("nan")
        if "accuracy_halves" in g:
            halves = g["accuracy_halves"][()].reshape(2, -1)
            rel[label] = split_half_reliability(halves[0], halves[1])
        if "q_value" in g:
            decodable.append(g["q_value"][()].ravel() < FDR_LEVEL)
    for p in pairs:
        ra, rb = rel[p["subject_a"]], rel[p["subject_b"]]
        p.update(reliability_a=ra, reliability_b=rb,
                 r_disattenuated=disattenuate(p["r"], ra, rb))
    if len(decodable) < len(groups) or decodable[0].size == 0:
        return float("nan")
    return float(np.logical_and.reduce(decodable).mean())


def summary_row(roi, layer, n_subjects, shape, res: LayerResult) -> dict:
    r = np.array([p["r"] for p in res.pairs], dtype=np.float64)
    sr = np.array([p["spearman_r"] for p in res.pairs], dtype=np.float64)
    top10 = [o["overlap"] for o in res.overlap if o["top_percent"] == 10]
    means = np.array(list(res.subject_means.values()), dtype=np.float64)
    av = res.averaged or {}

    def stat(fn, a):
        return float(fn(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")

    return {
        "roi": roi, "layer": layer, "n_subjects": n_subjects, "n_pairs": len(res.pairs),
        "n_units": int(np.prod(shape)),
        "r_mean": stat(np.mean, r), "r_min": stat(np.min, r), "r_max": stat(np.max, r),
        "spearman_r_mean": stat(np.mean, sr), "spearman_r_min": stat(np.min, sr),
        "spearman_r_max": stat(np.max, sr), "top10_overlap_mean": nanmean(top10),
        "profile_r_mean": stat(np.mean, means), "profile_r_min": stat(np.min, means),
        "profile_r_max": stat(np.max, means),
        "averaged_profile_r_mean": av.get("profile_r_mean", float("nan")),
        "averaged_pattern_r_mean": av.get("pattern_r_mean", float("nan")),
        "averaged_identification_accuracy": av.get("identification_accuracy", float("nan")),
        "r_disattenuated_mean": nanmean([p["r_disattenuated"] for p in res.pairs]),
        "fraction_decodable_all": res.decodable_all,
    }
