"""--bold-source bdata=PATH: a BData file written by the real bdpy gives the BIDS route's results.

bdpy needs numpy < 2.4, so it lives in the reference venv ``.bench-venv`` (the ``bdpy_python``
fixture of conftest.py creates it when missing).
"""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.cli import main

WRITE_BDATA = r"""
import sys
import numpy as np
from bdpy import BData

d = np.load(sys.argv[1])
bd = BData()
bd.add(d["X"], "VoxelData")
bd.add(d["datatype"][:, None], "DataType")
bd.add(d["run"][:, None], "Run")
bd.add(d["label"][:, None], "Label")
bd.add(d["stim"][:, None], "stimulus_name")
for name in sys.argv[3].split(","):
    bd.add_metadata("ROI_" + name, np.where(d["roi_" + name], 1.0, np.nan),
                    "1 = ROI " + name, where="VoxelData")
bd.add_vmap("stimulus_name", {float(i): str(n) for i, n in zip(d["stim_ids"], d["stim_names"])})
bd.save(sys.argv[2])
"""


def _god_id(name: str) -> float:
    """ImageNet name -> GOD stimulus id (``n01518878_5958`` -> 1518878.005958)."""
    cat, _, img = name[1:].partition("_")
    return float(f"{int(cat)}.{int(img or 0):06d}")


