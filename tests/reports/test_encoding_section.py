"""The subject report's Encoding section: built from the encoding outputs and their brain maps,
and drawn by headless Chromium with every figure present."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from bids_decode.outputs.brain_maps import write_brain_maps
from bids_decode.reports import write_subject_report
from bids_decode.reports.html import page
from tests.group.simulated import ROIS, TASK
from tests.outputs.encoding_files import planted_encoding
from tests.reports.pngs import IMG_RE, page_images
from tests.reports.test_html import _chromium, _render


@pytest.fixture(scope="module")
def encoded(outputs, tmp_path_factory):
    """sub-01's decoding outputs, plus encoding files and brain maps for each ROI."""
    out = tmp_path_factory.mktemp("enc") / "out"
    shutil.copytree(outputs["out"] / "sub-01", out / "sub-01")
    for k, roi in enumerate(ROIS):
        write_brain_maps(planted_encoding(out, "01", roi, seed=10 + k))
    return out, write_subject_report(out, "01", TASK, network="simulated")


def _section(html: str) -> str:
    return re.search(r'<section id="encoding">(.*?)</section>', html, re.S).group(1)


@pytest.mark.slow
def test_encoding_section_shows_the_maps(encoded):
    _, report = encoded
    html = report.read_text()
    assert "<h2>Encoding</h2>" in html
    sec = _section(html)
    assert "Encoding accuracy, ROI x layer" in sec
    for roi in ROIS:
        assert f'<figure id="brainmap-{roi}">' in sec
        assert f"desc-{roi}_stat-bestdepth_statmap.nii.gz" in sec
    images = page_images(sec)
    assert len(images) == 1 + len(ROIS)
    # coloured voxels drawn: the maps' colour maps, not only grey, white and black
    for im in images[1:]:
        colourful = (im.max(axis=2) - im.min(axis=2)) > 60
        assert colourful.mean() > 0.005


@pytest.mark.slow
def test_without_encoding_files_there_is_no_section(reports):
    assert 'id="encoding"' not in reports["02"].read_text()


@pytest.mark.slow
def test_encoding_section_renders_in_headless_chromium(encoded, tmp_path):
    exe = _chromium()
    _, report = encoded
    res = _render(exe, report, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln]
    sec = _section(res.stdout)
    srcs = IMG_RE.findall(sec)
    assert len(srcs) == 1 + len(ROIS)
    assert all(im.std() > 10 for im in page_images(sec))
    # the section alone on a page: its screenshot shows the maps' colours (Chromium drew them)
    alone = tmp_path / "encoding.html"
    alone.write_text(page("encoding", "", [("encoding", "Encoding", _section(report.read_text()))]))
    shot = tmp_path / "shot.png"
    res = _render(exe, alone, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    im = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert ((im.max(axis=2) - im.min(axis=2)) > 60).mean() > 0.005
