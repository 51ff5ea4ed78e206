"""The encoding-based brain hierarchy score against an independent implementation.

``reference_encoding_bhscore`` is written from the description of ``calc_bhscore.ipynb``'s
encoding part (Nonaka et al. 2021): per ROI, the accuracies of every subject's drawn voxels are
stacked into one (layers x voxels) array; NaN counts as 0; each voxel's best layer is the
argmax over all the layers (no layer draws); a voxel counts when its best accuracy passes the
test (the repository's t-test, or here the permutation p Bonferroni over the layers) and
r > 0; the score is scipy's Spearman r between the ROI numbers and the best-layer indices of
the kept voxels. It loops over voxels; the app works on counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bids_decode.evaluation import bhscore

N_IMAGES = 50
N_ROIS = len(bhscore.BH_ROIS)


def reference_encoding_bhscore(per_subject, draws, test="paper", n_images=N_IMAGES):
    """per_subject: list (subjects) of list (ROIs) of (acc, p), each (n_layers, n_voxels);
    draws: the same nesting of voxel index arrays."""
    roi_numbers, best_layers = [], []
    for roi in range(N_ROIS):
        for subject, vox in zip(per_subject, draws):
            acc, p = subject[roi]
            for j in vox[roi]:
                col = [0.0 if np.isnan(a) else float(a) for a in acc[:, j]]
                best = 0
                for i in range(1, len(col)):
                    if col[i] > col[best]:
                        best = i
                r = col[best]
                if test == "paper":
                    tval = r * np.sqrt((n_images - 2) * (1 - r ** 2))
                    keep = 2 * (1 - stats.t.cdf(tval, df=n_images - 2)) < 0.05
                else:
                    keep = min(1.0, len(col) * p[best, j]) < 0.05
                if keep and r > 0:
                    roi_numbers.append(roi + 1)
                    best_layers.append(best)
    return stats.spearmanr(roi_numbers, best_layers)[0]


def planted_encoding(rng, *, n_layers=8, n_voxels=(1400, 900, 1100, 700, 1300),
                     hierarchical=True, n_subjects=3):
    """Per subject, per ROI, (acc, p) of shape (n_layers, n_voxels): each voxel's accuracy
    peaks at a planted layer, rising with the ROI (hierarchical) or anywhere (scrambled)."""
    out = []
    for _ in range(n_subjects):
        rois = []
        for roi, n in enumerate(n_voxels):
            if hierarchical:
                centre = roi * (n_layers - 1) / (N_ROIS - 1)
                planted = np.clip(np.round(centre + rng.normal(0, 0.8, n)), 0, n_layers - 1)
            else:
                planted = rng.integers(0, n_layers, n)
            acc = rng.normal(0.05, 0.12, (n_layers, n))
            acc[planted.astype(int), np.arange(n)] += rng.uniform(0.0, 0.7, n)
            acc[rng.random((n_layers, n)) < 0.02] = np.nan
            acc = np.clip(acc, -0.99, 0.99)
            p = 1 - stats.norm.cdf(np.nan_to_num(acc) * np.sqrt(N_IMAGES - 3))
            rois.append((acc, p))
        out.append(rois)
    return out


def app_counts(subject, n_max, seed, test="paper"):
    """The app's counts of one subject (what group.networks does per encoding file)."""
    kept, draws = [], []
    for acc, p in subject:
        vox = bhscore.voxel_draw(acc.shape[1], n_max, seed)
        draws.append(vox)
        kept.append(bhscore.best_and_kept(acc[:, vox], p[:, vox], test, N_IMAGES))
    n_layers = subject[0][0].shape[0]
    counts = bhscore.voxel_counts([b for b, _ in kept], [k for _, k in kept], n_layers)
    return counts, draws


@pytest.mark.parametrize("test", ["paper", "permutation"])
def test_encoding_score_equals_an_independent_implementation(test):
    data = planted_encoding(np.random.default_rng(11))
    per_subject = [app_counts(s, 1000, seed=5, test=test) for s in data]
    draws = [d for _, d in per_subject]
    # the draw: at most 1000 voxels of each ROI, ascending, distinct
    assert [len(v) for v in draws[0]] == [1000, 900, 1000, 700, 1000]
    assert all(np.all(np.diff(v) > 0) for d in draws for v in d)
    pooled = sum(c for c, _ in per_subject)
    ref = reference_encoding_bhscore(data, draws, test)
    got = bhscore.encoding_score(pooled, seed=5, n_boot=20).score
    assert np.isfinite(ref) and abs(got - ref) < 1e-12, (got, ref)
    for s, (counts, d) in zip(data, per_subject):
        assert abs(bhscore.encoding_score(counts, 5, n_boot=2).score
                   - reference_encoding_bhscore([s], [d], test)) < 1e-12


def test_hierarchical_voxels_score_high_and_scrambled_ones_near_zero():
    rng = np.random.default_rng(3)
    for hierarchical, lo, hi in ((True, 0.6, 1.0), (False, -0.1, 0.1)):
        data = planted_encoding(rng, hierarchical=hierarchical)
        pooled = sum(app_counts(s, 1000, seed=0)[0] for s in data)
        res = bhscore.encoding_score(pooled, seed=0, n_boot=200)
        assert lo < res.score < hi, (hierarchical, res.score)
        assert res.ci_low <= res.score <= res.ci_high
        assert res.n_kept == pooled[:, :-1].sum() > 1000


def test_voxel_draw_is_seeded_and_depends_only_on_the_count():
    a = bhscore.voxel_draw(4321, 1000, seed=0)
    assert a.shape == (1000,) and np.all(np.diff(a) > 0) and a.max() < 4321
    assert np.array_equal(a, bhscore.voxel_draw(4321, 1000, seed=0))
    assert not np.array_equal(a, bhscore.voxel_draw(4321, 1000, seed=1))
    assert np.array_equal(bhscore.voxel_draw(800, 1000, seed=0), np.arange(800))


def test_best_layer_is_taken_over_every_layer_with_bonferroni_over_the_layers():
    acc = np.array([[0.5, 0.2, np.nan], [0.1, 0.6, np.nan], [0.3, 0.1, 0.4]])
    p = np.array([[0.004, 0.5, np.nan], [0.5, 0.02, np.nan], [0.1, 0.5, 0.01]])
    best, keep = bhscore.best_and_kept(acc, p, "permutation", N_IMAGES)
    assert best.tolist() == [0, 1, 2]
    # 3 layers compared: 3 * 0.004 < 0.05, 3 * 0.02 >= 0.05, 3 * 0.01 < 0.05
    assert keep.tolist() == [True, False, True]
