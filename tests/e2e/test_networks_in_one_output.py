"""Several networks in one OUTPUT_DIR (issue 27), on ``simulate --hierarchy``.

Two networks planted on V1 ... HVC layer by layer (``hierarchical`` in layer order, ``mixed``
out of order), decoded into one OUTPUT_DIR: nothing of the first is touched by the second (bit
for bit against a run alone, scripts/compare_derivatives.py), the folder stays BIDS-valid, the
group level runs per network and ranks the networks by their brain hierarchy score as planted,
and the bdpy export reads back through the real bdpy 0.26.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.cli import main
from bids_decode.inputs.validation import find_validator, validator_issues
from bids_decode.outputs import schema as outputs

ROOT = Path(__file__).resolve().parents[2]
ROIS = ["V1", "V2", "V3", "V4", "HVC"]
TASK = "perception"


def _participant(ds, out, network, *extra):
    args = [str(ds["bids_dir"]), str(out), "participant", "--features",
            str(ds["networks"][network]), "--roi", *ROIS, "--n-voxels", "60",
            "--skip-bids-validation", "-q", *extra]
    return main(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``hierarchical`` alone (sub-01, 02, 03), and ``hierarchical`` then ``mixed`` (sub-01,
    02 only for mixed) into one OUTPUT_DIR."""
    from bids_decode.simulate.dataset import simulate_dataset

    tmp = tmp_path_factory.mktemp("nets")
    ds = simulate_dataset(tmp / "ds", n_subjects=3, n_train_runs=8, n_test_runs=2, seed=3,
                          hierarchy=True)
    alone, both = tmp / "alone", tmp / "both"
    assert _participant(ds, alone, "hierarchical") == 0
    assert _participant(ds, both, "hierarchical") == 0
    assert _participant(ds, both, "mixed", "--participant-label", "01", "02") == 0
    return {"ds": ds, "alone": alone, "both": both, "tmp": tmp}


@pytest.mark.slow
def test_both_networks_kept_and_the_first_is_bit_identical_to_a_run_alone(runs):
    both = runs["both"]
    for net in ("hierarchical", "mixed"):
        for sub in ("01", "02"):
            for roi in ROIS:
                path = outputs.decoding_h5(both, sub, TASK, roi, network=net)
                with h5py.File(path, "r") as f:
                    assert f.attrs["network"] == net
                assert json.loads(path.with_suffix(".json").read_text())["Network"] == net
            cfg = outputs.config_json(both, sub, TASK, network=net)
            assert json.loads(cfg.read_text())["network"] == net
            assert outputs.subject_report(both, sub, network=net).is_file()
    # the mixed network's files set aside, the folder equals the run of hierarchical alone
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_derivatives.py"),
                        str(runs["alone"]), str(both), "--exclude", "*net-mixed*"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    assert "identical" in r.stdout and "files compared" in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno not installed")
def test_two_networks_folder_is_bids_valid(runs):
    errors = [i for i in validator_issues(runs["both"], find_validator())
              if i.get("severity") == "error"]
    assert errors == []


@pytest.mark.slow
def test_same_network_resumes_and_a_colliding_name_is_refused(runs, tmp_path):
    ds, both = runs["ds"], runs["both"]
    before = outputs.decoding_h5(both, "01", TASK, "V1", network="mixed").read_bytes()
    logs = set((both / "logs").glob("*.log"))
    assert _participant(ds, both, "mixed", "--participant-label", "01") == 0
    (log,) = set((both / "logs").glob("*.log")) - logs
    reused = [ln for ln in log.read_text().splitlines() if "reusing" in ln]
    assert len(reused) == len(ROIS) * 6  # every (ROI, layer) work file of sub-01 reused
    assert outputs.decoding_h5(both, "01", TASK, "V1", network="mixed").read_bytes() == before
    # a network whose label collides with another's ('mixed!' -> net-mixed) is refused
    odd = tmp_path / "odd.h5"
    shutil.copy(ds["networks"]["mixed"], odd)
    with h5py.File(odd, "a") as f:
        f.attrs["network"] = "mixed!"
    code = main([str(ds["bids_dir"]), str(both), "participant", "--features", str(odd),
                 "--roi", "V1", "--participant-label", "01", "--skip-bids-validation", "-q"])
    assert code == 73
    assert outputs.decoding_h5(both, "01", TASK, "V1", network="mixed").read_bytes() == before


