"""The group figures: one panel per layer (or ROI), drawn, and embedded in the group report."""

from __future__ import annotations

import pytest

from tests.group.simulated import LAYERS, ROIS, TASK
from tests.reports.pngs import png_panels


@pytest.mark.slow
def test_group_figures_one_panel_per_layer(outputs):
    fig_dir = outputs["out"] / "group" / "figures"
    expected = {f"task-{TASK}_net-simulated_desc-{r}_accuracy.png": list(LAYERS) for r in ROIS}
    expected[f"task-{TASK}_net-simulated_desc-VC_pairscatter.png"] = list(LAYERS)
    expected[f"task-{TASK}_net-simulated_desc-crosssubject_bars.png"] = ROIS
    expected[f"task-{TASK}_net-simulated_desc-roilayer_heatmap.png"] = [
        "mean unit accuracy", "mean between-subject r", "disattenuated between-subject r",
        "Averaged subject accuracy"]
    expected[f"task-{TASK}_net-simulated_desc-VC_averageddecoded.png"] = list(LAYERS)
    across = {f"task-{TASK}_desc-{r}_networks.png": [
        "mean unit accuracy", "fraction decodable (q < 0.05)", "between-subject r",
        "disattenuated r"] for r in ROIS}  # the networks compared (one network here)
    assert sorted(p.name for p in fig_dir.iterdir()) == sorted(expected | across)
    for name, panels in (expected | across).items():
        pixels, titles = png_panels((fig_dir / name).read_bytes())
        assert titles == panels, name
        assert pixels.std() > 10, f"{name} looks blank"
    html = (outputs["out"] / "group" / "net-simulated_report.html").read_text()
    assert html.count("<img ") == len(expected)
    assert (outputs["out"] / "group" / "report.html").read_text().count("<img ") == len(across)
    assert "Averaged subject: decoded vs true values, VC" in html
