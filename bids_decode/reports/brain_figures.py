"""Slices of voxel maps for the reports (nilearn's plotting on an Agg figure of
:func:`~bids_decode.reports.figures.new_figure`; no anatomical background is among the outputs,
so the ROI is drawn in grey under the maps)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from bids_decode.reports.figures import _suptitle, new_figure

LOGGER = logging.getLogger(__name__)


def roi_cuts(roi: np.ndarray, affine: np.ndarray, n_cuts: int) -> tuple[str, list[float]]:
    """The world axis ("x", "y" or "z") across which the ROI is widest (most voxels per
    slice), and up to ``n_cuts`` cuts (mm) evenly spread over the ROI's slices along it.

    Parameters
    ----------
    roi : ndarray of shape (X, Y, Z), bool
    affine : ndarray of shape (4, 4)
    """
    ijk = np.argwhere(np.asarray(roi, dtype=bool))
    if not len(ijk):
        raise ValueError("the ROI has no voxel to cut through")
    world = np.round(ijk @ np.asarray(affine)[:3, :3].T + affine[:3, 3], 3)
    slices = [np.unique(world[:, k]) for k in range(3)]
    axis = int(np.argmin([len(s) for s in slices]))  # fewest slices: most voxels per slice
    pos = slices[axis]
    pick = np.unique(np.linspace(0, len(pos) - 1, min(n_cuts, len(pos))).round().astype(int))
    return "xyz"[axis], [float(v) for v in pos[pick]]


def brain_slices(panels: Mapping[str, dict], roi: np.ndarray, affine: np.ndarray, *,
                 title: str = "", n_cuts: int = 6):
    """Slices of voxel maps (nilearn), one panel per map, the ROI in light grey.

    Parameters
    ----------
    panels : mapping panel title -> dict
        ``data``: ndarray of shape (X, Y, Z), NaN where empty; ``vmin``, ``vmax``: colour
        limits; ``cmap``: colour map name; ``label``: colour-bar label; optional ``ticks``:
        mapping value -> tick label (e.g. layer depths -> layer names).
    roi : ndarray of shape (X, Y, Z), bool
        The ROI's voxels, drawn grey under the maps (no anatomical background is among the
        outputs); the slices are cut through it, across its widest axis (:func:`roi_cuts`).
    affine : ndarray of shape (4, 4)
        Voxel-to-world affine of the grid.
    """
    import nibabel as nib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from nilearn import plotting

    names = list(panels)
    fig, axes = new_figure(len(names), ncols=1, panel_size=(7.6, 1.7),
                           margins=(0.1, 1.5, 0.1, 0.55 if title else 0.3), gaps=(0, 0.45))
    roi_img = nib.Nifti1Image(np.asarray(roi, dtype=np.float32), affine)
    direction, cuts = roi_cuts(roi, affine, n_cuts)
    for ax, name in zip(axes, names):
        p = panels[name]
        lo, hi = float(p["vmin"]), float(p["vmax"])
        data = np.asarray(p["data"], dtype=np.float64)
        # nilearn's threshold hides |value| below it: shift the range to [1, 2 + ...] so that
        # every finite value shows (0 = first layer, r = 0) and NaN (set to 0) stays empty
        shifted = np.where(np.isfinite(data), np.clip(data, lo, hi) - lo + 1.0, 0.0)
        disp = plotting.plot_img(roi_img, display_mode=direction, cut_coords=cuts, figure=fig,
                                 axes=ax, cmap=ListedColormap(["#d4d4d4"]), threshold=0.5,
                                 colorbar=False, black_bg=False, draw_cross=False,
                                 annotate=False)
        if (shifted > 0).any():
            disp.add_overlay(nib.Nifti1Image(shifted.astype(np.float32), affine),
                             cmap=p["cmap"], vmin=1.0, vmax=hi - lo + 1.0, threshold=0.5)
        else:
            ax.text(0.5, 0.5, "no voxel", transform=ax.transAxes, ha="center", va="center")
        disp.annotate(left_right=False, positions=True, size=7)
        for other in fig.axes:
            if other is not ax and other.get_label() == "" and other not in axes:
                other.set_label("<slice>")  # nilearn's own axes, one per cut
        ax.set_title(name, fontsize=10, y=1.0)
        box = ax.get_position()
        cax = fig.add_axes((box.x1 + 0.12 / fig.get_figwidth(), box.y0 + 0.1 * box.height,
                            0.15 / fig.get_figwidth(), 0.8 * box.height), label="<colorbar>")
        cbar = fig.colorbar(ScalarMappable(Normalize(lo, hi), p["cmap"]), cax=cax)
        if p.get("ticks"):
            cbar.set_ticks(list(p["ticks"]), labels=list(p["ticks"].values()), fontsize=7)
        cbar.set_label(p.get("label", ""), fontsize=8)
    _suptitle(fig, title)
    return fig
