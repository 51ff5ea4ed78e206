"""Self-contained HTML reports (figures embedded as base64 PNG, inline CSS, no scripts).

``write_subject_report`` makes ``OUTPUT_DIR/sub-<L>.html`` from the participant outputs only;
``write_group_report`` makes ``OUTPUT_DIR/group/report.html`` from the group level's tables and
figures. Both open offline in any browser. What each part shows: docs/outputs.md.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bids_decode._version import __version__
from bids_decode.errors import MissingInputError
from bids_decode.outputs import derivatives
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import SubjectOutputs, as_str
from bids_decode.reports import figures
from bids_decode.reports.figures import ReportFigure

LOGGER = logging.getLogger(__name__)

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
line-height:1.45;background:#fff}
header{background:#23395d;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:1.5em} header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 28px;background:#eef1f6;border-bottom:1px solid #d5dbe5;font-size:.92em}
nav a{margin-right:14px;color:#23395d}
main{padding:8px 28px 40px;max-width:1400px}
h2{border-bottom:2px solid #23395d;padding-bottom:3px;margin-top:34px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.88em}
th,td{border:1px solid #ccd3df;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:14px 0 22px} figure img{max-width:100%;height:auto;border:1px solid #e3e6ec}
figcaption{font-size:.9em;color:#444;max-width:1000px}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 12px;margin:8px 0}
.warn{background:#fdecea;border-left:4px solid #d33;padding:6px 12px;margin:8px 0}
.cite{background:#f4f6f9;border-left:4px solid #23395d;padding:8px 14px;max-width:1000px}
code{background:#f1f1f1;padding:0 3px}
"""


# --------------------------------------------------------------------------- HTML building

def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "—"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) if v else "—"
    return "—" if v is None or v == "" else str(v)


