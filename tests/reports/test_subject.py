"""The subject report: sections, embedded figures, the qc file, provenance and clear errors."""

from __future__ import annotations

import shutil

import pytest

from bids_decode.errors import MissingInputError
from bids_decode.outputs.paths import func_path
from bids_decode.reports import write_subject_report
from tests.group.simulated import ROIS, TASK
from tests.reports.pngs import page_images


@pytest.mark.slow
def test_subject_report_shows_inputs_figures_and_provenance(outputs, reports):
    html = reports["01"].read_text()
    assert reports["01"] == outputs["out"] / "sub-01_net-simulated.html"
    for section in ("Inputs", "Sample quality", "Decoding accuracy", "Decoded vs true",
                    "Parameters", "Warnings", "Methods boilerplate"):
        assert f"<h2>{section}</h2>" in html
    assert "perceptionTraining01" in html and "repetition time (s)" in html
    assert "features_simulated.h5" in html and "planted" in html
    for title in ("Mean ROI signal of", "Samples per image", "Distribution of unit accuracy",
                  "ROI x layer", "Fraction of decodable units",
                  "Accuracy against its noise ceiling",
                  *(f"Decoded vs true values: {r}" for r in ROIS)):
        assert title in html
    assert "non-finite values in some run" in html  # warnings of the qc file
    import numpy

    assert f"NumPy {numpy.__version__}" in html and "bids_decode" in html
    images = page_images(html)
    assert len(images) == 2 + 2 + 2 + len(ROIS)  # qc, accuracy, decodable + ceiling, decoded
    assert all(im.std() > 10 for im in images)
    assert "http://" not in html.replace('href="#', "") and "<script" not in html


@pytest.mark.slow
def test_subject_report_reads_the_participant_qc_file(reports):
    html = reports["02"].read_text()
    assert "Mean ROI signal of sub-02_ses-perceptionTraining01" in html
    assert "Samples per image" in html
    assert len(page_images(html)) == 2 + 2 + 2 + len(ROIS)


@pytest.mark.slow
def test_subject_report_without_qc_file_says_so(outputs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(outputs["out"] / "sub-02", out / "sub-02")
    func_path(out, "02", TASK, net="simulated", suffix="qc", ext=".h5").unlink()
    html = write_subject_report(out, "02", TASK, network="simulated").read_text()
    assert "No sample-quality file (sub-02_task-perception_net-simulated_qc.h5)" in html
    assert len(page_images(html)) == 2 + 2 + len(ROIS)


@pytest.mark.slow
def test_report_of_missing_subject_is_a_clear_error(outputs):
    with pytest.raises(MissingInputError, match="sub-09.*participant level"):
        write_subject_report(outputs["out"], "09", TASK, network="simulated")
