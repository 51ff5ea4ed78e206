"""The group level run as a whole: the output folder stays BIDS-valid, and a missing features
file skips the Averaged subject with a note instead of failing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bids_decode import cli
from tests.group.simulated import TASK, copy_outputs


@pytest.mark.slow
def test_output_dir_stays_bids_valid(outputs):
    exe = shutil.which("bids-validator-deno") or str(
        Path(__import__("sys").executable).parent / "bids-validator-deno")
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    res = subprocess.run([exe, str(outputs["out"])], capture_output=True, text=True,
                         timeout=120)
    errors = [ln for ln in res.stdout.splitlines() if "[ERROR]" in ln]
    assert not errors, res.stdout[-3000:]


@pytest.mark.slow
def test_missing_features_file_skips_the_averaged_subject(outputs, tmp_path):
    moved = copy_outputs(outputs["out"], tmp_path / "moved", ["01", "02"])
    for side in moved.glob("sub-*/func/*_desc-*_decoding.json"):
        d = json.loads(side.read_text())
        d["FeaturesFile"] = str(tmp_path / "gone.h5")
        side.write_text(json.dumps(d))
    assert cli.main([str(outputs["bids"]), str(moved), "group", "-q"]) == 0
    assert (moved / "group"
            / f"task-{TASK}_net-simulated_desc-crosssubject_correlation.tsv").exists()
    assert not (moved / "group" / "sub-Averaged").exists()
    html = (moved / "group" / "net-simulated_report.html").read_text()
    assert "gone.h5" in html and "Averaged subject was not computed" in html
