"""The subject report: ``OUTPUT_DIR/sub-<L>_net-<N>.html`` from one subject's participant
outputs of one network only.

Sections: summary, inputs, sample quality (``*_qc.h5``), decoding accuracy and decodability,
decoded against true values, encoding (with ``--encoding``: the brain maps), parameters,
warnings of the run, and the methods paragraph. What each part shows: docs/outputs.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from bids_decode.errors import MissingInputError
from bids_decode.features.h5file import FeatureFile
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import SubjectOutputs, as_str
from bids_decode.reports import figures
from bids_decode.reports.encoding import encoding_section
from bids_decode.reports.figures import ReportFigure
from bids_decode.reports.html import esc, figure_html, kv_table, note, page, stamp, table
from bids_decode.reports.methods import citation
from bids_decode.utils.files import write_text

LOGGER = logging.getLogger(__name__)


# ------------------------------------------------------------------------- reading outputs

#: The outputs of one subject, as :func:`bids_decode.outputs.schema.read_subject` reads them.
SubjectFiles = SubjectOutputs


def subject_files(output_dir: Path, subject: str, task: str, *, network: str) -> SubjectOutputs:
    """One subject's outputs of one network (:func:`bids_decode.outputs.schema.read_subject`); the
    summary table must be there (the report is made from it)."""
    output_dir = Path(output_dir)
    tsv = outputs.summary_tsv(output_dir, subject, task, network=network)
    if not tsv.is_file():
        raise MissingInputError(
            f"No participant outputs of sub-{subject} for task '{task}' in {output_dir} (no "
            f"{tsv.name}); the report is made from them. Run the participant level first."
        )
    return outputs.read_subject(output_dir, subject, task, network=network)


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
                        in_file = (int(f[la]["unit_index"][flat]) if "unit_index" in f[la]
                                   else flat)  # --units-per-layer: the unit's own index
                        true = ff.target_unit(la, in_file, targets)
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


def write_subject_report(output_dir: Path, subject: str, task: str, *, network: str) -> Path:
    """Write ``OUTPUT_DIR/sub-<L>_net-<N>.html`` from the participant outputs of one subject
    and network.

    Parameters
    ----------
    output_dir : Path
        The participant-level OUTPUT_DIR (or ``OUTPUT_DIR/group`` for the Averaged subject).
    subject : str
        Label without ``sub-``.
    task : str
    network : str
        The network's name (or ``net-`` label).

    Returns
    -------
    Path of the report.
    """
    output_dir = Path(output_dir)
    sf = subject_files(output_dir, subject, task, network=network)
    notes = []
    if not sf.config:
        notes.append(f"No run configuration "
                     f"{outputs.config_json(output_dir, subject, task, network=network).name} "
                     "was found; parameters come from the sidecars.")
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
    enc_html = encoding_section(output_dir, subject, task, network=network)
    if enc_html is not None:
        sections.append(("encoding", "Encoding", enc_html))
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
    path = outputs.subject_report(output_dir, subject, network=network)
    write_text(path, page(f"bids_decode report: sub-{subject}, {network}",
                          f"task {task} · network {network} · {stamp()}", sections))
    return path
