"""End to end: the CLI on a simulated dataset recovers the planted decodability."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bids_decode.inputs.validation import find_validator, validator_issues

pytestmark = pytest.mark.slow  # the session's participant run over two subjects (~15 s)


@pytest.mark.parametrize("subject", ["01", "02"])
@pytest.mark.parametrize("roi", ["VC", "LVC"])
def test_accuracy_tracks_planted_decodability(sim, participant_out, subject, roi):
    path = participant_out / f"sub-{subject}" / "func" / (
        f"sub-{subject}_task-perception_net-simulated_desc-{roi}_decoding.h5")
    with h5py.File(path) as h5:
        for layer, rho in sim["truth"].items():
            acc = h5[layer]["accuracy"][()]
            assert acc.shape == rho.shape
            dead = np.isnan(rho)
            # constant (dead) units get NaN accuracy, never a fake number
            assert np.isnan(acc[dead]).all()
            assert np.isfinite(acc[~dead]).all()
            r = spearmanr(acc[~dead], rho[~dead])[0]
            assert r >= 0.6, f"{roi}/{layer}: Spearman {r:.2f} with the planted truth"


def test_output_layout_and_summary(sim, participant_out):
    func = participant_out / "sub-01" / "func"
    tsv = pd.read_csv(func / "sub-01_task-perception_net-simulated_decoding.tsv", sep="\t")
    need = {"roi", "layer", "n_units", "n_voxels", "profile_r_mean", "profile_r_median",
            "pattern_r_mean", "identification_accuracy"}
    assert need <= set(tsv.columns)
    assert sorted(zip(tsv.roi, tsv.layer)) == sorted(
        (r, lay) for r in ("VC", "LVC") for lay in sim["truth"])
    assert (tsv.n_voxels_selected == 100).all()
    with h5py.File(func / "sub-01_task-perception_net-simulated_desc-VC_decoding.h5") as h5:
        names = [s.decode() for s in h5["stimulus_name"][()]]
        assert len(names) == 50 and len(set(names)) == 50
        for layer, rho in sim["truth"].items():
            g = h5[layer]
            assert g["decoded"].shape == (50, *rho.shape)
            acc = g["accuracy"][()].ravel()
            rank = g["rank"][()].ravel()
            best = np.nanargmax(acc)
            assert rank[best] == 1 and rank.max() <= acc.size
            assert np.all(np.diff(acc[np.argsort(rank, kind="stable")][np.isfinite(
                acc[np.argsort(rank, kind="stable")])]) <= 0)
            row = tsv[(tsv.roi == "VC") & (tsv.layer == layer)].iloc[0]
            assert row.profile_r_mean == pytest.approx(np.nanmean(acc), abs=1e-5)
            assert row.identification_accuracy == pytest.approx(
                np.mean(g["identification"][()]), abs=1e-5)
            # planted signal is strong: identification well above chance
            assert row.identification_accuracy > 0.8
    desc = json.loads((participant_out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "bids_decode"
    cfg = json.loads((participant_out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json")
                     .read_text())
    assert cfg["alpha"] == 100.0 and cfg["n_voxels"] == 100
    assert "numpy" in cfg["provenance"]["versions"]


def test_decoded_values_are_in_feature_units(sim, participant_out):
    """Decoded features are de-standardised: their mean matches the training features."""
    with h5py.File(sim["features"]) as f, h5py.File(
            participant_out / "sub-02" / "func" / "sub-02_task-perception"
                "_net-simulated_desc-VC_decoding.h5"
    ) as h5:
        true = f["layers/fc6"][()]
        dec = h5["fc6"]["decoded"][()]
    assert np.allclose(dec.mean(axis=0), true.mean(axis=0), atol=0.5 * true.std(axis=0).max())


@pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno not installed")
@pytest.mark.parametrize("which", ["input", "output"])
def test_bids_validator_finds_no_error(sim, participant_out, which):
    path = sim["bids_dir"] if which == "input" else participant_out
    errors = [i for i in validator_issues(path, find_validator())
              if i.get("severity") == "error"]
    assert errors == []
