"""The methods paragraph names the parameters and package versions of the run."""

from __future__ import annotations

from bids_decode.reports.methods import citation
from tests.group.simulated import LAYERS, ROIS


def test_citation_lists_parameters_and_versions():
    config = {"n_voxels": 500, "alpha": 100.0, "network": "alexnet",
              "provenance": {"versions": {"bids_decode": "9.9", "python": "3.11.0",
                                          "numpy": "2.0"}}}
    side = {"Alpha": 100.0, "HaemodynamicShift": 3.0,
            "FeaturesAttributes": {"network": "caffe-alexnet", "weights": "w.pt"},
            "Samples": {"n_train_samples": 6000, "n_train_runs": 24, "n_test_images": 50,
                        "n_test_blocks": 1750, "n_test_runs": 35}}
    text = citation(config, side, list(LAYERS), ROIS, n_units=225)
    for part in ("bids_decode 9.9", "Python 3.11.0", "NumPy 2.0", "caffe-alexnet (w.pt)",
                 "alpha = 100.0", "the 500 voxels", "6000 training samples", "24 runs",
                 "50 test images", "225 units", "Horikawa"):
        assert part in text