@pytest.fixture(scope="module")
def group(runs):
    both = runs["both"]
    # mixed lacks sub-03: refused, naming it, unless --participant-label leaves sub-03 out
    code = main([str(runs["ds"]["bids_dir"]), str(both), "group", "-q"])
    assert code == 65
    assert not (both / "group").exists() or not any((both / "group").glob("*.tsv"))
    assert main([str(runs["ds"]["bids_dir"]), str(both), "group", "--participant-label",
                 "01", "02", "-q"]) == 0
    return both / "group"


@pytest.mark.slow
def test_group_refuses_a_network_some_subjects_lack(runs, capsys):
    code = main([str(runs["ds"]["bids_dir"]), str(runs["both"]), "group", "-q"])
    assert code == 65
    err = capsys.readouterr().err
    assert "sub-03" in err and "mixed" in err and "--participant-label" in err


@pytest.mark.slow
def test_group_per_network_and_networks_compared(group):
    for net in ("hierarchical", "mixed"):
        assert outputs.group_table(group.parent, TASK, "crosssubject", "summary",
                                   network=net).is_file()
        assert outputs.group_report(group.parent, net).is_file()
    table = outputs.Table.read(outputs.group_table(group.parent, TASK, "networks", "summary"))
    assert set(table["network"]) == {"hierarchical", "mixed"}
    for _, g in table.groupby(["network", "roi"]):
        g = g.sort_values("layer_index")
        assert list(g["layer"]) == ["conv1", "conv2", "conv3", "conv4", "fc6", "fc7"]
        assert np.allclose(g["relative_depth"], np.linspace(0, 1, 6))
        assert g["profile_r_mean"].notna().all() and g["r_mean"].notna().all()
        assert g["r_disattenuated_mean"].notna().any()  # NaN where a reliability is <= 0
    # planted: V1 decodes the first layer of 'hierarchical' better than HVC does
    h = table[(table["network"] == "hierarchical") & (table["layer"] == "conv1")]
    acc = dict(zip(h["roi"], h["profile_r_mean"]))
    assert acc["V1"] > acc["HVC"]
    assert (group / "figures" / f"task-{TASK}_desc-V1_networks.png").is_file()
    assert (group / "figures" / f"task-{TASK}_desc-bhscore_preferredroi.png").is_file()
    assert "hierarchical" in (group / "report.html").read_text()


@pytest.mark.slow
def test_the_more_hierarchical_network_scores_higher_in_every_subject(group):
    bh = outputs.Table.read(outputs.group_table(group.parent, TASK, "bhscore", "summary"))
    assert list(bh.columns) == ["network", "subject", "bh_decoding", "ci_low", "ci_high",
                                "n_units_kept", "test", "bh_encoding", "bh_encoding_ci_low",
                                "bh_encoding_ci_high", "n_voxels_kept", "bh_score"]
    wide = bh.pivot(index="subject", columns="network", values="bh_decoding")
    assert list(wide.index) == ["01", "02", "pooled"]
    assert (wide["hierarchical"] > wide["mixed"]).all(), wide
    pooled = bh[bh["subject"] == "pooled"].set_index("network")
    assert pooled.loc["hierarchical", "ci_low"] > pooled.loc["mixed", "ci_high"]
    assert (bh["test"] == "permutation").all()
    layers = outputs.Table.read(outputs.group_table(group.parent, TASK, "bhscore", "layers"))
    shares = layers[[f"share_{r}" for r in ROIS]].sum(axis=1)
    assert np.allclose(shares[layers["n_units_kept"] > 0], 1.0)
    # the planted ROI of the first layer of 'hierarchical' is V1, of the last HVC
    h = layers[(layers["network"] == "hierarchical") & (layers["subject"] == "pooled")]
    assert h.set_index("layer").loc["conv1", "share_V1"] > 0.6
    assert h.set_index("layer").loc["fc7", "share_HVC"] > 0.6


