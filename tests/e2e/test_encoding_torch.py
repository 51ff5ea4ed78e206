"""``--encoding --device torch-cpu`` at the participant level: the torch backend (the GPU code
path, on the CPU) writes the encoding outputs of ``--device cpu`` to float32 rounding (the
pipeline encodes in float32: 1e-4 of each array's largest value; measured 2.6e-6 on the
predictions), with the same best layers."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.cli import main
from tests.e2e.test_encoding import _encoding_arrays

pytest.importorskip("torch")

ROIS = ["V1", "HVC"]


@pytest.mark.slow
def test_torch_cpu_encodes_like_the_cpu(tmp_path):
    from bids_decode.simulate.dataset import simulate_dataset

    ds = simulate_dataset(tmp_path / "ds", n_subjects=1, n_train_runs=4, n_test_runs=1,
                          seed=5, hierarchy=True)
    outs = {}
    for device in ("cpu", "torch-cpu"):
        outs[device] = tmp_path / device
        assert main([str(ds["bids_dir"]), str(outs[device]), "participant", "--features",
                     str(ds["networks"]["hierarchical"]), "--roi", *ROIS, "--n-voxels", "60",
                     "--encoding", "--n-permutations", "50", "--skip-bids-validation", "-q",
                     "--device", device]) == 0
    cpu, tc = _encoding_arrays(outs["cpu"], ROIS), _encoding_arrays(outs["torch-cpu"], ROIS)
    assert cpu.keys() == tc.keys() and any(k.endswith("predicted") for k in cpu)
    for key in cpu:
        if cpu[key].dtype.kind == "f":
            scale = max(np.nanmax(np.abs(cpu[key])), 1e-30)
            np.testing.assert_allclose(tc[key], cpu[key], rtol=0, atol=1e-4 * scale,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(tc[key], cpu[key], err_msg=key)
