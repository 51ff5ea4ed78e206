"""Inputs real users have: preproc-spm and fMRIPrep derivatives, imagery runs, other masks."""

from __future__ import annotations

import shutil

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bids_decode.cli import main

pytestmark = pytest.mark.slow  # each test runs the participant level on a simulated dataset


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    from bids_decode.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("rich") / "ds", n_subjects=1,
                            n_train_runs=14, n_test_runs=3, n_imagery_runs=4,
                            preproc_spm=True, fmriprep=True, seed=11)


def _participant(ds, out, *extra, layers=("fc6", "conv1")):
    return main([str(ds["bids_dir"]), str(out), "participant", "--features",
                 str(ds["features"]), "--n-voxels", "100", "--roi", "VC",
                 "--layers", *layers, *extra])


def _spearman(ds, out, task="perception", roi="VC"):
    res = {}
    path = out / "sub-01" / "func" / f"sub-01_task-{task}_net-simulated_desc-{roi}_decoding.h5"
    with h5py.File(path) as h5:
        for layer in h5:
            if layer == "stimulus_name":
                continue
            acc = h5[layer]["accuracy"][()].ravel()
            rho = ds["truth"][layer].ravel()
            ok = np.isfinite(rho)
            res[layer] = (spearmanr(acc[ok], rho[ok])[0], float(np.nanmean(acc)))
    return res


@pytest.mark.parametrize("source", ["raw", "preproc-spm"])
def test_ds001246_raw_and_preproc_spm(rich, tmp_path, source, caplog):
    out = tmp_path / source
    assert _participant(rich, out, "--bold-source", source) == 0
    for layer, (r, _) in _spearman(rich, out).items():
        assert r >= 0.6, f"{source} {layer}: Spearman {r:.2f}"
    cfg = (out / "sub-01" / "func" / "sub-01_task-perception"
        "_net-simulated_desc-VC_decoding.json").read_text()
    assert f'"BoldSource": "{source}"' in cfg


def test_preproc_spm_alignment_comes_from_volume_counts(rich):
    from bids_decode.inputs.layout import make_layout
    from bids_decode.inputs.sources import BoldSource

    ds = rich["bids_dir"]
    src = BoldSource.parse("preproc-spm", ds, {}, "T1w")
    runs = src.find_runs(make_layout(ds, ["01"]), "01", "perception", "perceptionTest*",
                         what="test")
    assert {r.volume_offset for r in runs} == {3}
    assert all(r.bold.name.endswith("_bold_preproc.nii.gz") for r in runs)
    # without the raw runs, the offset comes from the events' span
    for r in runs:
        raw = r.events.with_name(r.events.name.replace("_events.tsv", "_bold.nii.gz"))
        raw.rename(raw.with_suffix(".bak"))
    try:
        runs2 = src.find_runs(make_layout(ds, ["01"]), "01", "perception",
                              "perceptionTest*", what="test")
        assert {r.volume_offset for r in runs2} == {3}
    finally:
        for r in runs:
            raw = r.events.with_name(r.events.name.replace("_events.tsv", "_bold.nii.gz"))
            raw.with_suffix(".bak").rename(raw)


def test_fmriprep_with_confounds(rich, tmp_path):
    fp = rich["bids_dir"] / "derivatives" / "fmriprep"
    with_conf = tmp_path / "conf"
    assert _participant(rich, with_conf, "--bold-source", "fmriprep", "-d", f"fmriprep={fp}",
                        "--confounds", "motion6") == 0
    without = tmp_path / "noconf"
    assert _participant(rich, without, "--bold-source", "fmriprep") == 0
    a, b = _spearman(rich, with_conf), _spearman(rich, without)
    for layer in a:
        assert a[layer][0] >= 0.6, f"{layer}: Spearman {a[layer][0]:.2f}"
        # the planted motion artefact is removed by regressing the motion parameters
        assert a[layer][1] > b[layer][1] + 0.03


def test_confounds_without_table_is_a_clear_error(rich, tmp_path, capsys):
    code = _participant(rich, tmp_path / "o", "--confounds", "motion6")
    err = capsys.readouterr().err
    assert code == 65 and "confounds" in err and "Traceback" not in err