def table(rows: Sequence[Mapping] | pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (or a DataFrame); numbers right-aligned, 3 decimals."""
    if isinstance(rows, pd.DataFrame):
        columns = list(columns or rows.columns)
        rows = rows.to_dict("records")
    rows = list(rows)
    if not rows:
        return "<p><em>(none)</em></p>"
    columns = list(columns or rows[0].keys())
    out = ["<table><thead><tr>", *(f"<th>{esc(c)}</th>" for c in columns), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for c in columns:
            v = r.get(c)
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            out.append(f"<td{' class=num' if num else ''}>{esc(_fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv_table(items: Mapping) -> str:
    return table([{"item": k, "value": _fmt(v)} for k, v in items.items()], ["item", "value"])


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def figure_html(fig: ReportFigure) -> str:
    return (f'<figure id="{esc(fig.name)}">{img(fig.png, fig.title)}'
            f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>")


def note(text: str, cls: str = "note") -> str:
    return f'<div class="{cls}">{esc(text)}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A complete HTML page; ``sections`` are (anchor, heading, body html)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{b}</section>'
                   for a, h, b in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def _stamp() -> str:
    return f"bids_decode {__version__}, {time.strftime('%Y-%m-%d %H:%M')}"


# ------------------------------------------------------------------------- reading outputs

#: The outputs of one subject, as :func:`bids_decode.outputs.schema.read_subject` reads them.
SubjectFiles = SubjectOutputs


def subject_files(output_dir: Path, subject: str, task: str) -> SubjectOutputs:
    """One subject's outputs (:func:`bids_decode.outputs.schema.read_subject`); the summary table
    must be there (the report is made from it)."""
    output_dir = Path(output_dir)
    tsv = outputs.summary_tsv(output_dir, subject, task)
    if not tsv.is_file():
        raise MissingInputError(
            f"No participant outputs of sub-{subject} for task '{task}' in {output_dir} (no "
            f"{tsv.name}); the report is made from them. Run the participant level first."
        )
    return outputs.read_subject(output_dir, subject, task)


# ---------------------------------------------------------------------- subject sections

def inputs_section(sf: SubjectFiles) -> str:
    side = sf.first_sidecar
    samples = side.get("Samples") or sf.config.get("provenance", {}).get("samples", {})
    parts = []
    runs = samples.get("runs_per_session", {})
    parts.append("<h3>Runs per session</h3>" + (table(
        [{"session": k, "runs": v} for k, v in runs.items()]) if runs else
        "<p><em>not recorded</em></p>"))
    split = {
        "training runs": samples.get("n_train_runs"),
        "training samples (blocks)": samples.get("n_train_samples"),
        "test runs": samples.get("n_test_runs"),
        "test blocks": samples.get("n_test_blocks"),
        "test images (blocks averaged per image)": samples.get("n_test_images"),
        "one-back repeats dropped": samples.get("n_repeats_dropped"),
        "voxels with non-finite values (excluded)": samples.get("n_nonfinite_voxels"),
        "repetition time (s)": side.get("RepetitionTime"),
        "haemodynamic shift (s)": side.get("HaemodynamicShift"),
        "training sessions": side.get("TrainSession"),
        "test sessions": side.get("TestSession"),
    }
    parts.append("<h3>Samples</h3>" + kv_table(split))
    parts.append("<h3>Voxels per ROI</h3>" + table([
        {"ROI": roi, "voxels": s.get("NumberOfVoxels"),
         "voxels selected per unit": s.get("VoxelsSelectedPerUnit"),
         "mask files": len(s.get("MaskFiles", []))} for roi, s in sf.sidecars.items()]))
    fattrs = side.get("FeaturesAttributes", {})
    feat = {
        "features file": side.get("FeaturesFile") or sf.config.get("features"),
        "network": fattrs.get("network", sf.config.get("network")),
        "weights": fattrs.get("weights", sf.config.get("weights")),
        "weights SHA-256": fattrs.get("weights_sha256"),
        "preprocessing": fattrs.get("preprocessing"),
        "layers": side.get("Layers", sf.layers),
    }
    parts.append("<h3>Features</h3>" + kv_table({k: v for k, v in feat.items() if v is not None}))
    return "".join(parts)


def qc_figures(sf: SubjectFiles) -> tuple[list[ReportFigure], list[str]]:
    """Sample-quality figures from ``*_qc.h5``; (figures, notes)."""
    if not sf.qc.is_file():
        return [], [f"No sample-quality file ({sf.qc.name}) among the outputs; this version of "
                    "the participant level does not write it, so the ROI time course and the "
                    "sample counts are not shown."]
    out = []
    with h5py.File(sf.qc, "r") as f:
        tr = float(f.attrs.get("tr", 1.0))
        run = as_str(f.attrs.get("run", "the first training run"))
        if "timecourse" in f and len(f["timecourse"]):
            tcs = {roi: f["timecourse"][roi][()] for roi in f["timecourse"]}
            order = [r for r in sf.h5 if r in tcs] + [r for r in tcs if r not in sf.h5]
            blocks = f.get("blocks")
            on = blocks["onset"][()] if blocks is not None else ()
            du = blocks["duration"][()] if blocks is not None else ()
            fig = figures.roi_timecourses({r: tcs[r] for r in order}, tr, onsets=on,
                                          durations=du)
            out.append(ReportFigure(
                "timecourse", f"Mean ROI signal of {run}",
                "Mean over the ROI's voxels of the BOLD signal (as loaded) of one run; shaded: "
                "the stimulus blocks of its events. Blocks should line up with rises of the "
                "signal a few seconds later.", figures.to_png(fig)))
        counts = {}
        for key, label in (("train_counts", "training"), ("test_counts", "test")):
            if key in f:
                counts[label] = f[key]["count"][()]
        if counts:
            out.append(ReportFigure(
                "counts", "Samples per image",
                "Number of samples (blocks) of each image in the training and test splits, "
                "images sorted by count. ds001246 shows each training image once (1 sample "
                "per block) and each test image about 35 times (averaged per image).",
                figures.to_png(figures.sample_counts(counts))))
    return out, []


def accuracy_figures(sf: SubjectFiles) -> list[ReportFigure]:
    """Violins of unit accuracy (panel per layer, violin per ROI) and the ROI x layer maps."""
    layers = sf.layers
    data: dict[str, dict[str, np.ndarray]] = {la: {} for la in layers}
    for roi, path in sf.h5.items():
        with h5py.File(path, "r") as f:
            for la in layers:
                if la in f:
                    acc = f[la]["accuracy"][()].ravel()
                    data[la][roi] = figures.distribution(acc)
    out = [ReportFigure(
        "accuracy", "Distribution of unit accuracy",
        "Per layer, the distribution over units of the decoding accuracy (Pearson r between "
        "decoded and true values over the test images) for each ROI, over every unit with a "
        "finite accuracy. Violins: smoothed density; boxes: median and quartiles, whiskers to "
        "the furthest unit within 1.5 interquartile ranges.",
        figures.to_png(figures.accuracy_violins(data)))]
    s = sf.summary
    rois = list(sf.h5) or list(dict.fromkeys(s["roi"].astype(str)))

    def matrix(col):
        m = np.full((len(rois), len(layers)), np.nan)
        for _, r in s.iterrows():
            if str(r["roi"]) in rois and str(r["layer"]) in layers:
                m[rois.index(str(r["roi"])), layers.index(str(r["layer"]))] = r[col]
        return m

    panels = {"mean profile r": (matrix("profile_r_mean"), rois, layers),
              "mean pattern r": (matrix("pattern_r_mean"), rois, layers),
              "identification accuracy": (matrix("identification_accuracy"), rois, layers)}
    out.append(ReportFigure(
        "heatmap", "ROI x layer",
        "Mean over units of the profile correlation (unit accuracy), mean over test images of "
        "the pattern correlation, and pairwise identification accuracy (chance 0.5).",
        figures.to_png(figures.heatmaps(panels))))
    return out


def decodability_figures(sf: SubjectFiles) -> list[ReportFigure]:
    """Fraction of decodable units per ROI x layer, and accuracy against its noise ceiling."""
    s, layers = sf.summary, sf.layers
    rois = list(sf.h5) or list(dict.fromkeys(s["roi"].astype(str)))
    out = []
    if "fraction_decodable" in s and np.isfinite(s["fraction_decodable"].astype(float)).any():
        m = np.full((len(rois), len(layers)), np.nan)
        for _, r in s.iterrows():
            if str(r["roi"]) in rois and str(r["layer"]) in layers:
                m[rois.index(str(r["roi"])), layers.index(str(r["layer"]))] = \
                    r["fraction_decodable"]
        out.append(ReportFigure(
            "fraction-decodable", "Fraction of decodable units",
            "Per ROI and layer, the fraction of units whose Benjamini-Hochberg q-value (from "
            "one-sided permutation p-values, over the units of the layer) is below 0.05.",
            figures.to_png(figures.heatmaps({"fraction decodable (q < 0.05)": (m, rois, layers)},
                                            vmin=0.0, vmax=1.0))))
    if sf.h5:
        roi, path = next(iter(sf.h5.items()))
        data = {}
        with h5py.File(path, "r") as f:
            for la in layers:
                if la in f and "accuracy_ceiling" in f[la]:
                    data[la] = (f[la]["accuracy_ceiling"][()].ravel(),
                                f[la]["accuracy"][()].ravel())
        if data:
            out.append(ReportFigure(
                "ceiling", f"Accuracy against its noise ceiling: {roi}",
                "Each point is a unit: the square root of the split-half reliability of its "
                "decoded values (x; odd vs even presentations of the test images, "
                "Spearman-Brown corrected) and its accuracy (y). Points near the diagonal are "
                "decoded as well as the measurement noise allows.",
                figures.to_png(figures.accuracy_scatter(
                    data, xlabel="noise ceiling", ylabel="accuracy",
                    title=f"Accuracy vs ceiling, ROI {roi}"))))
    return out


def decoded_true_figures(sf: SubjectFiles, rois: Sequence[str] | None = None
                         ) -> tuple[list[ReportFigure], list[str]]:
    """Decoded vs true values of the best and a median unit of each layer, one figure per ROI.

    Returns (figures, notes); ``rois`` restricts the ROIs drawn (default all).
    """
    from bids_decode.features import FeatureFile

    feat = sf.first_sidecar.get("FeaturesFile") or sf.config.get("features")
    if not feat or not Path(feat).is_file():
        return [], [f"The features file {feat} is not available, so decoded and true values "
                    "cannot be compared here."]
    out = []
    with FeatureFile(feat) as ff:
        for roi, path in sf.h5.items():
            if rois is not None and roi not in rois:
                continue
            data = {}
            with h5py.File(path, "r") as f:
                names = [as_str(v) for v in f["stimulus_name"][()]]
                targets = ff.targets(names)  # images, or imagined categories
                for la in sf.layers:
                    if la not in f or la not in ff.layers:
                        continue
                    acc = f[la]["accuracy"][()].astype(np.float64)
                    if not np.isfinite(acc).any():
                        continue
                    units = {"best": int(np.nanargmax(acc))}
                    med = np.nanmedian(acc)
                    units["median"] = int(np.nanargmin(np.abs(acc - med)))
                    panel = []
                    for label, flat in units.items():
                        idx = np.unravel_index(flat, acc.shape)
                        dec = f[la]["decoded"][(slice(None), *idx)]
                        true = ff.target_unit(la, flat, targets)
                        panel.append((f"{label} unit {flat}", true, dec))
                    data[la] = panel
            if data:
                out.append(ReportFigure(
                    f"decoded-{roi}", f"Decoded vs true values: {roi}",
                    "Each point is a test image: true value (x) and decoded value (y) of the "
                    "layer's most accurately decoded unit and of a unit with the median "
                    "accuracy (unit = flattened C-order index); r is their accuracy.",
                    figures.to_png(figures.decoded_vs_true(data, title=f"ROI {roi}"))))
    return out, []


_LOG_RE = re.compile(r"^bids_decode_participant_sub-([A-Za-z0-9-]+)_\d{8}-\d{6}_\d+\.log$")


def collect_warnings(output_dir: Path, sf: SubjectFiles) -> list[str]:
    """Warnings of the run: ``/warnings`` of the qc file, else WARNING lines of the logs.

    Log files named for this subject contribute all their warnings; logs of runs over all
    subjects (``sub-all``) contribute the lines that name ``sub-<L>``.
    """
    if sf.qc.is_file():
        with h5py.File(sf.qc, "r") as f:
            if "warnings" in f:
                return [as_str(w) for w in f["warnings"][()]]
    out = []
    for log in sorted((Path(output_dir) / "logs").glob("bids_decode_participant_sub-*.log")):
        m = _LOG_RE.match(log.name)
        if not m:
            continue
        subs = m.group(1).split("-")
        mine = sf.subject in subs
        if not mine and subs != ["all"]:
            continue
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if " WARNING: " in line and (mine or f"sub-{sf.subject}" in line):
                msg = line.split(" WARNING: ", 1)[1]
                if msg not in out:
                    out.append(msg)
    return out


def citation(config: Mapping, sidecar: Mapping, layers: Sequence[str], rois: Sequence[str],
             n_units: int | None = None) -> str:
    """The methods paragraph (plain text), with the parameters and package versions used."""
    from bids_decode.config import quoted  # parameters: the sidecar's entry, else the run config's

    vers = (config.get("provenance") or {}).get("versions", {})
    samples = sidecar.get("Samples") or (config.get("provenance") or {}).get("samples", {})
    fattrs = sidecar.get("FeaturesAttributes", {})

    def v(name):
        return vers.get(name, "?")

    libs = ", ".join(f"{n} {vers[k]}" for k, n in (
        ("numpy", "NumPy"), ("scipy", "SciPy"), ("nibabel", "NiBabel"), ("nilearn", "Nilearn"),
        ("h5py", "h5py"), ("scikit-learn", "scikit-learn"), ("pandas", "pandas"),
        ("pybids", "PyBIDS"), ("torch", "PyTorch")) if k in vers)
    network = fattrs.get("network") or config.get("network", "a deep neural network")
    weights = fattrs.get("weights") or config.get("weights") or "default weights"
    nvox = config.get("n_voxels", sidecar.get("VoxelsSelectedPerUnit", "?"))
    nvox_txt = "all voxels of the ROI" if nvox == 0 else f"the {nvox} voxels of the ROI"
    units_txt = f" ({n_units} units in all)" if n_units else ""
    return (
        f"Decoding analyses were performed with bids_decode {v('bids_decode')} (Python "
        f"{v('python')}; {libs}), which implements the feature decoding analysis of Horikawa "
        "and Kamitani (2017, Nat Commun 8:15037) and Horikawa et al. (2019, Sci Data "
        f"6:190012). Unit activations of layers {', '.join(layers)} of {network} ({weights}) "
        "were computed for every stimulus image. The BOLD time series of each run were "
        "linearly detrended and z-scored per voxel, shifted by "
        f"{quoted(config, sidecar, 'hrf_shift')} s to account for "
        "the haemodynamic delay and averaged within each stimulus block; blocks repeating the "
        "preceding image (one-back task) were discarded. For each unit of each layer"
        f"{units_txt}, an L2-regularised linear regression "
        f"(alpha = {quoted(config, sidecar, 'alpha')}, bias penalised as in "
        f"fastl2lir) was trained on {samples.get('n_train_samples', '?')} training samples "
        f"from {samples.get('n_train_runs', '?')} runs, using {nvox_txt} whose responses "
        "correlated most strongly (in absolute value) with the unit over the training samples; "
        "voxels and units were z-scored with training statistics. ROIs: "
        f"{', '.join(rois)}. The decoders were tested on {samples.get('n_test_images', '?')} "
        f"test images, whose responses were averaged over their "
        f"{samples.get('n_test_blocks', '?')} blocks from {samples.get('n_test_runs', '?')} "
        "runs. The decoding accuracy of a unit was the Pearson correlation between its decoded "
        "and true values over the test images (profile correlation); pattern correlation was "
        "the Pearson correlation over the units of a layer between the decoded and true "
        "pattern of each image, and identification accuracy the fraction of other test images "
        "whose true pattern correlated less with the decoded pattern than the correct one."
    ) + statistics_sentence(config, samples)


def statistics_sentence(config: Mapping, samples: Mapping) -> str:
    """Methods text for the permutation tests and the split-half reliability ('' when off).

    The reliability sentence needs a run of this version (``n_permutations`` in the config)
    with at least two test blocks per image on average (``samples``: the sidecar's counts).
    """
    n = int(config.get("n_permutations", 0) or 0)
    text = ""
    if n:
        text += (
            " Each unit's accuracy was tested with a one-sided permutation test (H0: r <= 0): "
            f"the test-image labels were permuted {n} times (the same permutations for every "
            f"unit; seed {config.get('permutation_seed', 0)}) and p = (1 + #{{r_perm >= r}}) / "
            f"(1 + {n}). p-values were corrected over the units of each layer by the "
            "Benjamini-Hochberg procedure (units with q < 0.05 are called decodable) and, for "
            "the family-wise error rate, by the max-statistic method (Westfall and Young 1993).")
    blocks, images = samples.get("n_test_blocks", 0), samples.get("n_test_images", 0)
    if "n_permutations" in config and images and blocks >= 2 * images:
        text += (
            " The reliability of each unit's decoded values was the Spearman-Brown-corrected "
            "correlation, across test images, of the values decoded from the odd and from the "
            "even presentations of each image; its square root is the accuracy's noise "
            "ceiling.")
    return text


def write_subject_report(output_dir: Path, subject: str, task: str) -> Path:
    """Write ``OUTPUT_DIR/sub-<L>.html`` from the participant outputs of one subject.

    Parameters
    ----------
    output_dir : Path
        The participant-level OUTPUT_DIR (or ``OUTPUT_DIR/group`` for the Averaged subject).
    subject : str
        Label without ``sub-``.
    task : str

    Returns
    -------
    Path of the report.
    """
    output_dir = Path(output_dir)
    sf = subject_files(output_dir, subject, task)
    notes = []
    if not sf.config:
        notes.append(f"No run configuration sub-{subject}_task-{task}_config.json was found; "
                     "parameters come from the sidecars.")
    summary_cols = ["roi", "layer", "n_units", "n_constant_units", "profile_r_mean",
                    "profile_r_median", "pattern_r_mean", "identification_accuracy",
                    "n_decodable", "fraction_decodable", "accuracy_ceiling_mean"]
    sections = [("summary", "Summary", "".join(note(n) for n in notes) + table(
        sf.summary, [c for c in summary_cols if c in sf.summary.columns]))]
    sections.append(("inputs", "Inputs", inputs_section(sf)))
    qc_figs, qc_notes = qc_figures(sf)
    sections.append(("quality", "Sample quality",
                     "".join(note(n) for n in qc_notes) + "".join(map(figure_html, qc_figs))))
    sections.append(("accuracy", "Decoding accuracy",
                     "".join(map(figure_html, accuracy_figures(sf) + decodability_figures(sf)))))
    dt_figs, dt_notes = decoded_true_figures(sf)
    sections.append(("decoded", "Decoded vs true",
                     "".join(note(n) for n in dt_notes) + "".join(map(figure_html, dt_figs))))
    params = {k: v for k, v in sf.config.items() if k not in ("provenance", "extra")}
    sections.append(("parameters", "Parameters", kv_table(params) if params else
                     note("No run configuration found.")))
    warns = collect_warnings(output_dir, sf)
    sections.append(("warnings", "Warnings", "".join(note(w, "warn") for w in warns) if warns
                     else "<p>No warnings were recorded during the run.</p>"))
    n_units = int(sf.summary.drop_duplicates("layer")["n_units"].sum()) \
        if "n_units" in sf.summary else None
    sections.append(("citation", "Methods boilerplate",
                     "<p>Paste and adapt this paragraph in your methods section; it lists the "
                     "parameters and software versions of this run.</p>"
                     f'<p class="cite">{esc(citation(sf.config, sf.first_sidecar, sf.layers, list(sf.h5), n_units))}</p>'))  # noqa: E501
    path = output_dir / f"sub-{subject}.html"
    derivatives.write_text(path, page(f"bids_decode report: sub-{subject}",
                                      f"task {task} · {_stamp()}", sections))
    return path


# ---------------------------------------------------------------------------- group report

def write_group_report(output_dir: Path, task: str, *, plan, summary: pd.DataFrame,
                       figures: Iterable) -> Path:
    """Write ``OUTPUT_DIR/group/report.html``.

    Parameters
    ----------
    output_dir : Path
    task : str
    plan : bids_decode.group.steps.GroupPlan
        Subjects, ROIs, layers and notes of the group run.
    summary : DataFrame
        The per-(roi, layer) summary table.
    figures : iterable of objects with name, title, caption, png
    """
    output_dir = Path(output_dir)
    gdir = output_dir / "group"
    subs = []
    for s in plan.subjects:
        rep = output_dir / f"sub-{s.label}.html"
        link = (f'<a href="../{esc(rep.name)}">report</a>' if rep.is_file() else "")
        subs.append(f"<li>sub-{esc(s.label)} {link}</li>")
    if (gdir / "sub-Averaged").is_dir():
        subs.append("<li>Averaged: the subjects' decoded features averaged, scored like a "
                    "subject (files under <code>group/sub-Averaged/</code>)</li>")
    intro = (f"<p>{len(plan.subjects)} subjects, ROIs {esc(', '.join(plan.rois))}, layers "
             f"{esc(', '.join(plan.layers))}, {len(plan.test_names)} test images.</p>"
             f"<ul>{''.join(subs)}</ul>" + "".join(note(n) for n in plan.notes))
    cols = ["roi", "layer", "n_units", "r_mean", "r_min", "r_max", "spearman_r_mean",
            "top10_overlap_mean", "r_disattenuated_mean", "fraction_decodable_all",
            "profile_r_mean", "averaged_profile_r_mean", "averaged_identification_accuracy"]
    sections = [("subjects", "Subjects", intro),
                ("figures", "Figures", "".join(figure_html(f) for f in figures)),
                ("summary", "Between-subject consistency",
                 "<p>r: Pearson correlation, over units, of two subjects' unit accuracies "
                 "(mean, min and max over subject pairs). top10_overlap_mean: fraction of one "
                 "subject's top-10% units that are top-10% in the other (chance 0.1). "
                 "r_disattenuated_mean: r divided by the square root of the two subjects' "
                 "split-half reliabilities of their unit accuracies (the consistency noise "
                 "allows is 1). fraction_decodable_all: units with q &lt; 0.05 in every "
                 "subject.</p>"
                 + table(summary, [c for c in cols if c in summary.columns]))]
    files = [p.relative_to(output_dir) for p in sorted(gdir.rglob("*"))
             if p.is_file() and not p.name.startswith(".")]
    sections.append(("files", "Files", "<ul>" + "".join(
        f"<li><code>{esc(p)}</code></li>" for p in files) + "</ul><p>See docs/outputs.md for "
        "the meaning of each file and column.</p>"))
    sections.append(("citation", "Methods boilerplate",
                     f'<p class="cite">{esc(_group_methods(plan))}</p>'))
    path = gdir / "report.html"
    derivatives.write_text(path, page(f"bids_decode group report: task {task}", _stamp(),
                                      sections))
    return path


def _group_methods(plan) -> str:
    """The methods paragraph of the group report: the subjects' methods, then the group's."""
    ref = plan.subjects[0]
    return (
        citation(ref.config, ref.sidecars[plan.rois[0]], plan.layers, plan.rois)
        + f" Between-subject consistency was assessed as the Pearson correlation of unit "
        f"accuracies between each pair of the {len(plan.subjects)} subjects (Horikawa et al. "
        "2019), and an averaged subject was formed by averaging the decoded features across "
        "subjects." + (" Between-subject correlations were corrected for attenuation by "
                       "dividing them by the square root of the product of the two subjects' "
                       "reliabilities (the Spearman-Brown-corrected correlation, across units, "
                       "of the accuracies decoded from the odd and from the even presentations)."
                       if "n_permutations" in ref.config else ""))
