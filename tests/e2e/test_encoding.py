"""Voxel-wise encoding at the participant level (``--encoding``, issue 28), end to end.

On ``simulate --hierarchy`` every signal voxel carries one latent block, so it has a planted
best layer in each network (``hierarchical``: its block's layer; ``mixed``: the layer built
from that block, out of order). Checked here: the best layer of the voxels whose best
accuracy is significant is the planted one; the same bits however the work is split (voxel
shards, threads, memory budget) and on resume; the encoding accuracies are Pearson r of the
stored predictions with the measured responses.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from bids_decode.cli import main
from bids_decode.evaluation.bhscore import permutation_keep
from bids_decode.outputs import encoding as enc_outputs

ROIS = ["V1", "V2", "V3", "V4", "HVC"]
TASK = "perception"
NETWORKS = ("hierarchical", "mixed")


def _participant(ds, out, network, *extra):
    args = [str(ds["bids_dir"]), str(out), "participant", "--features",
            str(ds["networks"][network]), "--roi", *ROIS, "--n-voxels", "60", "--encoding",
            "--n-permutations", "200", "--skip-bids-validation", "-q", *extra]
    return main(args)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Two subjects, both networks encoded into one OUTPUT_DIR."""
    from bids_decode.simulate.dataset import simulate_dataset

    tmp = tmp_path_factory.mktemp("enc")
    ds = simulate_dataset(tmp / "ds", n_subjects=2, n_train_runs=8, n_test_runs=2, seed=5,
                          hierarchy=True)
    out = tmp / "out"
    for net in NETWORKS:
        assert _participant(ds, out, net) == 0
    return {"ds": ds, "out": out, "tmp": tmp}


def _significant_best(e: enc_outputs.EncodingOutputs) -> np.ndarray:
    return permutation_keep(e.best_accuracy.astype(float), e.best_p_value, len(e.layers))


@pytest.mark.slow
def test_best_layer_of_significant_voxels_is_the_planted_one(encoded):
    ds, out = encoded["ds"], encoded["out"]
    for net in NETWORKS:
        hits = total = 0
        for sub in ("01", "02"):
            truth = ds["voxels"][sub]
            planted = dict(zip(truth["voxel_index"].tolist(),
                               truth["best_layer"][net].tolist()))
            for roi in ROIS:
                e = enc_outputs.read_encoding(enc_outputs.encoding_h5(out, sub, TASK, roi,
                                                                      network=net))
                keep = _significant_best(e)
                # a significant voxel without planted signal (-1) counts as a miss
                want = np.array([planted.get(v, -1) for v in e.voxel_index[keep].tolist()])
                got = e.best_layer[keep]
                hits += int(np.sum(got == want))
                total += int(keep.sum())
        assert total >= 100, (net, total)
        assert hits / total >= 0.9, (net, hits, total)


@pytest.mark.slow
def test_accuracy_is_the_correlation_of_stored_predictions_with_responses(encoded):
    """The stored predictions and accuracies agree with the measured test responses (the ROI's
    z-scored test samples, recomputed here from the run's inputs)."""
    from bids_decode.config import RunConfig
    from bids_decode.inputs.sources import BoldSource
    from bids_decode.participant.rois import prepare_roi

    ds, out = encoded["ds"], encoded["out"]
    cfg = RunConfig(bids_dir=str(ds["bids_dir"]), output_dir=str(out), analysis_level="participant",
                    roi=("V1",))
    inputs = BoldSource.of(cfg).subject_inputs(cfg, "01")
    roi = prepare_roi("V1", inputs.masks["V1"], inputs.samples, inputs.files["V1"])
    path = enc_outputs.encoding_h5(out, "01", TASK, "V1", network="hierarchical")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["voxel_index"][()], roi.voxel_index)
        for layer in f.attrs["layers"]:
            pred = f[layer]["predicted"][()].astype(np.float64)
            true = roi.X_test.astype(np.float64)
            pc, tc = pred - pred.mean(0), true - true.mean(0)
            r = (pc * tc).sum(0) / np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))
            np.testing.assert_allclose(f[layer]["accuracy"][()], r, atol=2e-5)


def _encoding_arrays(out: Path, rois=ROIS, net: str = "hierarchical", sub: str = "01") -> dict:
    arrays = {}
    for roi in rois:
        with h5py.File(enc_outputs.encoding_h5(out, sub, TASK, roi, network=net), "r") as f:
            names: list[str] = []
            f.visit(names.append)
            arrays.update({f"{roi}/{n}": f[n][()] for n in names
                           if isinstance(f[n], h5py.Dataset)})
    return arrays


