"""Permutation p-values, BH q-values, max-statistic FWER, split-half reliability.

Array-level tests against brute-force references and planted nulls; the end-to-end acceptance
tests (CLI on a held-out simulated dataset with planted null units) are marked slow.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.stats import false_discovery_control

from bids_decode.evaluation import statistics as st
from bids_decode.inputs.samples import half_averages


def _data(n_images=50, n_units=300, r=0.0, seed=0):
    """Decoded and true values whose population correlation is ``r`` (per unit)."""
    rng = np.random.default_rng(seed)
    r = np.broadcast_to(np.asarray(r, dtype=float), (n_units,))
    true = rng.standard_normal((n_images, n_units))
    pred = r * true + np.sqrt(1 - r**2) * rng.standard_normal((n_images, n_units))
    return pred * rng.uniform(0.5, 2, n_units) + 3.0, true


def _corr(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(a, b)[0, 1]


def _brute_null(pred, true, perms):
    out = np.empty((pred.shape[1], len(perms)))
    for u in range(pred.shape[1]):
        for k, p in enumerate(perms):
            out[u, k] = _corr(pred[p, u], true[:, u])
    return out


def test_permutations_are_fixed_permutations():
    a = st.permutations(13, 40, seed=3)
    assert a.shape == (40, 13)
    assert (np.sort(a, axis=1) == np.arange(13)).all()
    np.testing.assert_array_equal(a, st.permutations(13, 40, seed=3))
    assert not np.array_equal(a, st.permutations(13, 40, seed=4))


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_null_correlations_match_brute_force(device):
    pred, true = _data(n_images=17, n_units=9, r=0.5)
    pred[:, 4] = 2.0  # constant decoded values: r undefined
    perms = st.permutations(17, 25, seed=1)
    got = st.null_correlations(pred, true, perms, device=device)
    ref = _brute_null(pred, true, perms)
    assert np.isnan(got[4]).all()
    ok = np.arange(9) != 4
    np.testing.assert_allclose(got[ok], ref[ok], atol=1e-12)


@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_results_do_not_depend_on_chunking(device):
    """Counts and statistics are bit-identical, and the maxima merge exactly, whatever the
    chunks (sizes 1, 7, all) or their order of merging."""
    pred, true = _data(n_units=61, r=np.linspace(-0.2, 0.8, 61), seed=2)
    whole = st.PermutationTest(50, 200, seed=5, device=device)
    s_all, c_all = whole.update(pred, true)
    for size in (1, 7):
        parts, maxima = [], []
        for a in range(0, 61, size):
            t = st.PermutationTest(50, 200, seed=5, device=device)  # one test per "shard"
            parts.append(t.update(pred[:, a:a + size], true[:, a:a + size]))
            maxima.append(t.max_null)
        merged = st.PermutationTest(50, 200, seed=5)
        for m in maxima[::-1]:
            merged.merge(m)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), s_all)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), c_all)
        np.testing.assert_array_equal(merged.max_null, whole.max_null)


def test_pvalues_and_maxstat_match_brute_force():
    pred, true = _data(n_units=40, r=np.linspace(0, 0.7, 40), seed=3)
    pred[:, 0] = 1.0
    test = st.PermutationTest(50, 300, seed=9)
    stat, count = test.update(pred, true)
    null = _brute_null(pred, true, test.perms[1:])
    obs = np.array([_corr(pred[:, u], true[:, u]) for u in range(40)])
    assert count[0] == -1 and np.isnan(stat[0])
    np.testing.assert_array_equal(count[1:], (null[1:] >= obs[1:, None]).sum(axis=1))
    p = st.permutation_pvalues(count, 300)
    np.testing.assert_allclose(p[1:], (1 + count[1:]) / 301)
    assert np.isnan(p[0])
    fwer = st.maxstat_pvalues(stat, test.max_null)
    max_null = np.nanmax(null, axis=0)
    ref = np.array([(1 + (max_null >= r).sum()) / 301 for r in obs[1:]])
    np.testing.assert_allclose(fwer[1:], ref)
    assert np.isnan(fwer[0]) and (fwer[1:] >= p[1:]).all()


def test_fdr_bh_matches_scipy():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(size=500), rng.uniform(0, 1e-3, 50), [np.nan] * 5, [1.0, 0.05, 0.05]]
    rng.shuffle(p)
    q = st.fdr_bh(p)
    ok = np.isfinite(p)
    assert np.isnan(q[~ok]).all()
    np.testing.assert_allclose(q[ok], false_discovery_control(p[ok]), rtol=1e-12)


def test_planted_nulls_are_calibrated():
    """Null units: p < .05 in about 5% (binomial 99.9% band), p roughly uniform."""
    pred, true = _data(n_units=4000, r=0.0, seed=4)
    stat, count = st.PermutationTest(50).update(pred, true)
    p = st.permutation_pvalues(count, st.N_PERMUTATIONS)
    rate = np.mean(p < 0.05)
    sd = np.sqrt(0.05 * 0.95 / p.size)
    print(f"\nnull units: {rate:.4f} with p < .05 (n = {p.size})")
    assert abs(rate - 0.05) < 3.3 * sd
    assert abs(np.mean(p) - 0.5) < 0.02


def test_fdr_is_controlled_and_power_is_high():
    """Mixtures of null and strong units: mean false discovery proportion <= 5% (BH promises
    pi0 * 5% = 3.75% in expectation), power on strong units reported and >= 90%; max-statistic
    p-values keep the family-wise error."""
    fdp, power, any_fwer = [], [], []
    for rep in range(4):
        r = np.r_[np.zeros(1500), np.full(500, 0.5)]
        pred, true = _data(n_units=r.size, r=r, seed=10 + rep)
        test = st.PermutationTest(50, seed=rep)
        stat, count = test.update(pred, true)
        q = st.fdr_bh(st.permutation_pvalues(count, test.n_permutations))
        fwer = st.maxstat_pvalues(stat, test.max_null)
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
        pred, true = _data(n_units=200, r=0.0, seed=100 + fam)
        test = st.PermutationTest(50, 200, seed=fam)
        stat, _ = test.update(pred, true)
        hits.append((st.maxstat_pvalues(stat, test.max_null) < 0.05).any())
    print(f"\nfamilies with a false FWER rejection: {sum(hits)}/40")
    assert sum(hits) <= 6  # P(X > 6) < 1% for X ~ Binomial(40, 0.05)


def test_spearman_brown_ceiling_disattenuation():
    np.testing.assert_allclose(st.spearman_brown([0.0, 0.5, 1.0]), [0.0, 2 / 3, 1.0])
    assert np.isnan(st.spearman_brown(-1.0))
    np.testing.assert_allclose(st.ceiling([0.81, 0.0, -0.2]), [0.9, np.nan, np.nan])
    assert st.disattenuate(0.4, 0.5, 0.8) == pytest.approx(0.4 / np.sqrt(0.4))
    assert np.isnan(st.disattenuate(0.4, -0.1, 0.8))


def test_split_half_reliability_recovers_planted_reliability():
    """Two noisy halves of a measure with true-score variance share s: SB(r_halves) = the
    full measure's reliability 2s / (2s + 1) (unit noise variance per half)."""
    rng = np.random.default_rng(1)
    s = 1.5
    truth = rng.standard_normal(20000) * np.sqrt(s)
    a = truth + rng.standard_normal(truth.size)
    b = truth + rng.standard_normal(truth.size)
    full = (a + b) / 2
    expected = s / (s + 0.5)
    assert st.split_half_reliability(a, b) == pytest.approx(expected, abs=0.01)
    assert np.corrcoef(full, truth)[0, 1] ** 2 == pytest.approx(expected, abs=0.01)


