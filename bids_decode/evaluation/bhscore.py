"""Brain hierarchy (BH) score, decoding-based (Nonaka, Majima, Aoki & Kamitani 2021, iScience).

How brain-like a network's layer hierarchy is: each sampled unit of each layer gets its
*preferred ROI*, the one of V1, V2, V3, V4, HVC that decodes it best; the units whose best
accuracy is significant enter a Spearman correlation between the position of their layer and
the position of their preferred ROI. As in ``KamitaniLab/BHscore`` (``bhscore.py``,
``compute_bhscore_layerselect``), the score is the mean of that correlation over 100 draws of
5 layers (the first and last layers always in, 3 drawn from the others); here the draws are
seeded (``--bh-seed``) so the score is reproducible.

Which units count (``--bh-test``):

- ``permutation`` (default): this app's one-sided permutation p-value of the best ROI's
  accuracy, Bonferroni-corrected over the 5 ROIs (``min(1, 5 p) < 0.05``), and r > 0.
- ``paper``: the repository's test as coded. It computes ``t = r * sqrt((n - 2) * (1 - r**2))``
  with n the number of test images and keeps ``2 * (1 - T_{n-2}.cdf(t)) < 0.05`` and r > 0,
  which at n = 50 keeps exactly 0.3047 < r < 0.9524. The textbook statistic is
  ``r * sqrt((n - 2) / (1 - r**2))`` (it keeps r > 0.2787 at n = 50): the code multiplies
  where the formula divides, so it drops the best-decoded units too. ``paper`` reproduces
  published numbers; ``permutation`` is the correct test.

The counts of kept units per (layer, preferred ROI) determine the score (Spearman's rho of two
discrete variables is a function of their contingency table), so the bootstrap over units
resamples those counts (multinomially within each layer, the same as resampling the layer's
units with replacement) instead of refitting 100 correlations on unit arrays each time.

Encoding-based score (the other half of the published score; ``calc_bhscore.ipynb``): the roles
swap. Each voxel of each ROI gets its *best layer*, the one of the score's layers (all of them:
the repository calls ``compute_bhscore``, not the layer-draw version, for encoding) that
predicts it best; at most ``--bh-units`` (default 1000, the repository's number) voxels per
(subject, ROI) enter, drawn with a seed, the same voxels for every layer; a voxel counts when
its best accuracy is significant by the same ``--bh-test`` (``permutation``: Bonferroni over the
layers compared); the score is one Spearman correlation between the ROI position and the
best-layer position of the kept voxels, subjects pooled, with the same bootstrap (voxels
resampled within each ROI). The published BH score is the mean of the two.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bids_decode.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: The ROIs of the score, in hierarchy order.
BH_ROIS = ("V1", "V2", "V3", "V4", "HVC")
#: Layer draws, layers per draw, bootstrap resamples, significance level.
N_DRAWS = 100
LAYERS_PER_DRAW = 5
N_BOOTSTRAP = 1000
ALPHA = 0.05
TESTS = ("permutation", "paper")


# ------------------------------------------------------------------------------ unit level

def preferred_roi(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The preferred ROI of each unit and its accuracy (NaN counted as 0, as the paper's code).

    Parameters
    ----------
    acc : ndarray of shape (n_rois, n_units)
        Accuracies, ROIs in :data:`BH_ROIS` order.

    Returns
    -------
    best : ndarray of shape (n_units,), int64
        Index of the ROI with the highest accuracy (the first one on ties).
    best_r : ndarray of shape (n_units,), float64
    """
    a = np.nan_to_num(np.asarray(acc, dtype=np.float64), nan=0.0)
    return np.argmax(a, axis=0), np.max(a, axis=0)


def paper_keep(best_r: np.ndarray, n_images: int, alpha: float = ALPHA) -> np.ndarray:
    """``--bh-test paper``: KamitaniLab/BHscore's unit selection exactly as coded.

    ``t = r * sqrt((n - 2) * (1 - r**2))``, two-sided p from Student's t with n - 2 degrees of
    freedom, kept where p < alpha and r > 0 (see the module docstring for how this differs
    from the textbook statistic).

    Parameters
    ----------
    best_r : ndarray of shape (n_units,)
        Best accuracy of each unit (NaN already counted as 0).
    n_images : int
        Test images (n).

    Returns
    -------
    ndarray of shape (n_units,), bool
    """
    r = np.asarray(best_r, dtype=np.float64)
    t = r * np.sqrt((n_images - 2) * (1 - r ** 2))
    p = 2 * (1 - stats.t.cdf(t, df=n_images - 2))
    return (p < alpha) & (r > 0)