@pytest.mark.slow
def test_same_bits_over_voxel_shards_threads_memory_and_resume(encoded):
    ds, tmp = encoded["ds"], encoded["tmp"]
    # VC (616 voxels) spans three voxel blocks of the grid, so the two shards split it
    whole, split, rois = tmp / "whole", tmp / "split", ["VC"]
    assert _participant(ds, whole, "hierarchical", "--participant-label", "01", "--roi",
                        *rois) == 0
    for i in (2, 1):  # the shards out of order; the second job writes the outputs
        assert _participant(ds, split, "hierarchical", "--participant-label", "01", "--roi",
                            *rois, "--unit-shard", f"{i}/2", "--nprocs", "1",
                            "--mem", "0.25") == 0
    with h5py.File(enc_outputs.encoding_h5(whole, "01", TASK, "VC", network="hierarchical"),
                   "r") as f:
        assert f.attrs["n_voxels"] > 2 * 256
    work = split / ".bids_decode_work"
    spans = set()
    for p in work.rglob("encoding_*.h5"):
        with h5py.File(p, "r") as f:
            spans.add((int(f.attrs["lo"]), int(f.attrs["hi"])))
    assert len(spans) == 2 and all(lo < hi for lo, hi in spans), spans
    whole = _encoding_arrays(whole, rois)
    parts = _encoding_arrays(split, rois)
    assert whole.keys() == parts.keys()
    for key in whole:
        np.testing.assert_array_equal(parts[key], whole[key], err_msg=key)
    # resume: a rerun reuses every encoding work file and rewrites the same bits
    before = {p: p.stat().st_mtime_ns for p in work.rglob("encoding_*.h5")}
    assert _participant(ds, split, "hierarchical", "--participant-label", "01", "--roi", *rois,
                        "--unit-shard", "1/2") == 0
    assert before and before == {p: p.stat().st_mtime_ns for p in work.rglob("encoding_*.h5")}
    again = _encoding_arrays(split, rois)
    for key in whole:
        np.testing.assert_array_equal(again[key], whole[key], err_msg=key)


@pytest.mark.slow
def test_full_bh_score_ranks_the_hierarchical_network_first(encoded):
    """The group level's full BH score, (decoding + encoding) / 2, is higher for the planted
    hierarchical network in every subject and pooled, and so are both halves."""
    from bids_decode.outputs import schema as outputs

    ds, out = encoded["ds"], encoded["out"]
    assert main([str(ds["bids_dir"]), str(out), "group", "-q"]) == 0
    bh = outputs.Table.read(outputs.group_table(out, TASK, "bhscore", "summary"))
    assert set(bh["subject"]) == {"01", "02", "pooled"} or set(bh["subject"].astype(str)) == {
        "1", "2", "pooled"}
    table = bh.set_index(["network", bh["subject"].astype(str)])
    for sub in set(bh["subject"].astype(str)):
        hier, mixed = table.loc[("hierarchical", sub)], table.loc[("mixed", sub)]
        for col in ("bh_decoding", "bh_encoding", "bh_score"):
            assert hier[col] > mixed[col], (sub, col, hier[col], mixed[col])
        np.testing.assert_allclose(hier["bh_score"],
                                   (hier["bh_decoding"] + hier["bh_encoding"]) / 2, atol=1e-5)
    assert table.loc[("hierarchical", "pooled")]["bh_encoding"] > 0.8


@pytest.mark.slow
def test_maps_and_report_of_the_encoded_folder(encoded):
    """Every ROI gets its two maps (values from its encoding file, in the masks' space); the
    subject report has the encoding section; the folder passes the BIDS validator."""
    from bids_decode.inputs.validation import find_validator, validator_issues
    from bids_decode.outputs import schema as outputs
    from bids_decode.outputs.brain_maps import brain_map_path, read_brain_map

    out = encoded["out"]
    for net in NETWORKS:
        for roi in ROIS:
            e = enc_outputs.read_encoding(enc_outputs.encoding_h5(out, "01", TASK, roi,
                                                                  network=net))
            img, meta = read_brain_map(brain_map_path(out, "01", TASK, roi, "r", network=net))
            np.testing.assert_array_equal(img.affine, e.grid_affine)
            data = np.asarray(img.dataobj).reshape(-1, len(e.layers))
            np.testing.assert_array_equal(data[e.voxel_index], e.accuracy.T)
            depth, _ = read_brain_map(brain_map_path(out, "01", TASK, roi, "bestdepth",
                                                     network=net))
            flat = np.asarray(depth.dataobj).ravel()[e.voxel_index]
            keep = _significant_best(e)
            np.testing.assert_array_equal(flat[keep], e.best_depth[keep])
            assert np.isnan(flat[~keep]).all()
        html = outputs.subject_report(out, "01", network=net).read_text()
        assert "Encoding" in html and html.count("<img") >= len(ROIS)
    validator = find_validator()
    if validator is not None:
        errors = [i for i in validator_issues(out, validator) if i.get("severity") == "error"]
        assert errors == []


@pytest.mark.slow
def test_encoding_reads_every_unit_with_a_unit_sample(encoded, tmp_path):
    """--units-per-layer samples the decoded units only: the encoding models still select
    among every unit of the layer, as in the run without the sample."""
    ds = encoded["ds"]
    out = tmp_path / "sampled"
    args = [str(ds["bids_dir"]), str(out), "participant", "--features",
            str(ds["networks"]["hierarchical"]), "--roi", "V1", "--n-voxels", "60",
            "--encoding", "--n-permutations", "200", "--units-per-layer", "10",
            "--layers", "conv1", "fc7",
            "--participant-label", "01", "--skip-bids-validation", "-q"]
    assert main(args) == 0
    path = enc_outputs.encoding_h5(out, "01", TASK, "V1", network="hierarchical")
    full = enc_outputs.encoding_h5(encoded["out"], "01", TASK, "V1", network="hierarchical")
    with h5py.File(path, "r") as f, h5py.File(full, "r") as g:
        for layer in f.attrs["layers"]:
            assert f[layer].attrs["n_units"] == 60
            # equal up to float32 rounding (the one-ROI run cleans a narrower voxel matrix)
            for name in ("accuracy", "predicted"):
                np.testing.assert_allclose(f[layer][name][()], g[layer][name][()], atol=1e-5)
