"""The reports' pages render in headless Chromium: no console errors, every figure drawn."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests.reports.pngs import IMG_RE, page_images


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
    group = outputs["out"] / "group" / "net-simulated_report.html"
    path = reports["01"] if which == "sub-01" else group
    html = path.read_text()
    res = _render(exe, path, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    dom = res.stdout
    assert "</main>" in dom
    srcs = IMG_RE.findall(dom)
    assert len(srcs) == html.count("<img ") > 0
    assert all(im.std() > 10 for im in page_images(dom))
    if which != "sub-01":
        return
    shot = tmp_path / "shot.png"
    res = _render(exe, path, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    assert np.asarray(Image.open(shot).convert("L"), dtype=np.float64).std() > 10