@pytest.mark.slow
def test_bdpy_export_round_trips_through_bdpy(runs, tmp_path, bdpy_python):
    dest = tmp_path / "bdpy"
    assert main(["export", str(runs["both"]), str(dest), "--format", "bdpy"]) == 0
    script = r"""
import sys, json, numpy as np
from bdpy.dataform import DecodedFeatures
import scipy.io as sio
dest, out = sys.argv[1], sys.argv[2]
res = {}
for net in ("hierarchical", "mixed"):
    d = DecodedFeatures(dest + "/" + net)
    for layer in d.layers:
        for sub in d.subjects:
            for roi in d.rois:
                for label in d.labels:
                    x = d.get(layer=layer, subject=sub, roi=roi, label=label)
                    res[f"{net}|{layer}|{sub}|{roi}|{label}"] = x
                p = f"{dest}/decoding_accuracy/{net}/{layer}/{sub}/{roi}/accuracy.mat"
                acc = sio.loadmat(p)
                res[f"{net}|{layer}|{sub}|{roi}|accuracy"] = acc["accuracy"]
np.savez(out, **res)
"""
    npz = tmp_path / "read.npz"
    r = subprocess.run([str(bdpy_python), "-c", script, str(dest), str(npz)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(npz)
    n = 0
    for net, per_sub in outputs.find_networks(runs["both"], TASK).items():
        for sub, rois in per_sub.items():
            for roi, path in rois.items():
                with h5py.File(path, "r") as f:
                    names = [outputs.as_str(v).rsplit(".", 1)[0] for v in f["stimulus_name"]]
                    for layer in ("conv1", "conv2", "fc7"):
                        dec = f[layer]["decoded"][()]
                        for i, name in enumerate(names):
                            x = got[f"{net}|{layer}|sub-{sub}|{roi}|{name}"]
                            assert x.dtype == np.float32 and x.shape == (1, *dec.shape[1:])
                            assert np.array_equal(x[0], dec[i])
                            n += 1
                        acc = got[f"{net}|{layer}|sub-{sub}|{roi}|accuracy"]
                        assert acc.shape == (1, *dec.shape[1:])
                        assert np.array_equal(acc[0], f[layer]["accuracy"][()], equal_nan=True)
    assert n == 2 * 5 * 3 * 50 + 3 * 5 * 3 * 50  # mixed: 2 subjects, hierarchical: 3


@pytest.mark.slow
def test_unit_sample_is_the_same_units_everywhere(runs, tmp_path):
    from bids_decode.features.units import sample_units

    ds, out = runs["ds"], tmp_path / "sample"
    assert _participant(ds, out, "hierarchical", "--participant-label", "01", "--units-per-layer",
                        "25", "--unit-seed", "7", "--unit-shard", "1/2") == 0
    assert _participant(ds, out, "hierarchical", "--participant-label", "01", "--units-per-layer",
                        "25", "--unit-seed", "7", "--unit-shard", "2/2") == 0
    side = json.loads(outputs.roi_sidecar(out, "01", TASK, "V1", network="hierarchical")
                      .read_text())
    assert side["UnitsPerLayer"] == 25 and side["UnitSeed"] == 7
    for roi in ("V1", "HVC"):
        full = outputs.decoding_h5(runs["alone"], "01", TASK, roi, network="hierarchical")
        part = outputs.decoding_h5(out, "01", TASK, roi, network="hierarchical")
        with h5py.File(full, "r") as a, h5py.File(part, "r") as b:
            for layer in ("conv1", "fc7"):
                idx = b[layer]["unit_index"][()]
                n_units = int(np.prod(a[layer]["accuracy"].shape))
                assert np.array_equal(idx, sample_units(n_units, 25, 7, layer))
                assert tuple(b[layer].attrs["unit_shape"]) == a[layer]["accuracy"].shape
                assert b[layer]["accuracy"].shape == (25,)
                # the same units as a full run: accuracies within the documented float32
                # tolerance (other units share the 64-unit BLAS blocks), p-values equal
                acc_full = a[layer]["accuracy"][()].ravel()[idx]
                assert np.abs(b[layer]["accuracy"][()] - acc_full).max() < 1e-6
                dec_full = a[layer]["decoded"][()].reshape(50, -1)[:, idx]
                scale = np.abs(dec_full).max()
                assert np.abs(b[layer]["decoded"][()] - dec_full).max() < 1e-5 * scale


@pytest.mark.slow
def test_paper_test_at_the_group_level(runs, group, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs["both"], copy, ignore=shutil.ignore_patterns(".bids_decode_work"))
    assert main([str(runs["ds"]["bids_dir"]), str(copy), "group", "--participant-label", "01",
                 "02", "--bh-test", "paper", "-q"]) == 0
    bh = outputs.Table.read(outputs.group_table(copy, TASK, "bhscore", "summary"))
    assert (bh["test"] == "paper").all()
    # the kept units are those with 0.3047 < best r < 0.9524 (n = 50 test images)
    path = outputs.decoding_h5(copy, "01", TASK, "V1", network="mixed")
    layers = pd.read_csv(outputs.group_table(copy, TASK, "bhscore", "layers"), sep="\t")
    row = layers[(layers["network"] == "mixed") & (layers["subject"] == "01")
                 & (layers["layer"] == "conv3")].iloc[0]
    best = np.max([np.nan_to_num(h5py.File(str(path).replace("desc-V1", f"desc-{r}"), "r")
                                 ["conv3"]["accuracy"][()]) for r in ROIS], axis=0)
    assert row["n_units_kept"] == int(((best > 0.3047) & (best < 0.9524)).sum())
