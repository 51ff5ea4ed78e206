"""fMRIPrep's minimal outputs (transforms only) as a BOLD source, end to end: the raw runs
resampled through their transforms recover the planted truth."""

from __future__ import annotations

import json

import pytest

from tests.inputs.motion_data import accuracy, decode


@pytest.mark.slow
def test_fmriprep_minimal_outputs_recover_the_planted_truth(moving, reference, tmp_path):
    fp = moving[0]["bids_dir"] / "derivatives" / "fmriprep"
    assert not list(fp.rglob("*desc-preproc_bold*")) and not list(fp.rglob("*confounds*"))
    out = tmp_path / "fp"
    assert decode(moving[0], out, "--bold-source", "fmriprep", "-d", f"fmriprep={fp}") == 0
    for layer, (r, rho) in accuracy(moving[0], out).items():
        assert r >= 0.9 * reference[layer][0], (layer, r, reference[layer])
        assert rho >= 0.6, (layer, rho)
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception_net-simulated_config.json")
                     .read_text())
    assert cfg["bold_source"] == "fmriprep"
