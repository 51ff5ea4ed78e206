"""Report figures: one panel per entry, drawn (not blank)."""

from __future__ import annotations

import numpy as np

from bids_decode.reports import figures
from tests.reports.pngs import png_panels


def test_figure_functions_draw_one_panel_per_entry():
    rng = np.random.default_rng(0)
    acc = {la: {"a": rng.uniform(-0.2, 1, 300), "b": np.r_[rng.uniform(0, 1, 50), np.nan]}
           for la in ("l1", "l2", "l3")}
    assert figures.panel_titles(figures.accuracy_violins(acc)) == ["l1", "l2", "l3"]
    big = {"l1": {"a": rng.uniform(0, 1, 50_000)}}  # subsampled violin, full box
    assert figures.panel_titles(figures.accuracy_violins(big)) == ["l1"]
    pairs = {la: (v["a"][:50], v["a"][50:100]) for la, v in acc.items()}
    fig = figures.accuracy_scatter(pairs, xlabel="x", ylabel="y")
    assert figures.panel_titles(fig) == ["l1", "l2", "l3"]
    m = np.array([[0.1, np.nan], [0.3, 0.4]])
    fig = figures.heatmaps({"A": (m, ["r1", "r2"], ["l1", "l2"]),
                            "B": (m, ["r1", "r2"], ["l1", "l2"])})
    assert figures.panel_titles(fig) == ["A", "B"]
    pixels, titles = png_panels(figures.to_png(fig))
    assert titles == ["A", "B"] and pixels.std() > 10
