"""The brain hierarchy score against an independent implementation of KamitaniLab/BHscore.

``reference_layerselect`` below is written from the description of ``compute_bhscore`` and
``compute_bhscore_layerselect`` (Nonaka et al. 2021; issue 27): NaN accuracies count as 0, the
preferred ROI is the argmax over the ROIs, a unit counts when the repository's t-test of its
best accuracy gives p < 0.05 and r > 0 (``--bh-test paper``), and the score is the mean over
layer draws of scipy's Spearman r between layer numbers and preferred-ROI indices of the
units, the units of every subject pooled. It works on unit arrays; the app works on counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bids_decode.evaluation import bhscore
from bids_decode.features.units import sample_units

N_IMAGES = 50


def reference_bhscore(predacc_list, n_images=N_IMAGES):
    """One draw: predacc_list is a list (layers) of (ROIs x units) accuracy arrays."""
    layer_numbers, best_rois = [], []
    for i, acc in enumerate(predacc_list):
        acc = np.where(np.isnan(acc), 0.0, acc)
        best = acc.max(axis=0)
        arg = acc.argmax(axis=0)
        tval = best * np.sqrt((n_images - 2) * (1 - best ** 2))
        p = 2 * (1 - stats.t.cdf(tval, df=n_images - 2))
        sel = (p < 0.05) & (best > 0)
        layer_numbers += [i + 1] * int(sel.sum())
        best_rois += list(arg[sel])
    return stats.spearmanr(layer_numbers, best_rois)[0]


def reference_layerselect(predacc_list, draws):
    return np.mean([reference_bhscore([predacc_list[i] for i in d]) for d in draws])


def _planted_accuracies(rng, n_layers=8, n_units=300, n_subjects=3, share=0.6):
    """Per subject, per layer, (5 ROIs x units) accuracies peaking at a planted ROI."""
    out = []
    for _ in range(n_subjects):
        layers = []
        for li in range(n_layers):
            roi = np.where(rng.random(n_units) < share, round(4 * li / (n_layers - 1)),
                           rng.integers(0, 5, n_units))
            acc = rng.normal(0.05, 0.15, (5, n_units))
            acc[roi, np.arange(n_units)] += rng.uniform(0.1, 0.9, n_units)
            acc[rng.random((5, n_units)) < 0.02] = np.nan
            layers.append(np.clip(acc, -0.99, 0.99))
        out.append(layers)
    return out


def _app_score(per_subject, draws):
    counts = []
    for layers in per_subject:
        units = [bhscore.best_and_kept(acc, None, "paper", N_IMAGES) for acc in layers]
        counts.append(bhscore.unit_counts([b for b, _ in units], [k for _, k in units]))
    return [bhscore.bh_score(c[:, :-1], draws) for c in counts], \
        bhscore.bh_score(sum(counts)[:, :-1], draws)


def test_score_equals_an_independent_compute_bhscore_layerselect():
    rng = np.random.default_rng(5)
    per_subject = _planted_accuracies(rng)
    draws = bhscore.layer_draws(8, seed=11)
    subjects, pooled = _app_score(per_subject, draws)
    for layers, got in zip(per_subject, subjects):
        assert abs(got - reference_layerselect(layers, draws)) < 1e-12
    pooled_acc = [np.hstack([s[i] for s in per_subject]) for i in range(8)]  # units pooled
    want = reference_layerselect(pooled_acc, draws)
    assert abs(pooled - want) < 1e-12
    assert 0.3 < want < 1.0  # the planted hierarchy is there


def test_layer_draws_keep_first_and_last_and_are_seeded():
    d = bhscore.layer_draws(9, seed=0)
    assert d.shape == (100, 5)
    assert (d[:, 0] == 0).all() and (d[:, -1] == 8).all()
    assert (np.diff(d, axis=1) > 0).all()
    assert np.array_equal(d, bhscore.layer_draws(9, seed=0))
    assert not np.array_equal(d, bhscore.layer_draws(9, seed=1))
    assert len({tuple(r) for r in d}) > 10  # the middle layers vary
    assert np.array_equal(bhscore.layer_draws(4, seed=0)[0], [0, 1, 2, 3])


def test_paper_test_keeps_exactly_the_units_between_0_3047_and_0_9524():
    r = np.linspace(-1, 1, 2_000_001)
    keep = bhscore.paper_keep(r, 50)
    kept = r[keep]
    assert round(kept.min(), 4) == 0.3047 and round(kept.max(), 4) == 0.9524
    assert np.array_equal(keep, (r > kept.min() - 1e-9) & (r < kept.max() + 1e-9))
    # the textbook statistic r*sqrt((n-2)/(1-r^2)) would keep every r > 0.2787
    t_crit = stats.t.ppf(0.975, 48)
    assert abs(t_crit / np.sqrt(48 + t_crit ** 2) - 0.2787) < 1e-4


def test_permutation_test_is_bonferroni_over_the_rois():
    acc = np.array([[0.5, 0.2, 0.4, -0.1], [0.1, 0.3, np.nan, -0.2]] + [[0.0] * 4] * 3)
    p = np.full((5, 4), 0.5)
    p[0, 0], p[1, 1], p[0, 2], p[2, 3] = 0.009, 0.011, 0.001, 0.001
    best, keep = bhscore.best_and_kept(acc, p, "permutation", 50)
    assert list(best) == [0, 1, 0, 2]  # unit 3: the first ROI at 0
    assert list(keep) == [True, False, True, False]  # 5 * 0.011 > 0.05; r <= 0 never


@pytest.mark.parametrize("seed", range(5))
def test_spearman_from_counts_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 30, (5, 5))
    a = np.repeat(np.arange(5), table.sum(axis=1))
    b = np.concatenate([np.repeat(np.arange(5), row) for row in table])
    assert abs(bhscore.spearman_from_counts(table) - stats.spearmanr(a, b)[0]) < 1e-12


def test_bootstrap_interval_brackets_the_score():
    rng = np.random.default_rng(1)
    counts = np.column_stack([rng.integers(0, 40, (6, 5)), rng.integers(0, 9, 6)])
    res = bhscore.score_with_interval(counts, bhscore.layer_draws(6, 0), seed=0, n_boot=200)
    assert res.ci_low <= res.score <= res.ci_high
    assert res.n_kept == counts[:, :-1].sum()
    again = bhscore.score_with_interval(counts, bhscore.layer_draws(6, 0), seed=0, n_boot=200)
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)


def test_unit_sample_is_reproducible_and_per_layer():
    a = sample_units(14_860_000, 1000, 0, "conv1_1")
    assert a.size == 1000 and np.array_equal(a, np.unique(a))
    assert np.array_equal(a, sample_units(14_860_000, 1000, 0, "conv1_1"))
    assert not np.array_equal(a, sample_units(14_860_000, 1000, 0, "conv1_2"))
    assert not np.array_equal(a, sample_units(14_860_000, 1000, 1, "conv1_1"))
    assert np.array_equal(sample_units(50, 1000, 0, "fc8"), np.arange(50))


def test_hierarchy_layers():
    decoded = ["fc8", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert bhscore.hierarchy_layers("alexnet", decoded) == [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert bhscore.hierarchy_layers("mine", decoded) == decoded
    assert bhscore.hierarchy_layers("alexnet", decoded, ["conv1", "fc8"]) == ["conv1", "fc8"]
    from bids_decode.errors import UsageError

    with pytest.raises(UsageError, match="pool5"):
        bhscore.hierarchy_layers("alexnet", decoded, ["conv1", "pool5"])
