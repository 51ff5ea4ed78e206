"""Figures of the subject and group reports (matplotlib, Agg canvas, no pyplot state).

Every plotting function takes plain arrays and returns a :class:`matplotlib.figure.Figure`
drawn on an Agg canvas; :func:`to_png` turns it into PNG bytes. Nothing here touches the global
pyplot state or the backend at import, so reports can be drawn in worker processes and tests.

Each PNG carries its panel titles in its ``Description`` text chunk (``panels: a; b; c``), so
tests and scripts can check which panels an image holds without looking at pixels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: At most this many points per scatter panel (r is computed over every unit).
MAX_SCATTER_POINTS = 5_000
PANEL_SIZE = (2.6, 2.3)
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass
class ReportFigure:
    """A figure of a report (subject or group): file-like name, title, caption, PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def new_figure(n_panels: int, *, ncols: int | None = None, panel_size=PANEL_SIZE,
               sharey: bool = False, margins=(0.75, 0.25, 0.95, 0.55), gaps=(0.45, 0.85)):
    """A figure with ``n_panels`` axes on a grid (extra grid cells hidden).

    The layout is fixed in inches (``margins`` = left, right, bottom, top; ``gaps`` = between
    columns, between rows), which is much faster than matplotlib's layout engines.

    Returns
    -------
    fig : Figure
    axes : list of Axes, length n_panels
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = max(1, int(n_panels))
    ncols = min(n_panels, ncols or min(n_panels, 4))
    nrows = math.ceil(n_panels / ncols)
    left, right, bottom, top = margins
    wgap, hgap = gaps
    width = left + right + ncols * panel_size[0] + (ncols - 1) * wgap
    height = bottom + top + nrows * panel_size[1] + (nrows - 1) * hgap
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "bottom": bottom / height,
        "top": 1 - top / height, "wspace": wgap / panel_size[0], "hspace": hgap / panel_size[1]})
    axes = list(grid.ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _suptitle(fig, title: str) -> None:
    if title:
        fig.suptitle(title, y=1 - 0.12 / fig.get_figheight(), va="top")


def panel_titles(fig) -> list[str]:
    """Titles of the visible panels of ``fig`` (colour bars and other helper axes, labelled
    ``<...>``, excluded)."""
    return [ax.get_title() for ax in fig.axes
            if ax.get_visible() and not ax.get_label().startswith("<")]


def to_png(fig, *, dpi: int = 96) -> bytes:
    """Render ``fig`` to PNG bytes; the panel titles go into the ``Description`` chunk."""
    buf = io.BytesIO()
    desc = "panels: " + "; ".join(panel_titles(fig))
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Description": desc, "Software": None})
    return buf.getvalue()


def _subsample(values: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if values.size <= n:
        return values
    rng = np.random.default_rng(seed)
    return values[np.sort(rng.choice(values.size, n, replace=False))]


def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def distribution(values, n_grid: int = 100) -> dict:
    """Summary of a distribution for a violin and a box, from every finite value.

    The density is a Gaussian-smoothed histogram (Scott's bandwidth), so it costs O(n) and the
    values can be dropped after summarising (the group level streams layers).

    Returns
    -------
    dict with n, grid, density (max 1), med, q1, q3, whislo, whishi (Tukey whiskers), mean;
    ``n == 0`` when no value is finite.
    """
    v = _finite(values)
    if v.size == 0:
        return {"n": 0}
    q0, q1, med, q3, q4 = np.percentile(v, [0, 25, 50, 75, 100])
    iqr = q3 - q1
    lo_w = v[v >= q1 - 1.5 * iqr].min()
    hi_w = v[v <= q3 + 1.5 * iqr].max()
    out = {"n": int(v.size), "med": med, "q1": q1, "q3": q3, "whislo": lo_w, "whishi": hi_w,
           "mean": float(v.mean()), "fliers": []}
    sd = v.std()
    bw = max(1.06 * sd * v.size ** -0.2, 1e-3 * max(q4 - q0, 1e-3))
    lo, hi = q0 - 3 * bw, q4 + 3 * bw
    n_bins = 512
    hist, edges = np.histogram(v, bins=n_bins, range=(lo, hi))
    width = (hi - lo) / n_bins
    k = np.arange(-int(np.ceil(4 * bw / width)), int(np.ceil(4 * bw / width)) + 1) * width
    dens = np.convolve(hist, np.exp(-0.5 * (k / bw) ** 2), mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    grid = np.linspace(q0, q4, n_grid) if q4 > q0 else np.array([q0 - bw, q0 + bw])
    d = np.interp(grid, centres, dens)
    out["grid"], out["density"] = grid, d / d.max() if d.max() > 0 else d
    return out


def accuracy_violins(data: Mapping[str, Mapping[str, np.ndarray | dict]], *, title: str = "",
                     ylabel: str = "unit accuracy (Pearson r)"):
    """Distribution of unit accuracy: one panel per layer, one violin (+ box) per group.

    Parameters
    ----------
    data : mapping layer -> mapping group label -> values or :func:`distribution` summary
        Groups are subjects (group report) or ROIs (subject report). Values are arrays of
        shape (n_units,); NaN units are left out. Every unit is used.
    """
    layers = list(data)
    n_groups = max(len(g) for g in data.values())
    fig, axes = new_figure(len(layers), ncols=min(len(layers), 4), sharey=True,
                           panel_size=(max(1.8, 0.42 * n_groups + 0.6), 2.3),
                           margins=(0.75, 0.2, 0.85 if n_groups > 3 else 0.45, 0.55))
    for ax, layer in zip(axes, layers):
        groups = list(data[layer])
        boxes = []
        for i, g in enumerate(groups):
            st = data[layer][g]
            st = st if isinstance(st, dict) else distribution(st)
            if not st["n"]:
                continue
            half = 0.4 * st["density"]
            ax.fill_betweenx(st["grid"], i - half, i + half, color=COLORS[i % len(COLORS)],
                             alpha=0.45, linewidth=0)
            boxes.append((i, st))
        if boxes:  # boxes drawn in three batched artists (bxp costs ~30 ms per box)
            pos = np.array([i for i, _ in boxes], dtype=float)
            get = {k: np.array([st[k] for _, st in boxes]) for k in
                   ("q1", "q3", "med", "whislo", "whishi")}
            ax.vlines(pos, get["whislo"], get["whishi"], color="k", linewidth=0.8)
            ax.bar(pos, get["q3"] - get["q1"], bottom=get["q1"], width=0.18, color="w",
                   edgecolor="k", linewidth=0.8, zorder=2.5)
            ax.hlines(get["med"], pos - 0.09, pos + 0.09, color="k", linewidth=1.5, zorder=3)
        ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
        ax.set_xticks(range(len(groups)), groups, rotation=45 if len(groups) > 3 else 0,
                      fontsize=8, ha="right" if len(groups) > 3 else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(layer, fontsize=10, y=1.0)
    axes[0].set_ylabel(ylabel)
    _suptitle(fig, title)
    return fig


def accuracy_scatter(data: Mapping[str, tuple[np.ndarray, np.ndarray]], *, xlabel: str,
                     ylabel: str, title: str = "", max_points: int = MAX_SCATTER_POINTS):
    """Unit accuracies of two subjects: one panel per layer, Pearson r in the panel.

    Parameters
    ----------
    data : mapping layer -> (acc_a, acc_b), each ndarray of shape (n_units,)
        Units finite in both are shown (a random subset of at most ``max_points``) and used for r.
    """
    layers = list(data)
    fig, axes = new_figure(len(layers), ncols=min(len(layers), 4), panel_size=(2.3, 2.3),
                           margins=(0.7, 0.2, 0.55, 0.55), gaps=(0.75, 0.75))
    for ax, layer in zip(axes, layers):
        a = np.asarray(data[layer][0], dtype=np.float64).ravel()
        b = np.asarray(data[layer][1], dtype=np.float64).ravel()
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        r = float(np.corrcoef(a, b)[0, 1]) if a.size > 2 and a.std() > 0 and b.std() > 0 \
            else float("nan")
        idx = _subsample(np.arange(a.size), max_points)
        dense = idx.size > 1000
        ax.scatter(a[idx], b[idx], s=3 if dense else 10, alpha=0.35 if dense else 0.7,
                   color=COLORS[0], rasterized=True, linewidths=0)
        lo = min(-0.2, float(np.min(a, initial=0)), float(np.min(b, initial=0)))
        hi = max(1.0, float(np.max(a, initial=0)), float(np.max(b, initial=0)))
        ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.6)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(layer, fontsize=10, y=1.0)
        ax.text(0.04, 0.96, f"r = {r:.2f}\nn = {a.size}", transform=ax.transAxes, va="top",
                fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    _suptitle(fig, title)
    return fig


def pair_bars(data: Mapping[str, Mapping[str, Sequence[float]]], *, title: str = "",
              ylabel: str = "between-subject r"):
    """Mean between-subject r per layer (bars) with each subject pair as a point.

    Parameters
    ----------
    data : mapping panel (ROI) -> mapping layer -> r of each subject pair
    """
    panels = list(data)
    n_layers = max(len(v) for v in data.values())
    fig, axes = new_figure(len(panels), ncols=min(len(panels), 3), sharey=True,
                           panel_size=(max(2.2, 0.38 * n_layers + 0.6), 2.3),
                           margins=(0.7, 0.2, 0.85, 0.55), gaps=(0.3, 1.05))
    rng = np.random.default_rng(0)
    for ax, panel in zip(axes, panels):
        layers = list(data[panel])
        for i, layer in enumerate(layers):
            r = np.asarray(data[panel][layer], dtype=np.float64)
            r = r[np.isfinite(r)]
            if r.size:
                ax.bar(i, r.mean(), color=COLORS[0], alpha=0.5, width=0.7)
                ax.scatter(i + rng.uniform(-0.15, 0.15, r.size), r, s=9, color="k", zorder=3,
                           linewidths=0)
        ax.axhline(0.0, color="0.6", linewidth=0.6)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=10, y=1.0)
    axes[0].set_ylabel(ylabel)
    lo = min(0.0, *(float(np.nanmin(np.asarray(v, dtype=float), initial=0.0))
                    for d in data.values() for v in d.values() if len(v)))
    axes[0].set_ylim(lo - 0.02, 1.0)
    _suptitle(fig, title)
    return fig


def heatmaps(data: Mapping[str, tuple[np.ndarray, Sequence[str], Sequence[str]]], *,
             title: str = "", vmin: float | None = None, vmax: float | None = None,
             cmap: str = "viridis"):
    """ROI x layer heat maps, one panel per measure, each cell annotated with its value.

    Parameters
    ----------
    data : mapping measure title -> (matrix of shape (n_rois, n_layers), roi names, layer names)
    vmin, vmax : float, optional
        Colour limits shared by all panels (default: each panel's own finite range).
    """
    names = list(data)
    n_rois = max(len(v[1]) for v in data.values())
    n_layers = max(len(v[2]) for v in data.values())
    fig, axes = new_figure(len(names), ncols=min(len(names), 3),
                           panel_size=(0.55 * n_layers + 1.0, 0.35 * n_rois + 0.6),
                           margins=(0.75, 0.1, 0.85, 0.55), gaps=(0.95, 1.15))
    for ax, name in zip(axes, names):
        m, rois, layers = data[name]
        m = np.asarray(m, dtype=np.float64)
        fin = m[np.isfinite(m)]
        lo = vmin if vmin is not None else (float(fin.min()) if fin.size else 0.0)
        hi = vmax if vmax is not None else (float(fin.max()) if fin.size else 1.0)
        if hi <= lo:
            hi = lo + 1e-6
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for (i, j), v in np.ndenumerate(m):
            txt = "n/a" if not np.isfinite(v) else f"{v:.2f}"
            shade = (v - lo) / (hi - lo) if np.isfinite(v) else 1.0
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="w" if shade < 0.55 else "k")
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(rois)), rois, fontsize=8)
        ax.set_title(name, fontsize=10, y=1.0)
        fig.colorbar(im, ax=ax, shrink=0.8)
    _suptitle(fig, title)
    return fig


def decoded_vs_true(data: Mapping[str, Sequence[tuple[str, np.ndarray, np.ndarray]]], *,
                    title: str = ""):
    """Decoded against true values over the test images: one panel per layer.

    Parameters
    ----------
    data : mapping layer -> list of (label, true, decoded), arrays of shape (n_test,)
        Typically the best and a median unit of the layer; r is shown in the legend.
    """
    layers = list(data)
    fig, axes = new_figure(len(layers), ncols=min(len(layers), 4), panel_size=(2.3, 2.3),
                           margins=(0.7, 0.2, 0.55, 0.55), gaps=(0.75, 0.75))
    for ax, layer in zip(axes, layers):
        for k, (label, true, dec) in enumerate(data[layer]):
            t = np.asarray(true, dtype=np.float64)
            d = np.asarray(dec, dtype=np.float64)
            ok = np.isfinite(t) & np.isfinite(d)
            r = float(np.corrcoef(t[ok], d[ok])[0, 1]) if ok.sum() > 2 and t[ok].std() > 0 \
                and d[ok].std() > 0 else float("nan")
            ax.scatter(t, d, s=10, alpha=0.7, color=COLORS[k % len(COLORS)], linewidths=0,
                       label=f"{label} (r={r:.2f})")
        ax.set_title(layer, fontsize=10, y=1.0)
        ax.set_xlabel("true value", fontsize=8)
        ax.set_ylabel("decoded value", fontsize=8)
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    _suptitle(fig, title)
    return fig


def roi_timecourses(timecourses: Mapping[str, np.ndarray], tr: float, *,
                    onsets: Sequence[float] = (), durations: Sequence[float] = (),
                    title: str = ""):
    """Mean ROI signal of one run with the stimulus blocks shaded: one panel per ROI.

    Parameters
    ----------
    timecourses : mapping ROI -> ndarray of shape (n_vols,)
    tr : float
        Repetition time (s); the x axis is in seconds.
    onsets, durations : sequences of float
        Stimulus blocks (s).
    """
    rois = list(timecourses)
    fig, axes = new_figure(len(rois), ncols=1, panel_size=(8.0, 1.4),
                           margins=(0.8, 0.2, 0.55, 0.45 if title else 0.3), gaps=(0, 0.4))
    for ax, roi in zip(axes, rois):
        y = np.asarray(timecourses[roi], dtype=np.float64)
        t = np.arange(y.size) * tr
        for on, du in zip(onsets, durations):
            ax.axvspan(on, on + du, color=COLORS[1], alpha=0.18, linewidth=0)
        ax.plot(t, y, color=COLORS[0], linewidth=0.9)
        ax.set_title(roi, fontsize=10, loc="left", y=1.0)
        ax.set_ylabel("signal", fontsize=8)
    axes[-1].set_xlabel("time (s); shaded: stimulus blocks")
    _suptitle(fig, title)
    return fig


def sample_counts(counts: Mapping[str, np.ndarray], *, title: str = ""):
    """Samples per image for each split: one panel per split (images sorted by count).

    Parameters
    ----------
    counts : mapping split name -> ndarray of shape (n_images,), int
    """
    splits = list(counts)
    fig, axes = new_figure(len(splits), ncols=len(splits), panel_size=(3.4, 2.0),
                           margins=(0.7, 0.2, 0.55, 0.45 if title else 0.3), gaps=(0.7, 0.7))
    for k, (ax, split) in enumerate(zip(axes, splits)):
        c = np.sort(np.asarray(counts[split]).ravel())[::-1]
        ax.bar(np.arange(c.size), c, width=1.0, color=COLORS[k % len(COLORS)], linewidth=0)
        ax.set_title(f"{split} ({c.size} images, {int(c.sum())} samples)", fontsize=9, y=1.0)
        ax.set_xlabel("image (sorted)", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
    _suptitle(fig, title)
    return fig