def test_half_averages_split_odd_and_even_presentations():
    X = np.arange(12, dtype=np.float32)[:, None] * [1.0, -1.0]
    image = np.array([0, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 2])
    h = half_averages(X, image, 3)
    assert h.shape == (2, 3, 2)
    # image 0 is shown in blocks 0, 2, 5, 8: odd presentations 0, 5; even 2, 8
    np.testing.assert_allclose(h[:, 0, 0], [2.5, 5.0])
    np.testing.assert_allclose(h[:, 1, 1], [-(1 + 7) / 2, -(4 + 10) / 2])
    assert half_averages(X[:3], image[:3], 3) is None  # image 2 shown once


# ------------------------------------------------------------ end to end (acceptance)

@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """3 held-out subjects (seed 21), 30% of units planted exactly null; default options."""
    from bids_decode.cli import main
    from bids_decode.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("stats")
    sim = simulate_dataset(root / "ds", n_subjects=3, n_train_runs=20, n_test_runs=4, seed=21,
                           null_fraction=0.3)
    out = root / "out"
    base = [str(sim["bids_dir"]), str(out)]
    assert main([*base, "participant", "--features", str(sim["features"]),
                 "--skip-bids-validation", "-q"]) == 0
    assert main([*base, "group", "-q"]) == 0
    with h5py.File(sim["bids_dir"] / "stimuli" / "truth_simulated.h5") as f:
        truth = {k: f["decodability"][k][()] for k in f["decodability"]}
    return {"out": out, "truth": truth, "subjects": ["01", "02", "03"]}


