"""Work files: their names (parsed back by the group level), merging a layer's shards into
its output, and the group level's check of missing unit shards."""

from __future__ import annotations

import json
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from bids_decode import evaluation
from bids_decode.cli import main
from bids_decode.config import RunConfig
from bids_decode.errors import EXIT_NOINPUT, MissingInputError
from bids_decode.evaluation import UnitStatistics
from bids_decode.outputs import schema as outputs
from bids_decode.outputs import work_files as shards
from bids_decode.utils.grid import UNIT_BLOCK

N_IMAGES = 7
SHAPE = (3, 5, 13)  # odd shape: a flat/reshaped mix-up fails
N_UNITS = int(np.prod(SHAPE))


def _metrics(lo, hi):
    return [evaluation.ProfileCorrelation(lo, hi),
            evaluation.PatternIdentification(lo, hi, N_IMAGES),
            UnitStatistics(lo, hi, n_permutations=10, seed=2, halves=True)]


def test_read_layer_merges_shards_into_the_unsharded_bits(tmp_path):
    """Work files written as the participant level writes them (decoded features, metric
    state, ``lo``/``hi``), listed in any order, merge into the decoded features and the
    metrics of one pass over the layer."""
    rng = np.random.default_rng(5)
    true = rng.standard_normal((N_IMAGES, N_UNITS))
    pred = (0.7 * true + 0.5 * rng.standard_normal((N_IMAGES, N_UNITS))).astype(np.float32)
    halves = pred[None] + 0.2 * rng.standard_normal((2, N_IMAGES, N_UNITS))
    const = np.zeros(N_UNITS, bool)
    const[[4, 150]] = True

    def feed(ms, lo, hi):
        for m in ms:
            m.update(lo, hi, pred[:, lo:hi], true[:, lo:hi], constant=const[lo:hi],
                     halves=halves[:, :, lo:hi])
        return ms

    whole = evaluation.finalize_all(feed(_metrics(0, N_UNITS), 0, N_UNITS))
    bounds = [0, UNIT_BLOCK, 2 * UNIT_BLOCK, N_UNITS]
    files = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        files.append(tmp_path / f"w{i}.h5")
        with h5py.File(files[-1], "w") as w:
            w.create_dataset("decoded", data=pred[:, lo:hi])
            for m in feed(_metrics(lo, hi), lo, hi):
                m.save(w)
            w.attrs.update({"lo": lo, "hi": hi, "complete": True})
    merged = _metrics(0, N_UNITS)
    with h5py.File(tmp_path / "out.h5", "w") as h5:
        _, dec = outputs.new_layer(h5, "fc6", N_IMAGES, SHAPE)
        shards.read_layer([files[2], files[0], files[1]], merged, dec)
        np.testing.assert_array_equal(dec[()], pred.reshape(N_IMAGES, *SHAPE))
    res = evaluation.finalize_all(merged)
    for k in whole.datasets:
        assert res.datasets[k].tobytes() == whole.datasets[k].tobytes(), k
    assert json.dumps(res.columns) == json.dumps(whole.columns)


def test_work_file_names_match_the_group_level(tmp_path):
    """The group level parses the names the participant level gives its work files; the
    shards of one layer share their digest (the group level groups them by it), and the
    features file enters it."""
    cfg = RunConfig(bids_dir="/d", output_dir="/o", analysis_level="participant",
                    unit_shard=(2, 3))
    feats = tmp_path / "f.h5"
    feats.write_bytes(b"x")
    roi = SimpleNamespace(name="VC", digest="abc")
    paths = shards.shard_work_files(cfg, "01", roi, "fc6", feats)
    assert paths[1] == shards.work_file_path(cfg, "01", roi, "fc6", (2, 3), feats)
    found = [shards.WORK_FILE_RE.match(p.name) for p in paths]
    assert [(m["roi"], m["layer"], m["i"], m["n"]) for m in found] == [
        ("VC", "fc6", str(i), "3") for i in (1, 2, 3)]
    assert len({m["digest"] for m in found}) == 1
    # one folder per network (the configuration's network names it): net-<N>
    assert paths[0].parent == cfg.work_path / "sub-01" / "task-perception" / "net-alexnet"
    feats.write_bytes(b"xy")
    assert shards.work_file_path(cfg, "01", roi, "fc6", (2, 3), feats) != paths[1]


def _work(tmp_path, sub, roi, layer, i, n, complete=True, digest="0123456789ab", kind=""):
    d = tmp_path / "out" / ".bids_decode_work" / f"sub-{sub}" / "task-perception" / "net-sim"
    d.mkdir(parents=True, exist_ok=True)
    with h5py.File(d / f"{kind}roi-{roi}_layer-{layer}_shard-{i}of{n}_{digest}.h5", "w") as f:
        f.attrs["complete"] = complete


def _config(tmp_path, sub, shard):
    d = tmp_path / "out" / f"sub-{sub}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"sub-{sub}_task-perception_net-sim_config.json").write_text(
        json.dumps({"unit_shard": list(shard), "work_dir": None, "network": "sim"}))


def test_missing_shards_named(tmp_path):
    _config(tmp_path, "01", (3, 3))
    for layer in ("conv1", "fc6"):
        _work(tmp_path, "01", "VC", layer, 1, 3)
        _work(tmp_path, "01", "VC", layer, 3, 3)
    _work(tmp_path, "01", "VC", "conv1", 2, 3)
    _work(tmp_path, "01", "VC", "fc6", 2, 3, complete=False)  # killed while writing
    _config(tmp_path, "02", (1, 1))
    assert shards.missing_shards(tmp_path / "out", "perception") == {
        "01": {"VC": ["2/3 (fc6)"]}}
    assert shards.missing_shards(tmp_path / "out", "perception", ["02"]) == {}
    with pytest.raises(MissingInputError, match=r"sub-01 ROI VC: shard\(s\) 2/3 \(fc6\)"):
        shards.check_shards_complete(tmp_path / "out", "perception")
    # the group level refuses, exit 66, before reading any output
    (tmp_path / "bids").mkdir()
    (tmp_path / "bids" / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.8.0"}))
    assert main([str(tmp_path / "bids"), str(tmp_path / "out"), "group"]) == EXIT_NOINPUT
    # once the subject's outputs are assembled (newer than the work files) nothing is missing
    out = tmp_path / "out" / "sub-01" / "func" / ("sub-01_task-perception_net-sim"
                                                  "_desc-VC_decoding.h5")
    out.parent.mkdir()
    out.write_bytes(b"")
    assert shards.missing_shards(tmp_path / "out", "perception") == {}


def test_missing_encoding_shards_named(tmp_path):
    """--encoding's voxel shards count like the decoding's unit shards."""
    _config(tmp_path, "01", (2, 2))
    for i in (1, 2):
        _work(tmp_path, "01", "V1", "conv1", i, 2)
    _work(tmp_path, "01", "V1", "conv1", 1, 2, kind="encoding_", digest="fedcba987654")
    assert shards.missing_shards(tmp_path / "out", "perception") == {
        "01": {"V1": ["2/2 (encoding: conv1)"]}}
    func = tmp_path / "out" / "sub-01" / "func"
    func.mkdir()
    (func / "sub-01_task-perception_net-sim_desc-V1_encoding.h5").write_bytes(b"")
    assert shards.missing_shards(tmp_path / "out", "perception") == {}
