"""The output schema (one writer, one reader) and the metric interface (update/merge/finalize)."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata

from bids_decode import evaluation
from bids_decode.errors import DataError
from bids_decode.evaluation.unit_statistics import UnitStatistics
from bids_decode.outputs import schema as outputs
from bids_decode.utils.files import write_json
from bids_decode.utils.grid import UNIT_BLOCK

N_IMAGES = 9
SHAPE = (5, 7, 11)  # odd shape: a flat/reshaped mix-up fails
N_UNITS = int(np.prod(SHAPE))


@pytest.fixture(scope="module")
def data():
    """Decoded and true values with a planted accuracy, constant units and split halves."""
    rng = np.random.default_rng(3)
    true = rng.standard_normal((N_IMAGES, N_UNITS))
    pred = 0.8 * true + 0.6 * rng.standard_normal((N_IMAGES, N_UNITS))
    const = np.zeros(N_UNITS, bool)
    const[[3, 100, 384]] = True
    pred[:, const] = 0.0
    halves = pred[None] + 0.3 * rng.standard_normal((2, N_IMAGES, N_UNITS))
    return pred, true, const, halves


def _metrics(lo, hi, n_permutations=20):
    return [evaluation.ProfileCorrelation(lo, hi), evaluation.PatternIdentification(lo, hi,
                                                                                   N_IMAGES),
            UnitStatistics(lo, hi, n_permutations=n_permutations, seed=1, halves=True)]


def _stream(data, lo, hi, cuts):
    """Metrics of units lo:hi, fed in chunks cut at ``cuts`` (layer positions)."""
    pred, true, const, halves = data
    ms = _metrics(lo, hi)
    edges = [lo, *[c for c in cuts if lo < c < hi], hi]
    for a, b in zip(edges, edges[1:]):
        for m in ms:
            m.update(a, b, pred[:, a:b], true[:, a:b], constant=const[a:b],
                     halves=halves[:, :, a:b])
    return ms


def _same(a: evaluation.Result, b: evaluation.Result):
    assert a.datasets.keys() == b.datasets.keys()
    for k in a.datasets:
        assert a.datasets[k].tobytes() == b.datasets[k].tobytes(), k
    assert json.dumps(a.columns) == json.dumps(b.columns)
    assert json.dumps(a.attrs) == json.dumps(b.attrs)


def test_metrics_match_independent_formulas(data):
    pred, true, const, _ = data
    res = evaluation.finalize_all(_stream(data, 0, N_UNITS, [100]))
    acc = res.datasets["accuracy"].astype(np.float64)
    ok = ~const
    ref = np.array([pearsonr(pred[:, u], true[:, u])[0] for u in np.flatnonzero(ok)])
    np.testing.assert_allclose(acc[ok], ref, atol=1e-6)
    assert np.isnan(acc[const]).all()
    np.testing.assert_array_equal(res.datasets["rank"][ok],
                                  rankdata(-acc[ok], method="min").astype(int))
    assert (res.datasets["rank"][const] == ok.sum() + 1).all()
    pattern = [pearsonr(pred[i], true[i])[0] for i in range(N_IMAGES)]
    np.testing.assert_allclose(res.datasets["pattern_r"], pattern, atol=1e-12)
    assert res.columns["n_constant_units"] == 3
    assert res.columns["profile_r_mean"] == pytest.approx(np.mean(acc[ok]))
    assert set(res.datasets) == set(outputs.LAYER_DATASETS) - {"decoded", "unit_index"}
    assert set(res.columns) <= set(outputs.SUBJECT_SUMMARY.columns)


def test_merge_in_any_order_gives_the_same_bits(data, tmp_path):
    """Shards on the unit grid, each streamed in its own chunks, merged in every order (in
    memory or through a work file) finalize to the bits of one pass over the layer."""
    whole = evaluation.finalize_all(_stream(data, 0, N_UNITS, [17, 200]))
    bounds = [0, UNIT_BLOCK, 4 * UNIT_BLOCK, N_UNITS]
    shards = [_stream(data, a, b, [a + 5, a + 70]) for a, b in zip(bounds, bounds[1:])]
    for order in itertools.permutations(range(3)):
        merged = _metrics(0, N_UNITS)
        for i in order:
            for m, part in zip(merged, shards[i]):
                m.merge(part)
        _same(evaluation.finalize_all(merged), whole)
    # the work-file route: save each shard, load them back in reverse order
    for i, ms in enumerate(shards):
        with h5py.File(tmp_path / f"w{i}.h5", "w") as w:
            for m in ms:
                m.save(w)
    merged = _metrics(0, N_UNITS)
    for i in reversed(range(3)):
        with h5py.File(tmp_path / f"w{i}.h5", "r") as w:
            for m in merged:
                m.load(w, bounds[i], bounds[i + 1])
    _same(evaluation.finalize_all(merged), whole)


def test_a_shard_without_halves_drops_reliability(data):
    pred, true, const, _ = data
    merged = _metrics(0, N_UNITS)
    for a, b, halves in ((0, 64, True), (64, N_UNITS, False)):
        part = UnitStatistics(a, b, n_permutations=20, seed=1, halves=halves)
        part.update(a, b, pred[:, a:b], true[:, a:b],
                    halves=data[3][:, :, a:b] if halves else None)
        merged[2].merge(part)
    res = merged[2].finalize({"accuracy": np.zeros(N_UNITS, np.float32)})
    assert "reliability" not in res.datasets and "q_value" in res.datasets
    assert np.isnan(res.columns["reliability_mean"])


def test_merge_refuses_units_outside_its_range():
    m = evaluation.ProfileCorrelation(0, 64)
    with pytest.raises(ValueError, match="outside"):
        m.merge(evaluation.ProfileCorrelation(32, 128))


def test_writer_and_reader_round_trip(data, tmp_path):
    """What the one writer stores, the one reader finds: layers in the sidecar's order, unit
    shapes, test names, summary rows, ROI order of the run configuration, format version."""
    out, names = tmp_path / "out", [f"img{i}" for i in range(N_IMAGES)]
    res = evaluation.finalize_all(_stream(data, 0, N_UNITS, [64]))
    rois, layers = ["V2", "V1"], ["fc8", "conv1"]  # neither in sorted order
    for roi in rois:
        path = outputs.decoding_h5(out, "01", "t", roi, network="n")
        with outputs.decoding_writer(path, names, {"roi": roi}) as h5:
            for layer in layers:
                g, dec = outputs.new_layer(h5, layer, N_IMAGES, SHAPE)
                dec[...] = data[0].reshape(N_IMAGES, *SHAPE)
                outputs.write_layer(g, SHAPE, res)
        write_json(path.with_suffix(".json"), {"Layers": layers, "ROI": roi})
    write_json(outputs.config_json(out, "01", "t", network="n"), {"roi": rois})
    rows = [{"roi": r, "layer": la, "n_units": N_UNITS, **res.columns}
            for r in rois for la in layers]
    outputs.SUBJECT_SUMMARY.write(outputs.summary_tsv(out, "01", "t", network="n"), rows)

    sub = outputs.read_subject(out, "01", "t", network="n")
    assert list(sub.h5) == rois and sub.layers == layers
    assert sub.shapes == {la: SHAPE for la in layers} and sub.test_names == names
    assert sub.sidecars["V1"]["ROI"] == "V1"
    assert list(sub.summary.columns) == outputs.SUBJECT_SUMMARY.names
    assert sub.summary["n_constant_units"].tolist() == [3] * 4
    tsv = outputs.summary_tsv(out, "01", "t", network="n")
    sidecar = json.loads(tsv.with_suffix(".json").read_text())
    assert sidecar == outputs.SUBJECT_SUMMARY.sidecar
    with h5py.File(sub.h5["V1"], "r") as f:
        assert f.attrs[outputs.FORMAT_ATTR] == outputs.FORMAT_VERSION
        np.testing.assert_array_equal(f["conv1/accuracy"][()].ravel(), res.datasets["accuracy"])
        assert f["conv1/p_value"].shape == SHAPE and f["conv1/accuracy_halves"].shape == (2, *SHAPE)
        assert f["conv1/pattern_r"].shape == (N_IMAGES,)
        assert f["conv1"].attrs["n_units"] == N_UNITS
    assert outputs.find_decoding_files(out, "t", network="n") == {"01": sub.h5}


def test_json_policy(tmp_path):
    """Missing JSON reads as {}; damaged JSON is a DataError naming the file and the fix."""
    assert outputs.read_json(tmp_path / "absent.json") == {}
    bad = tmp_path / "sub-01_task-t_config.json"
    bad.write_text('{"roi": [')
    with pytest.raises(DataError, match=r"sub-01_task-t_config\.json.*rerun"):
        outputs.read_json(bad)
