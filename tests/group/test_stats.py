"""Between-subject statistics: pair rows equal a direct computation from the participant files,
summary and top-k% overlap follow the planted shared decodability, NaN units are left out."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from bids_decode.group.stats import pair_correlations, top_overlap
from bids_decode.outputs.schema import GROUP_OVERLAP, GROUP_PAIRS, GROUP_SUMMARY
from tests.group.simulated import LAYERS, ROIS, TASK, accuracy, gpath


@pytest.mark.slow
def test_between_subject_r_matches_participant_files(outputs):
    """Every pair row, by its ROI and subject labels, equals a direct computation to 1e-6."""
    from scipy.stats import spearmanr

    out = outputs["out"]
    pairs = pd.read_csv(gpath(out, "crosssubject", "correlation"), sep="\t",
                        dtype={"subject_a": str, "subject_b": str})
    assert list(pairs.columns) == GROUP_PAIRS.names
    want_keys = sorted((roi, layer, a, b) for roi in ROIS for layer in LAYERS
                       for a, b in combinations(["01", "02", "03"], 2))
    got_keys = sorted(zip(pairs.roi, pairs.layer, pairs.subject_a, pairs.subject_b))
    assert got_keys == want_keys  # each (ROI, layer, pair) exactly once, labels as written
    for row in pairs.itertuples():
        xa = accuracy(out, row.subject_a, row.roi, row.layer)
        xb = accuracy(out, row.subject_b, row.roi, row.layer)
        ok = np.isfinite(xa) & np.isfinite(xb)
        where = f"{row.roi}/{row.layer} sub-{row.subject_a} vs sub-{row.subject_b}"
        assert row.n_units == ok.sum() <= int(np.prod(LAYERS[row.layer])), where
        assert abs(row.r - np.corrcoef(xa[ok], xb[ok])[0, 1]) < 1e-6, where
        assert abs(row.spearman_r - spearmanr(xa[ok], xb[ok])[0]) < 1e-6, where
        assert row.r > 0.6 and row.spearman_r > 0.6, where
    # the pairs differ by more than the tolerance, so swapped labels cannot pass
    for (roi, layer), rows in pairs.groupby(["roi", "layer"]):
        assert np.diff(np.sort(rows.r.to_numpy())).min() > 1e-5, (roi, layer)


@pytest.mark.slow
def test_summary_and_rank_consistency(outputs):
    out = outputs["out"]
    summary = pd.read_csv(gpath(out, "crosssubject", "summary"), sep="\t")
    assert list(summary.columns) == GROUP_SUMMARY.names
    assert list(zip(summary.roi, summary.layer)) == [(r, la) for r in ROIS for la in LAYERS]
    assert (summary.n_pairs == 3).all() and (summary.n_subjects == 3).all()
    assert (summary.r_min <= summary.r_mean).all() and (summary.r_mean <= summary.r_max).all()
    pairs = pd.read_csv(gpath(out, "crosssubject", "correlation"), sep="\t")
    for row in summary.itertuples():  # the summary is the mean of the pair rows of its ROI
        rows = pairs[(pairs.roi == row.roi) & (pairs.layer == row.layer)]
        # 1e-6, plus the rounding of two tables written with 6 significant digits
        assert abs(row.r_mean - rows.r.mean()) < 2e-6
        assert abs(row.r_min - rows.r.min()) < 2e-6 and abs(row.r_max - rows.r.max()) < 2e-6
    overlap = pd.read_csv(gpath(out, "rankconsistency", "overlap"), sep="\t")
    assert list(overlap.columns) == GROUP_OVERLAP.names
    top10 = overlap[overlap.top_percent == 10]
    # a shared planted decodability puts the same units on top in every subject
    assert (top10.overlap > 3 * top10.chance).all()
    for sidecar in ("crosssubject_correlation", "crosssubject_summary", "rankconsistency_overlap"):
        path = out / "group" / f"task-{TASK}_net-simulated_desc-{sidecar}.json"
        desc = json.loads(path.read_text())
        assert "r" in desc or "roi" in desc


def test_pair_statistics_handle_nan_units():
    a = np.array([0.1, 0.5, np.nan, 0.9, 0.3, 0.7])
    b = np.array([0.2, 0.4, 0.5, np.nan, 0.3, 0.8])
    c = a.copy()
    rows = pair_correlations({"a": a, "b": b, "c": c})
    ab = rows[0]
    ok = np.isfinite(a) & np.isfinite(b)
    assert ab["n_units"] == ok.sum() == 4
    assert ab["r"] == pytest.approx(np.corrcoef(a[ok], b[ok])[0, 1])
    ac = rows[1]
    assert ac["r"] == pytest.approx(1.0) and ac["spearman_r"] == pytest.approx(1.0)
    ov = top_overlap({"a": a, "c": c}, percents=(50,))
    assert ov[0]["overlap"] == 1.0 and ov[0]["n_top"] == 2 and ov[0]["chance"] == 0.4
