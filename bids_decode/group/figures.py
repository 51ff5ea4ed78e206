"""Group level, step 7: the figures of the group report (PNG bytes with captions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_decode.group.averaged import averaged_dir
from bids_decode.group.io import GroupPlan
from bids_decode.group.stats import LayerResult, nanmean
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import AVERAGED
from bids_decode.reports import figures
from bids_decode.reports.figures import ReportFigure
from bids_decode.reports.subject import decoded_true_figures, subject_files


def group_figures(plan: GroupPlan, results: dict[tuple[str, str], LayerResult], task: str
                  ) -> list[ReportFigure]:
    """The group figures of one network: distributions per ROI, a subject-pair scatter, pair
    r, heat map."""
    prefix = outputs.group_prefix(task, plan.network)
    figs = []
    for roi in plan.rois:
        fig = figures.accuracy_violins(
            {layer: results[roi, layer].distributions for layer in plan.layers},
            title=f"Unit accuracy, ROI {roi}")
        figs.append(ReportFigure(
            f"{prefix}_desc-{roi}_accuracy.png", f"Distribution of unit accuracy: {roi}",
            "Per layer, the distribution over units of the decoding accuracy (Pearson r of "
            "decoded and true values over the test images) for each subject and for the "
            "Averaged subject, over every unit with a finite accuracy. Violins: smoothed "
            "density; boxes: median and quartiles, whiskers to the furthest unit within 1.5 "
            "interquartile ranges.",
            figures.to_png(fig)))
    a, b = plan.subjects[0].label, plan.subjects[1].label
    roi0 = plan.rois[0]
    fig = figures.accuracy_scatter({layer: results[roi0, layer].scatter for layer in plan.layers},
                                   xlabel=f"sub-{a} accuracy", ylabel=f"sub-{b} accuracy",
                                   title=f"Unit accuracies of sub-{a} and sub-{b}, ROI {roi0}")
    figs.append(ReportFigure(
        f"{prefix}_desc-{roi0}_pairscatter.png", f"Unit accuracies of two subjects: {roi0}",
        f"Each point is a unit: its accuracy in sub-{a} (x) and sub-{b} (y); r is the Pearson "
        f"correlation over every unit finite in both (a random subset of at most "
        f"{figures.MAX_SCATTER_POINTS} units is drawn).", figures.to_png(fig)))
    fig = figures.pair_bars({roi: {layer: [p["r"] for p in results[roi, layer].pairs]
                                   for layer in plan.layers} for roi in plan.rois},
                            title="Between-subject correlation of unit accuracies")
    figs.append(ReportFigure(
        f"{prefix}_desc-crosssubject_bars.png", "Between-subject consistency per layer",
        "Bars: mean over subject pairs of the Pearson r between two subjects' unit accuracies; "
        "points: the individual pairs.", figures.to_png(fig)))
    mean_acc = np.array([[np.nanmean(list(results[r, la].subject_means.values()))
                          for la in plan.layers] for r in plan.rois])
    mean_r = np.array([[nanmean([p["r"] for p in results[r, la].pairs]) for la in plan.layers]
                       for r in plan.rois])
    panels = {"mean unit accuracy": (mean_acc, plan.rois, plan.layers),
              "mean between-subject r": (mean_r, plan.rois, plan.layers)}
    mean_dis = np.array([[nanmean([p.get("r_disattenuated", np.nan)
                                    for p in results[r, la].pairs]) for la in plan.layers]
                         for r in plan.rois])
    if np.isfinite(mean_dis).any():
        panels["disattenuated between-subject r"] = (mean_dis, plan.rois, plan.layers)
    if all(results[r, la].averaged for r in plan.rois for la in plan.layers):
        panels["Averaged subject accuracy"] = (
            np.array([[results[r, la].averaged["profile_r_mean"] for la in plan.layers]
                      for r in plan.rois]), plan.rois, plan.layers)
    fig = figures.heatmaps(panels, title="ROI x layer")
    figs.append(ReportFigure(
        f"{prefix}_desc-roilayer_heatmap.png", "ROI x layer summary",
        "Mean unit accuracy (averaged over subjects), mean between-subject r, the same "
        "corrected for the subjects' split-half reliabilities (r_disattenuated) and, when "
        "computed, the mean unit accuracy of the Averaged subject.", figures.to_png(fig)))
    return figs


def averaged_decoded_figure(out_dir: Path, task: str, roi: str, network: str) -> list:
    """Decoded vs true values of the Averaged subject's best and median units (one ROI).

    The full subject report of the Averaged subject (every ROI) is
    ``write_subject_report(OUTPUT_DIR / "group", "Averaged", task, network=N)``
    (:mod:`bids_decode.reports`); the group level draws one ROI to stay fast.
    """
    prefix = outputs.group_prefix(task, network)
    sf = subject_files(averaged_dir(out_dir), AVERAGED, task, network=network)
    figs, _ = decoded_true_figures(sf, rois=[roi])
    for f in figs:
        f.name = f"{prefix}_desc-{roi}_averageddecoded.png"
        f.title = f"Averaged subject: decoded vs true values, {roi}"
    return figs