@pytest.mark.slow
def test_bdata_file_from_bdpy_gives_the_bids_accuracies(tmp_path, bdpy_python):
    from bids_decode.config import RunConfig
    from bids_decode.inputs.bdata import BDataFile, imagenet_name
    from bids_decode.inputs.events import EventSpec
    from bids_decode.inputs.layout import make_layout
    from bids_decode.inputs.samples import build_samples
    from bids_decode.inputs.sources import RawRuns
    from bids_decode.simulate import simulate_dataset

    py = bdpy_python
    ds = simulate_dataset(tmp_path / "ds", n_subjects=1, n_train_runs=8, n_test_runs=2,
                          layout="ds001506", seed=4)
    bids = ds["bids_dir"]
    common = ["--features", str(ds["features"]), "--roi", "VC", "LVC", "--n-voxels", "60",
              "--train-session", "perceptionNaturalImageTraining*",
              "--test-session", "perceptionNaturalImageTest*", "--skip-bids-validation"]
    assert main([str(bids), str(tmp_path / "bids_out"), "participant", *common]) == 0

    # the same subject as BData: every training trial and every test block, one row each
    cfg = RunConfig(str(bids), str(tmp_path / "x"), "participant", roi=("VC", "LVC"),
                    train_session="perceptionNaturalImageTraining*",
                    test_session="perceptionNaturalImageTest*")
    inp = RawRuns().subject_inputs(cfg, "01")
    test_runs = RawRuns().find_runs(make_layout(bids, ["01"]), "01", "perception",
                                    "perceptionNaturalImageTest*", what="test")
    union = np.zeros(inp.masks["VC"].shape, bool)
    union.ravel()[inp.samples.voxels] = True
    blocks = build_samples(test_runs, test_runs[:1], union, union.shape, shift=3.0,
                           train_events=EventSpec.for_task("perception"))
    assert np.array_equal(blocks.voxels, inp.samples.voxels)
    labels = inp.samples.train_labels + blocks.train_labels
    names = sorted(set(labels))
    arrays = {
        "X": np.concatenate([inp.samples.X_train, blocks.X_train]).astype(np.float64),
        "datatype": np.r_[np.ones(len(inp.samples.train_labels)),
                          np.full(len(blocks.train_labels), 2.0)],
        "run": np.r_[inp.samples.train_run, 100 + blocks.train_run].astype(float),
        "label": np.array([_god_id(n) for n in labels]),
        "stim": np.array([names.index(n) + 1.0 for n in labels]),
        "stim_ids": np.arange(1.0, len(names) + 1), "stim_names": np.array(names),
    }
    for roi in ("VC", "LVC"):
        arrays[f"roi_{roi}"] = inp.masks[roi].ravel()[inp.samples.voxels]
    npz = tmp_path / "arrays.npz"
    np.savez(npz, **arrays)
    bdata = tmp_path / "Subject01.h5"
    r = subprocess.run([str(py), "-c", WRITE_BDATA, str(npz), str(bdata), "VC,LVC"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with BDataFile(bdata) as bd:  # our reader on bdpy's file
        assert bd.labels("stimulus_name") == labels
        assert [imagenet_name(v) for v in bd.sample_values("Label")] == labels
        assert bd.columns("ROI_VC").size == int(inp.masks["VC"].sum())

    out = tmp_path / "bdata_out"
    assert main([str(bids), str(out), "participant", *common,
                 "--bold-source", f"bdata={tmp_path}/Subject{{subject}}.h5"]) == 0
    a = pd.read_csv(tmp_path / "bids_out/sub-01/func/sub-01_task-perception"
        "_net-simulated_decoding.tsv",
                    sep="\t")
    b = pd.read_csv(out / "sub-01/func/sub-01_task-perception_net-simulated_decoding.tsv", sep="\t")
    assert (a.n_train_samples == 400).all() and (b.n_train_samples == 400).all()
    assert (b.n_test_images == 50).all()
    assert list(a.n_voxels) == list(b.n_voxels)
    for roi in ("VC", "LVC"):
        name = f"sub-01/func/sub-01_task-perception_net-simulated_desc-{roi}_decoding.h5"
        with h5py.File(tmp_path / "bids_out" / name) as fa, h5py.File(out / name) as fb:
            assert list(fa["stimulus_name"][()]) == list(fb["stimulus_name"][()])
            for layer in ("conv1", "fc6", "fc8"):
                acc_a, acc_b = fa[layer]["accuracy"][()], fb[layer]["accuracy"][()]
                assert np.nanmean(acc_a) > 0.3
                np.testing.assert_allclose(acc_b, acc_a, atol=1e-5, equal_nan=True)
    # GOD files have no label map: the Label ids give the same stimuli
    out2 = tmp_path / "bdata_label"
    assert main([str(bids), str(out2), "participant", *common, "--layers", "fc8",
                 "--stimulus-column", "Label", "--bold-source", f"bdata={bdata}"]) == 0
    with h5py.File(out2 / "sub-01/func/sub-01_task-perception"
        "_net-simulated_desc-VC_decoding.h5") as f2, \
            h5py.File(out / "sub-01/func/sub-01_task-perception"
                "_net-simulated_desc-VC_decoding.h5") as f1:
        np.testing.assert_allclose(f2["fc8"]["accuracy"][()], f1["fc8"]["accuracy"][()],
                                   atol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_bdata_errors_are_clean(tmp_path, capsys):
    from bids_decode.errors import EXIT_DATAERR, EXIT_NOINPUT
    from bids_decode.simulate import simulate_dataset

    ds = simulate_dataset(tmp_path / "ds", n_subjects=1, n_train_runs=1, n_test_runs=1, seed=2)
    base = [str(ds["bids_dir"]), str(tmp_path / "out"), "participant", "--features",
            str(ds["features"]), "--skip-bids-validation"]
    assert main([*base, "--bold-source", f"bdata={tmp_path}/none.h5"]) == EXIT_NOINPUT
    assert "none.h5" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=[1])
    assert main([*base, "--bold-source", f"bdata={bad}"]) == EXIT_DATAERR
    err = capsys.readouterr().err
    assert "not a BData file" in err and "Traceback" not in err


def test_god_ids_and_subject_paths(tmp_path):
    from bids_decode.inputs.bdata import imagenet_name, subject_path

    assert imagenet_name(1518878.005958) == "n01518878_5958"
    assert imagenet_name(_god_id("n04254680_1190")) == "n04254680_1190"
    assert imagenet_name(1443537.0) == "n01443537"
    (tmp_path / "Subject1.h5").write_bytes(b"")
    assert subject_path(tmp_path / "Subject{subject}.h5", "01") == tmp_path / "Subject1.h5"
    (tmp_path / "Subject01.h5").write_bytes(b"")
    assert subject_path(tmp_path / "Subject{subject}.h5", "01") == tmp_path / "Subject01.h5"
