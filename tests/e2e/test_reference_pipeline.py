"""End to end against an independent reference: samples and decoder rebuilt in plain numpy.

For one ROI and two layers of a simulated subject, this test rebuilds every step of the
participant level from the files alone, without calling the package: ROI masks from the
ds001246 ``sourcedata`` files (both hemispheres), BOLD runs read with nibabel, linear
detrending and z-scoring per run, the volumes of each stimulus block after the haemodynamic
shift, one-back repeats dropped, test blocks averaged per image, X and Y z-scored with training
statistics, and for each unit the top-k voxels by |r| on the training data followed by a ridge
regression with a penalised bias (``(Xs'Xs + alpha I) w = Xs'y`` with a column of ones
appended). The app's ``decoded``, ``accuracy``, ``pattern_r`` and ``identification`` must equal
the reference's to 1e-5.

The options are not the defaults (alpha 37, 60 voxels, shift 3 s written explicitly in the
reference), so a pipeline that ignores one of them differs from the reference.
"""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

pytestmark = pytest.mark.slow  # a participant run, then the reference rebuilt in numpy

ALPHA, K, SHIFT = 37.0, 60, 3.0
LAYERS = {"conv1": (4, 3, 5), "fc8": (37,)}
ROI_PARTS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v")  # LVC = V1 + V2 + V3, both hemispheres
TOL = 1e-5


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    from bids_decode.cli import main
    from bids_decode.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("refpipe")
    sim = simulate_dataset(root / "ds", n_subjects=1, n_train_runs=6, n_test_runs=2,
                           layers=LAYERS, seed=11)
    out = root / "out"
    code = main([str(sim["bids_dir"]), str(out), "participant", "--features",
                 str(sim["features"]), "--roi", "LVC", "--n-voxels", str(K), "--alpha",
                 str(ALPHA), "--skip-bids-validation", "-q"])
    assert code == 0
    return sim, out


# ---------------------------------------------------------------- the reference, step by step

def _mask(bids, shape):
    anat = bids / "sourcedata" / "sub-01" / "anat"
    m = np.zeros(shape, dtype=bool)
    for part in ROI_PARTS:
        for hemi in ("LH", "RH"):
            m |= np.asarray(nib.load(anat / f"sub-01_mask_{hemi}_{part}.nii.gz").dataobj) > 0
    return m


def _clean(ts):
    """Remove the mean and the linear trend of each voxel, divide by its SD (ddof 1)."""
    n = ts.shape[0]
    t = np.arange(n, dtype=np.float64)
    design = np.column_stack([np.ones(n), t])
    beta, *_ = np.linalg.lstsq(design, ts, rcond=None)
    res = ts - design @ beta
    sd = res.std(axis=0, ddof=1)
    sd[sd < np.finfo(np.float64).eps] = 1.0
    return res / sd


def _run_samples(bold_path, events_path, mask):
    img = nib.load(bold_path)
    tr = float(img.header.get_zooms()[3])
    data = img.get_fdata()[mask].T  # (n_volumes, n_voxels)
    ts = _clean(data)
    ev = pd.read_csv(events_path, sep="\t", dtype=str)
    ev = ev[ev["event_type"] == "stimulus"]
    names, onsets = ev["stimulus_name"].tolist(), ev["onset"].astype(float).tolist()
    durs = ev["duration"].astype(float).tolist()
    acq = np.arange(ts.shape[0]) * tr  # acquisition time of each volume
    rows, labels = [], []
    for i, (name, on, du) in enumerate(zip(names, onsets, durs)):
        if i and name == names[i - 1]:  # one-back repeat: not a sample
            continue
        vols = (acq >= on + SHIFT - 1e-9) & (acq < on + du + SHIFT - 1e-9)
        assert vols.any()
        rows.append(ts[vols].mean(axis=0))
        labels.append(name)
    return np.array(rows), labels


def _samples(bids):
    runs = {"train": sorted(bids.glob("sub-01/ses-perceptionTraining*/func/*_bold.nii.gz")),
            "test": sorted(bids.glob("sub-01/ses-perceptionTest*/func/*_bold.nii.gz"))}
    mask = _mask(bids, nib.load(runs["train"][0]).shape[:3])
    out = {}
    for split, paths in runs.items():
        X, labels = [], []
        for p in paths:
            x, lab = _run_samples(p, str(p).replace("_bold.nii.gz", "_events.tsv"), mask)
            X.append(x)
            labels += lab
        out[split] = (np.concatenate(X), labels)
    Xte_blocks, te_labels = out["test"]
    images = sorted(set(te_labels))
    Xte = np.array([Xte_blocks[[lab == im for lab in te_labels]].mean(axis=0) for im in images])
    return out["train"][0], out["train"][1], Xte, images


