"""Group level on a simulated dataset with a planted, subject-shared decodability."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from itertools import combinations
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from bids_decode import cli
from bids_decode.features.h5file import FeatureFile
from bids_decode.group import steps as group
from bids_decode.outputs.paths import func_path
from bids_decode.reports import figures
from bids_decode.simulate import simulate_dataset

LAYERS = {"conv1": (5, 4, 6), "fc6": (64,), "fc8": (41,)}
ROIS = ["VC", "LVC"]
TASK = "perception"


def build_group_outputs(tmp_path_factory) -> dict:
    """Simulate 3 subjects, run the participant and group levels once per test session.

    Shared by test_report.py: the outputs live under the session's base temp folder, built by
    whichever test module asks first.
    """
    root = tmp_path_factory.getbasetemp() / "group_sim"
    root.mkdir(exist_ok=True)
    bids, out = root / "bids", root / "out"
    with FileLock(str(root / ".lock")):
        if not (root / "done").exists():
            sim = simulate_dataset(bids, n_subjects=3, n_train_runs=16, n_test_runs=3,
                                   layers=LAYERS, seed=3)
            base = [str(bids), str(out)]
            opts = ["--features", str(sim["features"]), "--roi", *ROIS, "--n-voxels", "100",
                    "--skip-bids-validation", "-q"]
            assert cli.main([*base, "participant", *opts]) == 0
            assert cli.main([*base, "group", "-q"]) == 0
            (root / "done").touch()
    return {"bids": bids, "out": out, "features": bids / "stimuli" / "features_simulated.h5",
            "truth": bids / "stimuli" / "truth_simulated.h5"}


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    return build_group_outputs(tmp_path_factory)


def _gpath(out: Path, desc: str, suffix: str) -> Path:
    return out / "group" / f"task-{TASK}_desc-{desc}_{suffix}.tsv"


def _accuracy(out: Path, sub: str, roi: str, layer: str) -> np.ndarray:
    path = func_path(out, sub, TASK, desc=roi, suffix="decoding", ext=".h5")
    with h5py.File(path, "r") as f:
        return f[layer]["accuracy"][()].astype(np.float64).ravel()


@pytest.mark.slow
def test_between_subject_r_matches_participant_files(outputs):
    """Every pair row, by its ROI and subject labels, equals a direct computation to 1e-6."""
    from scipy.stats import spearmanr

    out = outputs["out"]
    pairs = pd.read_csv(_gpath(out, "crosssubject", "correlation"), sep="\t",
                        dtype={"subject_a": str, "subject_b": str})
    assert list(pairs.columns) == group.PAIR_COLUMNS
    want_keys = sorted((roi, layer, a, b) for roi in ROIS for layer in LAYERS
                       for a, b in combinations(["01", "02", "03"], 2))
    got_keys = sorted(zip(pairs.roi, pairs.layer, pairs.subject_a, pairs.subject_b))
    assert got_keys == want_keys  # each (ROI, layer, pair) exactly once, labels as written
    for row in pairs.itertuples():
        xa = _accuracy(out, row.subject_a, row.roi, row.layer)
        xb = _accuracy(out, row.subject_b, row.roi, row.layer)
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
    summary = pd.read_csv(_gpath(out, "crosssubject", "summary"), sep="\t")
    assert list(summary.columns) == group.SUMMARY_COLUMNS
    assert list(zip(summary.roi, summary.layer)) == [(r, la) for r in ROIS for la in LAYERS]
    assert (summary.n_pairs == 3).all() and (summary.n_subjects == 3).all()
    assert (summary.r_min <= summary.r_mean).all() and (summary.r_mean <= summary.r_max).all()
    pairs = pd.read_csv(_gpath(out, "crosssubject", "correlation"), sep="\t")
    for row in summary.itertuples():  # the summary is the mean of the pair rows of its ROI
        rows = pairs[(pairs.roi == row.roi) & (pairs.layer == row.layer)]
        # 1e-6, plus the rounding of two tables written with 6 significant digits
        assert abs(row.r_mean - rows.r.mean()) < 2e-6
        assert abs(row.r_min - rows.r.min()) < 2e-6 and abs(row.r_max - rows.r.max()) < 2e-6
    overlap = pd.read_csv(_gpath(out, "rankconsistency", "overlap"), sep="\t")
    assert list(overlap.columns) == group.OVERLAP_COLUMNS
    top10 = overlap[overlap.top_percent == 10]
    # a shared planted decodability puts the same units on top in every subject
    assert (top10.overlap > 3 * top10.chance).all()
    for sidecar in ("crosssubject_correlation", "crosssubject_summary", "rankconsistency_overlap"):
        desc = json.loads((out / "group" / f"task-{TASK}_desc-{sidecar}.json").read_text())
        assert "r" in desc or "roi" in desc


@pytest.mark.slow
def test_averaged_subject_follows_planted_truth(outputs):
    out, avg = outputs["out"], outputs["out"] / "group"
    summary = pd.read_csv(func_path(avg, "Averaged", TASK, suffix="decoding", ext=".tsv"),
                          sep="\t", na_values="n/a")
    assert list(zip(summary.roi, summary.layer)) == [(r, la) for r in ROIS for la in LAYERS]
    with h5py.File(outputs["truth"], "r") as t:
        truth = {la: t["decodability"][la][()].ravel() for la in LAYERS}
    for roi in ROIS:
        path = func_path(avg, "Averaged", TASK, desc=roi, suffix="decoding", ext=".h5")
        with h5py.File(path, "r") as f:
            assert f.attrs["subject"] == "Averaged"
            for layer, shape in LAYERS.items():
                g = f[layer]
                assert g["decoded"].shape == (len(f["stimulus_name"]), *shape)
                acc = g["accuracy"][()].ravel().astype(np.float64)
                ok = np.isfinite(truth[layer])
                assert np.array_equal(np.isfinite(acc), ok)  # dead units scored NaN
                assert np.corrcoef(acc[ok], np.sqrt(truth[layer][ok]))[0, 1] > 0.8
                subs = [np.nanmean(_accuracy(out, s, roi, layer)) for s in ("01", "02", "03")]
                # averaging subjects' decoded features removes subject noise
                assert np.nanmean(acc) > np.mean(subs) - 0.01
                assert g["identification"].shape == g["pattern_r"].shape
                assert np.nanmean(g["identification"][()]) > 0.9
                assert g["rank"][()].min() == 1


@pytest.mark.slow
def test_averaging_one_subject_reproduces_its_scores(outputs):
    """The Averaged scoring path applied to one subject gives back its participant scores."""
    out = outputs["out"]
    path = func_path(out, "01", TASK, desc="VC", suffix="decoding", ext=".h5")
    with h5py.File(path, "r") as f, FeatureFile(outputs["features"]) as ff:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["stimulus_name"][()]]
        test_rows = ff.rows_for(names)
        ref_rows, _ = group.reference_rows(ff, test_rows)
        for layer in LAYERS:
            truth = group.read_true_layer(ff, layer, test_rows, ref_rows, mem_gb=0.001)
            dec = f[layer]["decoded"]
            sink = np.empty(dec.shape, dtype=np.float32)
            profile, pattern = group.average_layer([(dec, np.arange(len(names)))], truth, sink,
                                                   mem_gb=1e-6)  # tiny budget: many chunks
            np.testing.assert_allclose(profile.values, f[layer]["accuracy"][()].ravel(),
                                       atol=1e-5)
            res = pattern.finalize({})
            np.testing.assert_allclose(res.datasets["pattern_r"], f[layer]["pattern_r"][()],
                                       atol=1e-5)
            np.testing.assert_array_equal(sink, dec[()])


def _png_panels(png: bytes) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    desc = im.text.get("Description", "")
    return np.asarray(im.convert("RGB"), dtype=np.float64), desc.removeprefix(
        "panels: ").split("; ")


@pytest.mark.slow
def test_group_figures_one_panel_per_layer(outputs):
    fig_dir = outputs["out"] / "group" / "figures"
    expected = {f"task-{TASK}_desc-{r}_accuracy.png": list(LAYERS) for r in ROIS}
    expected[f"task-{TASK}_desc-VC_pairscatter.png"] = list(LAYERS)
    expected[f"task-{TASK}_desc-crosssubject_bars.png"] = ROIS
    expected[f"task-{TASK}_desc-roilayer_heatmap.png"] = [
        "mean unit accuracy", "mean between-subject r", "disattenuated between-subject r",
        "Averaged subject accuracy"]
    expected[f"task-{TASK}_desc-VC_averageddecoded.png"] = list(LAYERS)
    assert sorted(p.name for p in fig_dir.iterdir()) == sorted(expected)
    for name, panels in expected.items():
        pixels, titles = _png_panels((fig_dir / name).read_bytes())
        assert titles == panels, name
        assert pixels.std() > 10, f"{name} looks blank"
    html = (outputs["out"] / "group" / "report.html").read_text()
    assert html.count("<img ") == len(expected)
    assert "Averaged subject: decoded vs true values, VC" in html


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
    pixels, titles = _png_panels(figures.to_png(fig))
    assert titles == ["A", "B"] and pixels.std() > 10


def test_pair_statistics_handle_nan_units():
    a = np.array([0.1, 0.5, np.nan, 0.9, 0.3, 0.7])
    b = np.array([0.2, 0.4, 0.5, np.nan, 0.3, 0.8])
    c = a.copy()
    rows = group.pair_correlations({"a": a, "b": b, "c": c})
    ab = rows[0]
    ok = np.isfinite(a) & np.isfinite(b)
    assert ab["n_units"] == ok.sum() == 4
    assert ab["r"] == pytest.approx(np.corrcoef(a[ok], b[ok])[0, 1])
    ac = rows[1]
    assert ac["r"] == pytest.approx(1.0) and ac["spearman_r"] == pytest.approx(1.0)
    ov = group.top_overlap({"a": a, "c": c}, percents=(50,))
    assert ov[0]["overlap"] == 1.0 and ov[0]["n_top"] == 2 and ov[0]["chance"] == 0.4


def _copy_outputs(src: Path, dst: Path, subjects) -> Path:
    dst.mkdir()
    shutil.copy(src / "dataset_description.json", dst)
    for s in subjects:
        shutil.copytree(src / f"sub-{s}", dst / f"sub-{s}")
    return dst


@pytest.mark.slow
def test_fewer_than_two_subjects_is_a_clear_error(outputs, tmp_path, capsys):
    base = [str(outputs["bids"]), str(outputs["out"]), "group", "-q"]
    assert cli.main([*base, "--participant-label", "sub-02"]) == 66
    err = capsys.readouterr().err
    assert "at least two" in err and "sub-02" in err and "participant" in err
    alone = _copy_outputs(outputs["out"], tmp_path / "alone", ["01"])
    assert cli.main([str(outputs["bids"]), str(alone), "group", "-q"]) == 66
    assert "at least two" in capsys.readouterr().err
    assert cli.main([*base, "--participant-label", "07", "01"]) == 66
    assert "sub-07" in capsys.readouterr().err


@pytest.mark.slow
def test_mismatched_parameters_are_a_clear_error(outputs, tmp_path, capsys):
    odd = _copy_outputs(outputs["out"], tmp_path / "odd", ["01", "02"])
    side = func_path(odd, "02", TASK, desc="LVC", suffix="decoding", ext=".json")
    d = json.loads(side.read_text())
    d["Alpha"] = 10.0
    side.write_text(json.dumps(d))
    assert cli.main([str(outputs["bids"]), str(odd), "group", "-q"]) == 65
    err = capsys.readouterr().err
    assert "Alpha" in err and "sub-01=100.0" in err and "sub-02=10.0" in err
    assert "--participant-label" in err
    func_path(odd, "02", TASK, desc="VC", suffix="decoding", ext=".h5").unlink()
    assert cli.main([str(outputs["bids"]), str(odd), "group", "-q"]) == 65
    assert "ROIs" in capsys.readouterr().err
    assert not (odd / "group" / f"task-{TASK}_desc-crosssubject_correlation.tsv").exists()


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
    moved = _copy_outputs(outputs["out"], tmp_path / "moved", ["01", "02"])
    for side in moved.glob("sub-*/func/*_desc-*_decoding.json"):
        d = json.loads(side.read_text())
        d["FeaturesFile"] = str(tmp_path / "gone.h5")
        side.write_text(json.dumps(d))
    assert cli.main([str(outputs["bids"]), str(moved), "group", "-q"]) == 0
    assert (moved / "group" / f"task-{TASK}_desc-crosssubject_correlation.tsv").exists()
    assert not (moved / "group" / "sub-Averaged").exists()
    html = (moved / "group" / "report.html").read_text()
    assert "gone.h5" in html and "Averaged subject was not computed" in html
