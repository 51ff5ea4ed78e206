"""UnitStatistics end to end (acceptance): the CLI on a held-out simulated dataset with planted
null units gives calibrated p-values, q-values, family-wise p-values and reliabilities (slow)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.stats import false_discovery_control

from bids_decode.evaluation.reliability import split_half_reliability


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
                     f"sub-{sub}_task-perception_net-simulated_desc-{roi}_decoding.h5", "r")


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
                          f"sub-{sub}_task-perception_net-simulated_decoding.tsv", sep="\t")
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
    pairs = pd.read_csv(out / "task-perception_net-simulated_desc-crosssubject_correlation.tsv",
                        sep="\t",
                        dtype={"subject_a": str, "subject_b": str})
    assert len(pairs) == 3 * len(heldout["truth"])
    assert (pairs.r_disattenuated >= pairs.r).all()
    np.testing.assert_allclose(pairs.r_disattenuated,
                               pairs.r / np.sqrt(pairs.reliability_a * pairs.reliability_b),
                               rtol=1e-5)  # the TSV holds 6 significant digits
    for _, row in pairs.iterrows():
        with _h5(heldout["out"], row.subject_a) as h5:
            h = h5[row.layer]["accuracy_halves"][()].reshape(2, -1)
        assert row.reliability_a == pytest.approx(split_half_reliability(h[0], h[1]),
                                                  rel=1e-5)
        assert 0 < row.reliability_a <= 1
    summary = pd.read_csv(out / "task-perception_net-simulated_desc-crosssubject_summary.tsv",
                          sep="\t")
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
    tsv = pd.read_csv(tmp_path / "out" / "sub-01" / "func"
                      / "sub-01_task-perception_net-simulated_decoding.tsv",
                      sep="\t", na_values=["n/a"], keep_default_na=False)
    assert tsv.n_decodable.isna().all() and tsv.fraction_decodable.isna().all()
    assert tsv.reliability_mean.notna().all()