def permutation_keep(best_r: np.ndarray, best_p: np.ndarray, n_rois: int = len(BH_ROIS),
                     alpha: float = ALPHA) -> np.ndarray:
    """``--bh-test permutation``: the best ROI's permutation p, Bonferroni over the ROIs.

    Parameters
    ----------
    best_r, best_p : ndarray of shape (n_units,)
        Accuracy and one-sided permutation p-value of each unit in its preferred ROI.

    Returns
    -------
    ndarray of shape (n_units,), bool
        ``min(1, n_rois * p) < alpha`` and r > 0 (NaN p: not kept).
    """
    p = np.asarray(best_p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (np.minimum(1.0, n_rois * p) < alpha) & (np.asarray(best_r) > 0)


def best_and_kept(acc: np.ndarray, pval: np.ndarray | None, test: str, n_images: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The best row of each column and whether its accuracy is significant.

    Decoding: rows are the ROIs and columns the units (the preferred ROI); encoding: rows are
    the layers and columns the voxels (the best layer). NaN counts as 0 (:func:`preferred_roi`).

    Parameters
    ----------
    acc : ndarray of shape (n_compared, n_items)
    pval : ndarray of shape (n_compared, n_items) or None
        Permutation p-values (unused, may be None, with ``test="paper"``).
    test : {"permutation", "paper"}
        ``permutation``: :func:`permutation_keep`, Bonferroni over the ``n_compared`` rows;
        ``paper``: :func:`paper_keep`.
    n_images : int
        Test images (the paper test's n).

    Returns
    -------
    best : ndarray of shape (n_items,), int64
    keep : ndarray of shape (n_items,), bool
    """
    best, best_r = preferred_roi(acc)
    if test == "paper":
        return best, paper_keep(best_r, n_images)
    best_p = np.asarray(pval, dtype=np.float64)[best, np.arange(best.size)]
    return best, permutation_keep(best_r, best_p, np.asarray(acc).shape[0])


# ----------------------------------------------------------------------------- the score

def layer_draws(n_layers: int, seed: int, n_draws: int = N_DRAWS,
                per_draw: int = LAYERS_PER_DRAW) -> np.ndarray:
    """The layer subsets of the score: first and last always, the others drawn.

    Parameters
    ----------
    n_layers : int
    seed : int
        ``--bh-seed`` (``np.random.default_rng(seed)``; one draw after another).

    Returns
    -------
    ndarray of shape (n_draws, per_draw), int64
        Sorted layer indices per draw. With ``n_layers <= per_draw``, every draw is every
        layer (the score is then one correlation).
    """
    if n_layers <= per_draw:
        return np.tile(np.arange(n_layers, dtype=np.int64), (n_draws, 1))
    rng = np.random.default_rng(seed)
    middle = np.arange(1, n_layers - 1)
    draws = np.empty((n_draws, per_draw), dtype=np.int64)
    for i in range(n_draws):
        inner = np.sort(rng.choice(middle, size=per_draw - 2, replace=False))
        draws[i] = np.r_[0, inner, n_layers - 1]
    return draws


def _midranks(counts: np.ndarray) -> np.ndarray:
    """Average rank of each category of sorted categorical data with these counts."""
    before = np.cumsum(counts) - counts
    return before + (counts + 1) / 2.0


def spearman_from_counts(table: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties) of two ordinal variables from their counts.

    Parameters
    ----------
    table : ndarray of shape (n_layers, n_rois)
        Units per (layer position, preferred-ROI position).

    Returns
    -------
    float
        The correlation :func:`scipy.stats.spearmanr` gives on the units; NaN when either
        variable is constant.
    """
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    if n < 2:
        return float("nan")
    ra = _midranks(table.sum(axis=1))
    rb = _midranks(table.sum(axis=0))
    ma = (table.sum(axis=1) @ ra) / n
    mb = (table.sum(axis=0) @ rb) / n
    da, db = ra - ma, rb - mb
    va = table.sum(axis=1) @ da ** 2
    vb = table.sum(axis=0) @ db ** 2
    if va <= 0 or vb <= 0:
        return float("nan")
    return float(da @ table @ db / np.sqrt(va * vb))


def bh_score(table: np.ndarray, draws: np.ndarray) -> float:
    """The BH score: the mean over layer draws of Spearman's rho (NaN draws ignored).

    Parameters
    ----------
    table : ndarray of shape (n_layers, n_rois)
        Kept units per (layer, preferred ROI), layers in hierarchy order.
    draws : ndarray of shape (n_draws, k)
        From :func:`layer_draws`.
    """
    rhos = np.array([spearman_from_counts(table[d]) for d in draws])
    return float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")


@dataclass
class BHResult:
    """The score of one network for one subject (or the pooled subjects).

    Attributes
    ----------
    score, ci_low, ci_high : float
        The BH score and its bootstrap 95% interval over units.
    counts : ndarray of shape (n_layers, n_rois + 1)
        Sampled units per (layer, preferred ROI) that are kept; the last column counts the
        units not kept. Encoding score: shape (n_rois, n_layers + 1), drawn voxels per (ROI,
        best layer), so :attr:`n_kept` counts voxels.
    """

    score: float
    ci_low: float
    ci_high: float
    counts: np.ndarray

    @property
    def n_kept(self) -> int:
        return int(self.counts[:, :-1].sum())


def unit_counts(preferred: Sequence[np.ndarray], kept: Sequence[np.ndarray],
                n_rois: int = len(BH_ROIS)) -> np.ndarray:
    """(layer, preferred ROI) counts of kept units, and a last column of the units dropped.

    Parameters
    ----------
    preferred, kept : sequences (one per layer) of ndarray of shape (n_units_layer,)
        Preferred-ROI index and whether the unit is kept.

    Returns
    -------
    ndarray of shape (n_layers, n_rois + 1), int64
    """
    out = np.zeros((len(preferred), n_rois + 1), dtype=np.int64)
    for i, (best, keep) in enumerate(zip(preferred, kept)):
        out[i, :n_rois] = np.bincount(best[keep], minlength=n_rois)
        out[i, n_rois] = int((~keep).sum())
    return out


def score_with_interval(counts: np.ndarray, draws: np.ndarray, seed: int,
                        n_boot: int = N_BOOTSTRAP) -> BHResult:
    """The BH score of ``counts`` and its percentile bootstrap 95% interval over units.

    Each resample draws every layer's units with replacement (a multinomial draw of the
    layer's counts, dropped units included), so the number of kept units varies as it would.

    Parameters
    ----------
    counts : ndarray of shape (n_layers, n_rois + 1)
        From :func:`unit_counts`.
    draws : ndarray of shape (n_draws, k)
    seed : int
        Seed of the bootstrap (``np.random.default_rng([seed, 1])``).
    """
    score = bh_score(counts[:, :-1], draws)
    rng = np.random.default_rng([int(seed), 1])
    n = counts.sum(axis=1)
    p = counts / np.maximum(n, 1)[:, None]
    boots = np.empty(n_boot)
    for b in range(n_boot):
        resampled = np.stack([rng.multinomial(n_l, p_l) if n_l else np.zeros_like(c)
                              for n_l, p_l, c in zip(n, p, counts)])
        boots[b] = bh_score(resampled[:, :-1], draws)
    finite = boots[np.isfinite(boots)]
    lo, hi = (np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan))
    return BHResult(score, float(lo), float(hi), counts)


# -------------------------------------------------------------------------- encoding score

def voxel_draw(n_voxels: int, n_max: int, seed: int) -> np.ndarray:
    """The voxels of one (subject, ROI) in the encoding score: at most ``n_max``, at random.

    As in ``calc_bhscore.ipynb``, the generator is seeded afresh for every (subject, ROI), so
    the draw depends only on the number of voxels and the seed, and the same voxels serve
    every layer.

    Parameters
    ----------
    n_voxels, n_max : int
    seed : int
        ``--bh-seed`` (``np.random.default_rng([seed, 2])``).

    Returns
    -------
    ndarray of shape (min(n_voxels, n_max),), int64
        Ascending positions among the ROI's voxels (every voxel when ``n_voxels <= n_max``).
    """
    if n_voxels <= n_max:
        return np.arange(n_voxels, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 2])
    return np.sort(rng.choice(n_voxels, size=n_max, replace=False)).astype(np.int64)


def voxel_counts(best: Sequence[np.ndarray], kept: Sequence[np.ndarray], n_layers: int
                 ) -> np.ndarray:
    """(ROI, best layer) counts of kept voxels, and a last column of the voxels dropped.

    Parameters
    ----------
    best, kept : sequences (one per ROI, :data:`BH_ROIS` order) of ndarray of shape (n_vox,)
        Best-layer index and significance of each drawn voxel (:func:`best_and_kept`).
    n_layers : int

    Returns
    -------
    ndarray of shape (n_rois, n_layers + 1), int64
    """
    return unit_counts(best, kept, n_rois=n_layers)


def encoding_score(counts: np.ndarray, seed: int, n_boot: int = N_BOOTSTRAP) -> BHResult:
    """The encoding BH score of ``counts`` and its bootstrap 95% interval over voxels.

    One Spearman correlation over every ROI and every layer (no layer draws, as the
    repository's encoding score); the bootstrap resamples each ROI's voxels with replacement
    (:func:`score_with_interval` with the ROIs as its rows).

    Parameters
    ----------
    counts : ndarray of shape (n_rois, n_layers + 1)
        From :func:`voxel_counts` (summed over subjects for the pooled score).
    seed : int
    """
    every_roi = np.arange(counts.shape[0], dtype=np.int64)[None]
    return score_with_interval(counts, every_roi, seed, n_boot)


def hierarchy_layers(network: str, decoded: Sequence[str], override: Sequence[str] = ()
                     ) -> list[str]:
    """The layers of the score in hierarchy order.

    ``override`` (``--bh-layers``) when given; else, for a network of
    :data:`bids_decode.networks.NETWORKS` with paper layer names, those names in forward order
    that were decoded; else every decoded layer in the features file's order.

    Raises
    ------
    UsageError
        ``--bh-layers`` names a layer that was not decoded.
    """
    if override:
        unknown = [la for la in override if la not in decoded]
        if unknown:
            raise UsageError(f"--bh-layers names {unknown}, which the outputs of network "
                             f"{network} do not hold (they hold {list(decoded)}). Fix "
                             "--bh-layers.")
        return list(override)
    from bids_decode.features.networks import NETWORKS  # loads torch: only when needed

    spec = NETWORKS.get(str(network).lower())
    if spec is not None and spec.layers:
        known = [la for la in spec.layers if la in decoded]
        if len(known) >= 2:
            return known
    return list(decoded)
