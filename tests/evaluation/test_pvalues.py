"""Permutation p-values, BH q-values and max-statistic FWER against brute force and scipy;
false discoveries and family-wise errors controlled on planted nulls."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control

from bids_decode.evaluation.permutation import PermutationTest
from bids_decode.evaluation.pvalues import fdr_bh, maxstat_pvalues, permutation_pvalues
from tests.evaluation.nulls import brute_null, corr, planted


def test_pvalues_and_maxstat_match_brute_force():
    pred, true = planted(n_units=40, r=np.linspace(0, 0.7, 40), seed=3)
    pred[:, 0] = 1.0
    test = PermutationTest(50, 300, seed=9)
    stat, count = test.update(pred, true)
    null = brute_null(pred, true, test.perms[1:])
    obs = np.array([corr(pred[:, u], true[:, u]) for u in range(40)])
    assert count[0] == -1 and np.isnan(stat[0])
    np.testing.assert_array_equal(count[1:], (null[1:] >= obs[1:, None]).sum(axis=1))
    p = permutation_pvalues(count, 300)
    np.testing.assert_allclose(p[1:], (1 + count[1:]) / 301)
    assert np.isnan(p[0])
    fwer = maxstat_pvalues(stat, test.max_null)
    max_null = np.nanmax(null, axis=0)
    ref = np.array([(1 + (max_null >= r).sum()) / 301 for r in obs[1:]])
    np.testing.assert_allclose(fwer[1:], ref)
    assert np.isnan(fwer[0]) and (fwer[1:] >= p[1:]).all()


def test_fdr_bh_matches_scipy():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(size=500), rng.uniform(0, 1e-3, 50), [np.nan] * 5, [1.0, 0.05, 0.05]]
    rng.shuffle(p)
    q = fdr_bh(p)
    ok = np.isfinite(p)
    assert np.isnan(q[~ok]).all()
    np.testing.assert_allclose(q[ok], false_discovery_control(p[ok]), rtol=1e-12)


def test_fdr_is_controlled_and_power_is_high():
    """Mixtures of null and strong units: mean false discovery proportion <= 5% (BH promises
    pi0 * 5% = 3.75% in expectation), power on strong units reported and >= 90%; max-statistic
    p-values keep the family-wise error."""
    fdp, power, any_fwer = [], [], []
    for rep in range(4):
        r = np.r_[np.zeros(1500), np.full(500, 0.5)]
        pred, true = planted(n_units=r.size, r=r, seed=10 + rep)
        test = PermutationTest(50, seed=rep)
        stat, count = test.update(pred, true)
        q = fdr_bh(permutation_pvalues(count, test.n_permutations))
        fwer = maxstat_pvalues(stat, test.max_null)
        found = q < 0.05
        fdp.append(np.sum(found & (r == 0)) / max(1, found.sum()))
        power.append(np.mean(found[r > 0]))
        any_fwer.append(bool((fwer[r == 0] < 0.05).any()))
    print(f"\nFDR {np.mean(fdp):.4f}, power (r = 0.5, 50 images) {np.mean(power):.3f}, "
          f"families with a null FWER rejection {sum(any_fwer)}/4")
    assert np.mean(fdp) <= 0.05
    assert np.mean(power) >= 0.9
    assert sum(any_fwer) <= 1


def test_maxstat_controls_familywise_error():
    """Families of null units: some unit has p_fwer < .05 in about 5% of the families."""
    hits = []
    for fam in range(40):
        pred, true = planted(n_units=200, r=0.0, seed=100 + fam)
        test = PermutationTest(50, 200, seed=fam)
        stat, _ = test.update(pred, true)
        hits.append((maxstat_pvalues(stat, test.max_null) < 0.05).any())
    print(f"\nfamilies with a false FWER rejection: {sum(hits)}/40")
    assert sum(hits) <= 6  # P(X > 6) < 1% for X ~ Binomial(40, 0.05)
