"""Samples from BOLD + events: block timing, shift, repeats, test averaging."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_decode.inputs.layout import Run
from bids_decode.inputs.samples import block_volumes, build_samples, clean_run


def test_block_volumes_ds001246_timing():
    # 9 s block at 33 s, TR 3, shifted 3 s -> volumes acquired at 36, 39, 42 s
    assert block_volumes(33, 9, 3.0, 3.0, 0, 178).tolist() == [12, 13, 14]
    # preproc-spm runs lack the first 3 volumes
    assert block_volumes(33, 9, 3.0, 3.0, 3, 175).tolist() == [9, 10, 11]
    # a block shorter than a TR still gets one volume
    assert block_volumes(10, 1, 2.0, 0.0, 0, 50).tolist() == [5]


def _write_run(tmp_path, name, data, events: pd.DataFrame, tr=2.0):
    img = nib.Nifti1Image(data.astype(np.float32), np.eye(4))
    img.header.set_zooms((1, 1, 1, tr))
    bold = tmp_path / f"{name}_bold.nii.gz"
    nib.save(img, bold)
    ev = tmp_path / f"{name}_events.tsv"
    events.to_csv(ev, sep="\t", index=False)
    return Run(bold, ev, None, None, tr)


def test_build_samples_planted_values(tmp_path):
    """Each voxel carries a known pattern per image; samples must recover it exactly."""
    rng = np.random.default_rng(0)
    shape, tr, n_vols = (3, 4, 5), 2.0, 40
    mask = np.zeros(shape, bool)
    mask[1:, 1:3, 2:] = True
    n_vox = int(mask.sum())
    images = ["a", "b", "c", "d"]
    pattern = {im: rng.standard_normal(n_vox) for im in images}

    series = {}

    def make(name, seq, onsets):
        ts = rng.standard_normal((n_vols, n_vox)) * 0.1
        for im, on in zip(seq, onsets):
            v0 = int(on / tr) + 2  # signal appears one shift (4 s = 2 volumes) later
            ts[v0:v0 + 2] += pattern[im]
        vol = np.zeros((*shape, n_vols))
        vol[mask] = ts.T
        series[name] = clean_run(ts.astype(np.float32), tr)
        ev = pd.DataFrame({"onset": onsets, "duration": [4.0] * len(seq),
                           "event_type": ["stimulus"] * len(seq), "stimulus_name": seq})
        return _write_run(tmp_path, name, vol, ev, tr)

    def expect(name, onset):
        v0 = int(onset / tr) + 2
        return series[name][v0:v0 + 2].mean(axis=0)

    train = [make("r1", ["a", "b", "b", "c"], [4, 12, 20, 28]),
             make("r2", ["d", "a", "c"], [4, 16, 30])]
    test = [make("t1", ["a", "b"], [4, 20]), make("t2", ["b", "a", "a"], [6, 18, 26])]
    s = build_samples(train, test, mask, shape + (n_vols,), stimulus_column=None, shift=4.0)
    assert s.train_labels == ["a", "b", "c", "d", "a", "c"]  # repeat of b dropped
    assert s.info["n_repeats_dropped"] == 2
    assert s.test_labels == ["a", "b"] and s.test_counts.tolist() == [2, 2]
    assert s.X_train.shape == (6, n_vox) and s.X_test.shape == (2, n_vox)
    want = np.array([expect("r1", 4), expect("r1", 12), expect("r1", 28),
                     expect("r2", 4), expect("r2", 16), expect("r2", 30)])
    np.testing.assert_allclose(s.X_train, want, atol=1e-5)
    want_test = np.array([(expect("t1", 4) + expect("t2", 18)) / 2,
                          (expect("t1", 20) + expect("t2", 6)) / 2])
    np.testing.assert_allclose(s.X_test, want_test, atol=1e-5)
    # the planted pattern dominates: same image, same sign
    assert np.corrcoef(s.X_train[0], pattern["a"])[0, 1] > 0.8


def test_nonfinite_voxels_are_excluded(tmp_path):
    shape, n_vols = (2, 3, 4), 30
    mask = np.ones(shape, bool)
    rng = np.random.default_rng(1)
    vol = rng.standard_normal((*shape, n_vols))
    vol[0, 1, 2, 5] = np.nan
    ev = pd.DataFrame({"onset": [2.0, 20.0], "duration": [4.0, 4.0],
                       "stimulus_name": ["x", "y"]})
    run = _write_run(tmp_path, "r", vol, ev)
    s = build_samples([run], [run], mask, vol.shape, stimulus_column=None, shift=2.0)
    assert s.X_train.shape[1] == mask.sum() - 1
    assert np.isfinite(s.X_train).all()
    assert s.info["n_nonfinite_voxels"] == 1


@pytest.mark.parametrize("subject", ["01", "02", "03"])
def test_real_ds001246_tree_gives_1200_training_and_50_test_images(real_events_dir, tmp_path,
                                                                   subject):
    """Every real events file of a subject, tiny BOLD runs of the real length (178 volumes)."""
    import json
    import shutil

    from bids_decode.inputs.layout import make_layout
    from bids_decode.inputs.sources import RawRuns

    ds = tmp_path / "ds"
    ds.mkdir()
    shutil.copyfile(real_events_dir / "dataset_description.json",
                    ds / "dataset_description.json")
    shutil.copyfile(real_events_dir / "task-perception_bold.json",
                    ds / "task-perception_bold.json")
    assert json.loads((ds / "task-perception_bold.json").read_text())["RepetitionTime"] == 3
    img = nib.Nifti1Image(np.random.default_rng(0).standard_normal((2, 3, 2, 178))
                          .astype(np.float32), np.eye(4))
    for ev in sorted(real_events_dir.glob(f"sub-{subject}/ses-perception*/func/*_events.tsv")):
        dst = ds / ev.relative_to(real_events_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ev, dst)
        nib.save(img, dst.with_name(dst.name.replace("_events.tsv", "_bold.nii.gz")))
    layout = make_layout(ds, [subject])
    train = RawRuns().find_runs(layout, subject, "perception", "perceptionTraining*",
                                what="training")
    test = RawRuns().find_runs(layout, subject, "perception", "perceptionTest*", what="test")
    assert len(train) == 24 and len(test) == 35
    assert {r.tr for r in train + test} == {3.0}
    s = build_samples(train, test, np.ones((2, 3, 2), bool), (2, 3, 2, 178), shift=3.0)
    assert s.X_train.shape == (1200, 12) and len(set(s.train_labels)) == 1200
    assert len(s.test_labels) == 50 and (s.test_counts == 35).all()
    assert s.info["n_repeats_dropped"] == 5 * (24 + 35)
