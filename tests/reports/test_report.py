"""HTML reports: contents, embedded figures, and rendering in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from bids_decode.errors import MissingInputError
from bids_decode.outputs.paths import func_path
from bids_decode.reports import report
from tests.group.test_group import LAYERS, ROIS, TASK, build_group_outputs  # shared session outputs

IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    return build_group_outputs(tmp_path_factory)


def write_qc(out, subject: str) -> None:
    """A small ``*_qc.h5`` as the participant level will write it (format: docs/outputs.md)."""
    path = func_path(out, subject, TASK, suffix="qc", ext=".h5")
    rng = np.random.default_rng(1)
    n_vols, tr = 60, 3.0
    onsets = np.arange(8) * 21.0 + 24.0
    with h5py.File(path, "w") as f:
        f.attrs.update({"tr": tr, "run": f"sub-{subject}_ses-perceptionTraining01_run-01"})
        for k, roi in enumerate(ROIS):
            t = np.arange(n_vols) * tr
            box = sum(((t >= o + 3) & (t < o + 12)).astype(float) for o in onsets)
            f.create_dataset(f"timecourse/{roi}", data=box + 0.3 * rng.standard_normal(n_vols)
                             + k)
        f.create_dataset("blocks/onset", data=onsets)
        f.create_dataset("blocks/duration", data=np.full(8, 9.0))
        f.create_dataset("blocks/label", data=np.array([f"img{i}" for i in range(8)],
                                                       dtype=object),
                         dtype=h5py.string_dtype())
        for split, n_img, reps in (("train", 40, 5), ("test", 10, 35)):
            f.create_dataset(f"{split}_counts/name", data=np.array(
                [f"{split}{i}" for i in range(n_img)], dtype=object), dtype=h5py.string_dtype())
            f.create_dataset(f"{split}_counts/count", data=np.full(n_img, reps))
        f.create_dataset("warnings", data=np.array(
            ["3 voxel(s) have non-finite values in some run; they are excluded."], dtype=object),
            dtype=h5py.string_dtype())


@pytest.fixture(scope="session")
def reports(outputs):
    """sub-01 with a qc file, sub-02 without; both reports written once."""
    out = outputs["out"]
    write_qc(out, "01")
    return {s: report.write_subject_report(out, s, TASK) for s in ("01", "02")}


def _images(html: str) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"),
                       dtype=np.float64) for b in IMG_RE.findall(html)]


@pytest.mark.slow
def test_subject_report_shows_inputs_figures_and_provenance(outputs, reports):
    html = reports["01"].read_text()
    assert reports["01"] == outputs["out"] / "sub-01.html"
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
    images = _images(html)
    assert len(images) == 2 + 2 + 2 + len(ROIS)  # qc, accuracy, decodable + ceiling, decoded
    assert all(im.std() > 10 for im in images)
    assert "http://" not in html.replace('href="#', "") and "<script" not in html


@pytest.mark.slow
def test_subject_report_reads_the_participant_qc_file(reports):
    html = reports["02"].read_text()
    assert "Mean ROI signal of sub-02_ses-perceptionTraining01" in html
    assert "Samples per image" in html
    assert len(_images(html)) == 2 + 2 + 2 + len(ROIS)


@pytest.mark.slow
def test_subject_report_without_qc_file_says_so(outputs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(outputs["out"] / "sub-02", out / "sub-02")
    func_path(out, "02", TASK, suffix="qc", ext=".h5").unlink()
    html = report.write_subject_report(out, "02", TASK).read_text()
    assert "No sample-quality file (sub-02_task-perception_qc.h5)" in html
    assert len(_images(html)) == 2 + 2 + len(ROIS)


@pytest.mark.slow
def test_report_of_missing_subject_is_a_clear_error(outputs):
    with pytest.raises(MissingInputError, match="sub-09.*participant level"):
        report.write_subject_report(outputs["out"], "09", TASK)


def test_citation_lists_parameters_and_versions():
    config = {"n_voxels": 500, "alpha": 100.0, "network": "alexnet",
              "provenance": {"versions": {"bids_decode": "9.9", "python": "3.11.0",
                                          "numpy": "2.0"}}}
    side = {"Alpha": 100.0, "HaemodynamicShift": 3.0,
            "FeaturesAttributes": {"network": "caffe-alexnet", "weights": "w.pt"},
            "Samples": {"n_train_samples": 6000, "n_train_runs": 24, "n_test_images": 50,
                        "n_test_blocks": 1750, "n_test_runs": 35}}
    text = report.citation(config, side, list(LAYERS), ROIS, n_units=225)
    for part in ("bids_decode 9.9", "Python 3.11.0", "NumPy 2.0", "caffe-alexnet (w.pt)",
                 "alpha = 100.0", "the 500 voxels", "6000 training samples", "24 runs",
                 "50 test images", "225 units", "Horikawa"):
        assert part in text


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium); "
                    "the report rendering check is skipped")
    return exe


def _render(exe: str, html_path, tmp_path, *mode) -> subprocess.CompletedProcess:
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr",
            "--v=0", *mode, html_path.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["sub-01", "group"])
def test_reports_render_in_headless_chromium(outputs, reports, tmp_path, which):
    exe = _chromium()
    path = reports["01"] if which == "sub-01" else outputs["out"] / "group" / "report.html"
    html = path.read_text()
    res = _render(exe, path, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    dom = res.stdout
    assert "</main>" in dom
    srcs = IMG_RE.findall(dom)
    assert len(srcs) == html.count("<img ") > 0
    assert all(im.std() > 10 for im in _images(dom))
    if which != "sub-01":
        return
    shot = tmp_path / "shot.png"
    res = _render(exe, path, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    assert np.asarray(Image.open(shot).convert("L"), dtype=np.float64).std() > 10