def _h5(out, sub, roi="VC"):
    return h5py.File(out / f"sub-{sub}" / "func" /
                     f"sub-{sub}_task-perception_desc-{roi}_decoding.h5", "r")


def _pooled(heldout, name):
    vals, rho = [], []
    for sub in heldout["subjects"]:
        with _h5(heldout["out"], sub) as h5:
            for layer, r in heldout["truth"].items():
                vals.append(h5[layer][name][()].ravel())
                rho.append(r.ravel())
    return np.concatenate(vals), np.concatenate(rho)


@pytest.mark.slow
def test_acceptance_near_null_and_strong_units(heldout):
    p, rho = _pooled(heldout, "p_value")
    q, _ = _pooled(heldout, "q_value")
    near, null, strong = rho < 0.1, rho == 0, rho >= 0.8
    decodable = q < 0.05
    fdp = np.sum(decodable & null) / decodable.sum()
    print(f"\nnear-null (rho < 0.1): {np.mean(p[near] < .05):.3f} with p < .05 (n = {near.sum()}); "
          f"exact nulls: {np.mean(p[null] < .05):.3f} (n = {null.sum()}); strong (rho >= 0.8): "
          f"{np.mean(q[strong] < .05):.3f} with q < .05 (n = {strong.sum()}); "
          f"false discovery proportion {fdp:.3f}")
    assert np.mean(p[near] < 0.05) <= 0.15
    # and the near-null units of the default simulator alone (the exact nulls left out)
    assert np.mean(p[near & ~null] < 0.05) <= 0.15
    assert np.mean(p[null] < 0.05) <= 0.05 + 3.3 * np.sqrt(0.05 * 0.95 / null.sum())
    assert np.mean(q[strong] < 0.05) >= 0.9
    assert fdp <= 0.05
    assert np.isnan(p[np.isnan(rho)]).all() and np.isnan(q[np.isnan(rho)]).all()


@pytest.mark.slow
def test_acceptance_q_fwer_and_tsv(heldout):
    import pandas as pd

    for sub in heldout["subjects"]:
        tsv = pd.read_csv(heldout["out"] / f"sub-{sub}" / "func" /
                          f"sub-{sub}_task-perception_decoding.tsv", sep="\t")
        with _h5(heldout["out"], sub) as h5:
            for layer in heldout["truth"]:
                g = h5[layer]
                assert g.attrs["n_permutations"] == 1000 and g.attrs["permutation_seed"] == 0
                p, q, fwer = (g[k][()].ravel() for k in ("p_value", "q_value", "p_fwer"))
                ok = np.isfinite(p)
                np.testing.assert_allclose(
                    q[ok], false_discovery_control(p[ok].astype(np.float64)), rtol=1e-6)
                assert (fwer[ok] >= p[ok] - 1e-7).all()
                # p is (1 + count) / 1001
                np.testing.assert_allclose(np.round(p[ok] * 1001), p[ok] * 1001, atol=1e-3)
                row = tsv[(tsv.roi == "VC") & (tsv.layer == layer)].iloc[0]
                assert row.fraction_decodable == pytest.approx(np.mean(q < 0.05))
                assert row.n_decodable == int(np.sum(q < 0.05))