def test_imagery_decoding_with_perception_decoders(rich, tmp_path):
    out = tmp_path / "imagery"
    assert _participant(rich, out, "--task", "imagery") == 0
    tsv = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-imagery"
        "_net-simulated_decoding.tsv", sep="\t")
    assert (tsv.n_test_images == 50).all()  # 50 imagined categories
    with h5py.File(out / "sub-01" / "func" / "sub-01_task-imagery"
        "_net-simulated_desc-VC_decoding.h5") as h5:
        cats = [s.decode() for s in h5["stimulus_name"][()]]
        assert all(c.startswith("n") and "_" not in c for c in cats)
    # imagery carries a weaker copy of the perception response: still identifiable
    assert (tsv.identification_accuracy > 0.6).all()
    for layer, (r, _) in _spearman(rich, out, task="imagery").items():
        assert r >= 0.4, f"imagery {layer}: Spearman {r:.2f}"


def test_masks_from_a_derivatives_folder(rich, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(rich["bids_dir"], ds, ignore=shutil.ignore_patterns("derivatives"))
    anat = ds / "sourcedata" / "sub-01" / "anat"
    vc = None
    for f in anat.glob("*.nii.gz"):
        part = f.name.split("_")[-1].split(".")[0]
        if part in ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "HVC"):
            img = nib.load(f)
            vc = np.asanyarray(img.dataobj) > 0 if vc is None else vc | (
                np.asanyarray(img.dataobj) > 0)
    shutil.rmtree(ds / "sourcedata")
    masks = tmp_path / "masks" / "sub-01" / "anat"
    masks.mkdir(parents=True)
    nib.save(nib.Nifti1Image(vc.astype(np.uint8), img.affine),
             masks / "sub-01_space-T1w_desc-VC_mask.nii.gz")
    ds_info = dict(rich, bids_dir=ds)
    out = tmp_path / "out"
    assert _participant(ds_info, out, "-d", f"masks={tmp_path / 'masks'}",
                        "--skip-bids-validation") == 0
    for layer, (r, _) in _spearman(rich, out).items():
        assert r >= 0.6, layer


def test_atlas_with_labels(rich, tmp_path):
    anat = rich["bids_dir"] / "sourcedata" / "sub-01" / "anat"
    first = nib.load(next(anat.glob("*.nii.gz")))
    atlas = np.zeros(first.shape, np.int16)
    for value, parts in ((1, ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v")), (2, ("HVC",))):
        for p in parts:
            for hemi in ("LH", "RH"):
                atlas[np.asanyarray(nib.load(anat / f"sub-01_mask_{hemi}_{p}.nii.gz")
                                    .dataobj) > 0] = value
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, first.affine), path)
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"index": [1, 2], "name": ["early", "late"]}).to_csv(labels, sep="\t",
                                                                     index=False)
    out = tmp_path / "out"
    code = main([str(rich["bids_dir"]), str(out), "participant", "--features",
                 str(rich["features"]), "--n-voxels", "100", "--roi", "early", "LVC",
                 "--layers", "fc6", "--atlas", str(path), "--atlas-labels", str(labels)])
    assert code == 0
    h = {}
    for roi in ("early", "LVC"):
        with h5py.File(out / "sub-01" / "func" /
                       f"sub-01_task-perception_net-simulated_desc-{roi}_decoding.h5") as h5:
            h[roi] = (h5.attrs["n_voxels_roi"], h5["fc6"]["accuracy"][()])
    # the atlas label 'early' is exactly LVC
    assert h["early"][0] == h["LVC"][0]
    np.testing.assert_allclose(h["early"][1], h["LVC"][1], atol=1e-6)


def test_imagery_group_level(tmp_path):
    """The group level runs on imagery outputs (the Averaged subject needs image features)."""
    from bids_decode.simulate import simulate_dataset

    ds = simulate_dataset(tmp_path / "ds", n_subjects=2, n_train_runs=8, n_test_runs=1,
                          n_imagery_runs=2, seed=12)
    out = tmp_path / "out"
    assert main([str(ds["bids_dir"]), str(out), "participant", "--task", "imagery",
                 "--features", str(ds["features"]), "--n-voxels", "60", "--layers", "fc8",
                 "--skip-bids-validation"]) == 0
    assert main([str(ds["bids_dir"]), str(out), "group", "--task", "imagery"]) == 0
    corr = pd.read_csv(out / "group" / "task-imagery"
        "_net-simulated_desc-crosssubject_correlation.tsv",
                       sep="\t")
    assert len(corr) == 1 and corr.r.iloc[0] > 0.5
    assert not (out / "group" / "sub-Averaged").exists()
