"""The Averaged subject: follows the planted truth better than any subject, and its scoring path
gives back a subject's own participant scores."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.features.h5file import FeatureFile
from bids_decode.group.averaged import average_layer, read_true_layer, reference_rows
from bids_decode.outputs.paths import func_path
from tests.group.simulated import LAYERS, ROIS, TASK, accuracy


@pytest.mark.slow
def test_averaged_subject_follows_planted_truth(outputs):
    out, avg = outputs["out"], outputs["out"] / "group"
    summary = pd.read_csv(func_path(avg, "Averaged", TASK, net="simulated", suffix="decoding",
                                                ext=".tsv"), sep="\t", na_values="n/a")
    assert list(zip(summary.roi, summary.layer)) == [(r, la) for r in ROIS for la in LAYERS]
    with h5py.File(outputs["truth"], "r") as t:
        truth = {la: t["decodability"][la][()].ravel() for la in LAYERS}
    for roi in ROIS:
        path = func_path(avg, "Averaged", TASK, net="simulated", desc=roi,
                         suffix="decoding",
                                     ext=".h5")
        with h5py.File(path, "r") as f:
            assert f.attrs["subject"] == "Averaged"
            for layer, shape in LAYERS.items():
                g = f[layer]
                assert g["decoded"].shape == (len(f["stimulus_name"]), *shape)
                acc = g["accuracy"][()].ravel().astype(np.float64)
                ok = np.isfinite(truth[layer])
                assert np.array_equal(np.isfinite(acc), ok)  # dead units scored NaN
                assert np.corrcoef(acc[ok], np.sqrt(truth[layer][ok]))[0, 1] > 0.8
                subs = [np.nanmean(accuracy(out, s, roi, layer)) for s in ("01", "02", "03")]
                # averaging subjects' decoded features removes subject noise
                assert np.nanmean(acc) > np.mean(subs) - 0.01
                assert g["identification"].shape == g["pattern_r"].shape
                assert np.nanmean(g["identification"][()]) > 0.9
                assert g["rank"][()].min() == 1


@pytest.mark.slow
def test_averaging_one_subject_reproduces_its_scores(outputs):
    """The Averaged scoring path applied to one subject gives back its participant scores."""
    out = outputs["out"]
    path = func_path(out, "01", TASK, net="simulated", desc="VC", suffix="decoding", ext=".h5")
    with h5py.File(path, "r") as f, FeatureFile(outputs["features"]) as ff:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["stimulus_name"][()]]
        test_rows = ff.rows_for(names)
        ref_rows, _ = reference_rows(ff, test_rows)
        for layer in LAYERS:
            truth = read_true_layer(ff, layer, test_rows, ref_rows, mem_gb=0.001)
            dec = f[layer]["decoded"]
            sink = np.empty(dec.shape, dtype=np.float32)
            profile, pattern = average_layer([(dec, np.arange(len(names)))], truth, sink,
                                         mem_gb=1e-6)  # tiny budget: many chunks
            np.testing.assert_allclose(profile.values, f[layer]["accuracy"][()].ravel(),
                                       atol=1e-5)
            res = pattern.finalize({})
            np.testing.assert_allclose(res.datasets["pattern_r"], f[layer]["pattern_r"][()],
                                       atol=1e-5)
            np.testing.assert_array_equal(sink, dec[()])
