"""The Encoding section of the subject report (``--encoding``), from the encoding outputs
only: the ROI x layer table of mean voxel accuracy, and per ROI its brain maps
(:mod:`bids_decode.outputs.brain_maps`) as slices."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bids_decode.outputs import brain_maps
from bids_decode.outputs import encoding as enc_outputs
from bids_decode.reports import figures
from bids_decode.reports.brain_figures import brain_slices
from bids_decode.reports.figures import ReportFigure
from bids_decode.reports.html import figure_html, note, table

LOGGER = logging.getLogger(__name__)


def encoding_section(output_dir: Path, subject: str, task: str, *, network: str) -> str | None:
    """The encoding models (``--encoding``): per-layer mean accuracy of each ROI, and per ROI
    its best-layer map and the accuracy map of its best layer; None without encoding files."""
    files = enc_outputs.find_encoding_files(output_dir, task, network).get(subject, {})
    if not files:
        return None
    tsv = enc_outputs.encoding_tsv(output_dir, subject, task, network=network)
    table_df = enc_outputs.ENCODING_SUMMARY.read(tsv) if tsv.is_file() else None
    figs, notes = [], []
    if table_df is not None:
        layers = list(dict.fromkeys(table_df["layer"].astype(str)))
        rois = list(dict.fromkeys(table_df["roi"].astype(str)))
        m = np.full((len(rois), len(layers)), np.nan)
        for _, r in table_df.iterrows():
            m[rois.index(str(r["roi"])), layers.index(str(r["layer"]))] = r["accuracy_mean"]
        figs.append(ReportFigure(
            "encoding-accuracy", "Encoding accuracy, ROI x layer",
            "Mean over the ROI's voxels of the encoding accuracy: Pearson r over the test "
            f"images between each voxel's predicted and measured response ({tsv.name}).",
            figures.to_png(figures.heatmaps({"mean voxel accuracy (r)": (m, rois, layers)}))))
    for roi, path in files.items():
        fig = _roi_map_figure(path, roi, table_df, network)
        if fig is None:
            notes.append(f"No brain maps of {roi}: its voxels are not on an image grid (e.g. "
                         "BData columns), or the maps were not written.")
        else:
            figs.append(fig)
    cols = ["roi", "layer", "relative_depth", "n_voxels", "accuracy_mean", "accuracy_median",
            "n_significant", "n_best"]
    tab = table(table_df, [c for c in cols if c in table_df.columns]) \
        if table_df is not None else note(f"No encoding table {tsv.name} among the outputs.")
    return tab + "".join(note(n) for n in notes) + "".join(map(figure_html, figs))


def _roi_map_figure(path: Path, roi: str, table_df, network: str) -> ReportFigure | None:
    """Slices of one ROI's best-layer map and of its best layer's accuracy map."""
    enc = enc_outputs.read_encoding(path)
    a = enc.attrs
    out_dir = Path(path).parents[2]
    paths = {s: brain_maps.brain_map_path(out_dir, str(a["subject"]), str(a["task"]), roi, s,
                                          network=network) for s in brain_maps.BRAIN_MAPS}
    if len(enc.grid_shape) != 3 or not all(p.is_file() for p in paths.values()):
        return None
    depth_img, depth_side = brain_maps.read_brain_map(paths["bestdepth"])
    r_img, _ = brain_maps.read_brain_map(paths["r"])
    rows = table_df[table_df["roi"].astype(str) == roi] if table_df is not None else None
    if rows is not None and len(rows) and np.isfinite(rows["accuracy_mean"]).any():
        best = str(rows.loc[rows["accuracy_mean"].idxmax(), "layer"])
    else:
        best = enc.layers[int(np.nanargmax(np.nanmean(enc.accuracy, axis=1)))]
    r = np.asarray(r_img.dataobj[..., enc.layers.index(best)], dtype=np.float64)
    lim = max(0.1, float(np.nanmax(np.abs(r), initial=0.0)))
    ticks = {float(enc_outputs.relative_depth(i, len(enc.layers))): la
             for i, la in enumerate(enc.layers)}
    fig = brain_slices({
        "best layer (significant voxels)": {
            "data": np.asarray(depth_img.dataobj, dtype=np.float64), "vmin": 0.0, "vmax": 1.0,
            "cmap": "viridis", "label": "best layer", "ticks": ticks},
        f"accuracy of {best}": {"data": r, "vmin": -lim, "vmax": lim, "cmap": "RdBu_r",
                                "label": "r"},
    }, enc.volume(np.ones(len(enc.voxel_index)), fill=0) > 0, enc.grid_affine,
        title=f"ROI {roi}")
    n_sig = depth_side.get("NumberOfSignificantVoxels")
    return ReportFigure(
        f"brainmap-{roi}", f"Brain maps: {roi}",
        "Slices in the space of the ROI masks, across the ROI's widest axis (grey: the ROI's "
        f"{len(enc.voxel_index)} voxels). Top: the relative depth of each voxel's best layer, "
        f"for the {n_sig} voxels whose best accuracy is significant "
        f"({depth_side.get('SignificanceRule', '')}). "
        f"Bottom: the encoding accuracy (Pearson r) of {best}, the layer with the highest mean "
        f"accuracy in this ROI. Files: {paths['bestdepth'].name}, {paths['r'].name}.",
        figures.to_png(fig))