@pytest.mark.slow
def test_acceptance_reliability(heldout):
    from scipy.stats import spearmanr

    rel, rho = _pooled(heldout, "reliability")
    ceil, _ = _pooled(heldout, "accuracy_ceiling")
    acc, _ = _pooled(heldout, "accuracy")
    norm, _ = _pooled(heldout, "accuracy_normalised")
    ok = np.isfinite(rel) & np.isfinite(rho)
    s = spearmanr(rel[ok], rho[ok])[0]
    print(f"\nSpearman(reliability, planted decodability) = {s:.3f}; mean accuracy "
          f"{np.nanmean(acc):.3f}, mean ceiling {np.nanmean(ceil):.3f}")
    assert s >= 0.4
    pos = rel > 0
    np.testing.assert_allclose(ceil[pos], np.sqrt(rel[pos]), rtol=1e-6)
    assert np.isnan(ceil[~pos & np.isfinite(rel)]).all()
    np.testing.assert_allclose(norm[pos], acc[pos] / ceil[pos], rtol=1e-5)
    # strong units are decoded close to their ceiling
    strong = (rho >= 0.8) & pos
    assert np.median(acc[strong] / ceil[strong]) > 0.8


@pytest.mark.slow
def test_acceptance_group_disattenuation(heldout):
    import pandas as pd

    out = heldout["out"] / "group"
    pairs = pd.read_csv(out / "task-perception_desc-crosssubject_correlation.tsv", sep="\t",
                        dtype={"subject_a": str, "subject_b": str})
    assert len(pairs) == 3 * len(heldout["truth"])
    assert (pairs.r_disattenuated >= pairs.r).all()
    np.testing.assert_allclose(pairs.r_disattenuated,
                               pairs.r / np.sqrt(pairs.reliability_a * pairs.reliability_b),
                               rtol=1e-5)  # the TSV holds 6 significant digits
    for _, row in pairs.iterrows():
        with _h5(heldout["out"], row.subject_a) as h5:
            h = h5[row.layer]["accuracy_halves"][()].reshape(2, -1)
        assert row.reliability_a == pytest.approx(st.split_half_reliability(h[0], h[1]),
                                                  rel=1e-5)
        assert 0 < row.reliability_a <= 1
    summary = pd.read_csv(out / "task-perception_desc-crosssubject_summary.tsv", sep="\t")
    for _, row in summary.iterrows():
        qs = []
        for sub in heldout["subjects"]:
            with _h5(heldout["out"], sub) as h5:
                qs.append(h5[row.layer]["q_value"][()].ravel() < 0.05)
        assert row.fraction_decodable_all == pytest.approx(np.logical_and.reduce(qs).mean(),
                                                           rel=1e-5)  # 6 significant digits
        assert row.r_disattenuated_mean >= row.r_mean


@pytest.mark.slow
def test_statistics_off_and_bad_option(tmp_path, capsys):
    """--n-permutations 0: no p/q datasets, n/a counts, reliability still there; a negative
    count is a usage error (exit 64) that writes nothing."""
    import pandas as pd

    from bids_decode.cli import main
    from bids_decode.errors import EXIT_USAGE
    from bids_decode.simulate import simulate_dataset

    sim = simulate_dataset(tmp_path / "ds", n_subjects=1, n_train_runs=3, n_test_runs=2,
                           seed=3, layers={"fc8": (9,)})
    base = [str(sim["bids_dir"]), str(tmp_path / "out"), "participant", "--features",
            str(sim["features"]), "--n-voxels", "20", "--skip-bids-validation", "-q"]
    assert main([*base, "--n-permutations", "-1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--n-permutations must be >= 0" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("sub-*/func/*_decoding.h5"))
    assert main([*base, "--n-permutations", "0"]) == 0
    with _h5(tmp_path / "out", "01") as h5:
        g = h5["fc8"]
        assert not {"p_value", "q_value", "p_fwer"} & set(g)
        assert g.attrs["n_permutations"] == 0
        assert g["reliability"].shape == (9,) and g["accuracy_halves"].shape == (2, 9)
    tsv = pd.read_csv(tmp_path / "out" / "sub-01" / "func" / "sub-01_task-perception_decoding.tsv",
                      sep="\t", na_values=["n/a"], keep_default_na=False)
    assert tsv.n_decodable.isna().all() and tsv.fraction_decodable.isna().all()
    assert tsv.reliability_mean.notna().all()
