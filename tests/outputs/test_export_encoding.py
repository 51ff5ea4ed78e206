"""``bids_decode export --format bdpy`` writes the encoding accuracies in BHscore's layout.

Read back in the reference venv (bdpy 0.26) with the loader ``calc_bhscore.ipynb`` uses for
encoding accuracies, ``hdf5storage.loadmat(path)['accuracy']``; the values must be the
encoding file's, the voxels in the order of the ROI mask (the mask's ``np.flatnonzero``).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bids_decode.cli import main
from bids_decode.errors import DataError
from bids_decode.evaluation import bhscore
from bids_decode.outputs.encoding import (
    encoding_h5,
    encoding_writer,
    read_encoding,
    write_best_layers,
    write_encoding_layer,
)
from bids_decode.outputs.export import export_bdpy
from tests.group.test_bhscore_encoding import GRID, LAYERS, SUBJECTS, TASK, write_network


def test_encoding_accuracies_round_trip_through_bhscore_loader(tmp_path, bdpy_python):
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_network(out, "hierarchical", True, np.random.default_rng(2))
    assert main(["export", str(out), str(dest), "--format", "bdpy", "--task", TASK]) == 0
    script = r"""
import sys, numpy as np, hdf5storage
dest, out, subs, rois, layers = sys.argv[1], sys.argv[2], *(a.split(",") for a in sys.argv[3:])
res = {}
for layer in layers:
    for sub in subs:
        for roi in rois:
            p = f"{dest}/encoding/hierarchical/{layer}/sub-{sub}/{roi}/accuracy.mat"
            res[f"{layer}|{sub}|{roi}"] = hdf5storage.loadmat(p)["accuracy"]
np.savez(out, **res)
"""
    npz = tmp_path / "read.npz"
    r = subprocess.run([str(bdpy_python), "-c", script, str(dest), str(npz), ",".join(SUBJECTS),
                        ",".join(bhscore.BH_ROIS), ",".join(LAYERS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(npz)
    n = 0
    for sub in SUBJECTS:
        for roi in bhscore.BH_ROIS:
            enc = read_encoding(encoding_h5(out, sub, TASK, roi, network="hierarchical"))
            mask = np.zeros(GRID, dtype=bool)
            mask.ravel()[enc.voxel_index] = True
            for i, layer in enumerate(LAYERS):
                acc = got[f"{layer}|{sub}|{roi}"]
                assert acc.dtype == np.float32 and acc.shape == (1, enc.accuracy.shape[1])
                # the voxels in mask order: the map of the accuracies read at the mask
                in_mask = enc.volume(enc.accuracy[i])[mask]
                assert np.array_equal(acc[0], in_mask)
                assert np.array_equal(acc[0], enc.accuracy[i].astype(np.float32))
                n += 1
    assert n == len(SUBJECTS) * len(bhscore.BH_ROIS) * len(LAYERS)
    assert not (dest / "decoding_accuracy").exists()  # no decoding outputs: none exported


def test_voxels_out_of_mask_order_are_refused(tmp_path):
    out = tmp_path / "out"
    path = encoding_h5(out, "01", TASK, "V1", network="net")
    path.parent.mkdir(parents=True)
    with encoding_writer(path, voxel_index=[5, 3, 9], grid_shape=(4, 4, 4),
                         grid_affine=np.eye(4), test_names=["a", "b"], attrs={"roi": "V1"},
                         n_layers=1) as h5:
        write_encoding_layer(h5, "fc6", {"accuracy": [0.1, 0.2, 0.3],
                                         "p_value": [np.nan] * 3}, {})
        write_best_layers(h5, ["fc6"])
    with pytest.raises(DataError, match="not in ascending order"):
        export_bdpy(out, tmp_path / "dest", TASK)
    assert not (tmp_path / "dest" / "encoding").exists()