def _zscore(train, test):
    mu, sd = train.mean(axis=0), train.std(axis=0, ddof=1)
    const = sd < 1e-8
    sd[const] = 1.0
    ztr, zte = (train - mu) / sd, (test - mu) / sd
    ztr[:, const] = 0.0
    zte[:, const] = 0.0
    return ztr, zte, mu, sd, const


def _reference_decoder(X, Y, Xt, alpha, k):
    """Per unit: top-k voxels by |r| on the training data, ridge with a penalised bias."""
    n, p = X.shape
    preds = np.zeros((Xt.shape[0], Y.shape[1]))
    xc = X - X.mean(axis=0)
    xn = np.sqrt((xc**2).sum(axis=0))
    for u in range(Y.shape[1]):
        y = Y[:, u]
        yc = y - y.mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (xc.T @ yc) / (xn * np.sqrt(yc @ yc))
        r[~np.isfinite(r)] = 0.0
        sel = np.argsort(-np.abs(r), kind="stable")[:k]
        Xs = np.column_stack([X[:, sel], np.ones(n)])
        w = scipy.linalg.solve(Xs.T @ Xs + alpha * np.eye(k + 1), Xs.T @ y, assume_a="pos")
        preds[:, u] = np.column_stack([Xt[:, sel], np.ones(len(Xt))]) @ w
    return preds


def _pearson_columns(a, b):
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ac * bc).sum(axis=0) / np.sqrt((ac**2).sum(axis=0) * (bc**2).sum(axis=0))


def test_app_equals_independent_reference(app_run):
    sim, out = app_run
    bids = sim["bids_dir"]
    X, train_labels, Xt, images = _samples(bids)
    Xz, Xtz, *_ = _zscore(X, Xt)
    path = out / "sub-01" / "func" / "sub-01_task-perception_net-simulated_desc-LVC_decoding.h5"
    with h5py.File(sim["features"], "r") as f, h5py.File(path, "r") as h5:
        names = [s.decode() if isinstance(s, bytes) else s for s in f["stimulus_name"][()]]
        row = {n: i for i, n in enumerate(names)}
        got_images = [s.decode() if isinstance(s, bytes) else s for s in h5["stimulus_name"][()]]
        assert got_images == images
        assert h5.attrs["n_voxels_roi"] == X.shape[1]
        for layer in LAYERS:
            feats = f["layers"][layer][()].reshape(len(names), -1).astype(np.float64)
            Y = feats[[row[n] for n in train_labels]]
            Yt = feats[[row[n] for n in images]]
            Yz, Ytz, mu, sd, const = _zscore(Y, Yt)
            pred = _reference_decoder(Xz, Yz, Xtz, ALPHA, K)
            pred[:, const] = 0.0
            decoded = pred * sd + mu
            acc = _pearson_columns(pred, Ytz)
            acc[const] = np.nan
            # per image: r over units of decoded and true (z-scored) patterns
            C = np.corrcoef(pred, Ytz)[: len(images), len(images):]
            diag = np.diag(C)[:, None]
            off = ~np.eye(len(images), dtype=bool)
            ident = (((diag > C) & off).sum(1) + 0.5 * ((diag == C) & off).sum(1)) / (
                len(images) - 1)

            g = h5[layer]
            app_dec = g["decoded"][()].reshape(len(images), -1).astype(np.float64)
            scale = np.where(const, 1.0, sd)
            np.testing.assert_allclose(app_dec / scale, decoded / scale, rtol=0, atol=TOL,
                                       err_msg=f"{layer}: decoded")
            app_acc = g["accuracy"][()].ravel().astype(np.float64)
            assert np.array_equal(np.isnan(app_acc), np.isnan(acc)), f"{layer}: NaN units"
            assert const.sum() == (3 if layer == "conv1" else 0)  # the simulated dead units
            np.testing.assert_allclose(app_acc, acc, rtol=0, atol=TOL, err_msg=f"{layer}: r")
            np.testing.assert_allclose(g["pattern_r"][()], np.diag(C), rtol=0, atol=TOL)
            # identification is a count: equal wherever no pair sits within 1e-5 of a tie
            clear = (np.abs(diag - C)[off.nonzero()].min() > TOL)
            if clear:
                np.testing.assert_array_equal(g["identification"][()], ident)
            # the reference is not trivially equal to a no-selection or training-mean decoder
            assert np.nanmean(acc) > 0.3, f"{layer}: reference mean r {np.nanmean(acc):.2f}"
