"""The group reports, from the group level's tables and figures.

``group/net-<N>_report.html`` (:func:`write_group_report`), one per network: the subjects (with
links to their reports), the figures, the between-subject consistency table, the files written
and the methods paragraph. ``group/report.html`` (:func:`write_networks_report`): the networks
compared and their brain hierarchy scores. What each part shows: docs/outputs.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from bids_decode.outputs import schema as outputs
from bids_decode.reports.html import esc, figure_html, note, page, stamp, table
from bids_decode.reports.methods import group_methods
from bids_decode.utils.files import write_text

LOGGER = logging.getLogger(__name__)


def write_group_report(output_dir: Path, task: str, *, plan, summary: pd.DataFrame,
                       figures: Iterable) -> Path:
    """Write ``OUTPUT_DIR/group/net-<N>_report.html``, the group report of one network.

    Parameters
    ----------
    output_dir : Path
    task : str
    plan : bids_decode.group.io.GroupPlan
        Subjects, ROIs, layers and notes of the group run.
    summary : DataFrame
        The per-(roi, layer) summary table.
    figures : iterable of objects with name, title, caption, png
    """
    output_dir = Path(output_dir)
    gdir = output_dir / "group"
    subs = []
    for s in plan.subjects:
        rep = outputs.subject_report(output_dir, s.label, network=plan.network)
        link = (f'<a href="../{esc(rep.name)}">report</a>' if rep.is_file() else "")
        subs.append(f"<li>sub-{esc(s.label)} {link}</li>")
    if (gdir / "sub-Averaged").is_dir():
        subs.append("<li>Averaged: the subjects' decoded features averaged, scored like a "
                    "subject (files under <code>group/sub-Averaged/</code>)</li>")
    intro = (f"<p>Network {esc(plan.network)}: {len(plan.subjects)} subjects, ROIs "
             f"{esc(', '.join(plan.rois))}, layers "
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
    mine = f"net-{outputs.network_label(plan.network)}_"
    files = [p.relative_to(output_dir) for p in sorted(gdir.rglob("*"))
             if p.is_file() and not p.name.startswith(".") and mine in p.name]
    sections.append(("files", "Files", "<ul>" + "".join(
        f"<li><code>{esc(p)}</code></li>" for p in files) + "</ul><p>See docs/outputs.md for "
        "the meaning of each file and column.</p>"))
    sections.append(("citation", "Methods boilerplate",
                     f'<p class="cite">{esc(group_methods(plan))}</p>'))
    path = outputs.group_report(output_dir, plan.network)
    write_text(path, page(f"bids_decode group report: task {task}, {plan.network}", stamp(),
                          sections))
    return path


def write_networks_report(output_dir: Path, task: str, *, plans: Mapping, figures: Iterable,
                          notes: Sequence[str] = ()) -> Path:
    """Write ``OUTPUT_DIR/group/report.html``: the networks compared, their BH scores, and
    links to each network's group report (``group/net-<N>_report.html``)."""
    output_dir = Path(output_dir)
    links = []
    for network, plan in plans.items():
        rep = outputs.group_report(output_dir, network)
        links.append(f'<li><a href="{esc(rep.name)}">{esc(network)}</a>: '
                     f"{len(plan.subjects)} subjects, ROIs {esc(', '.join(plan.rois))}, "
                     f"layers {esc(', '.join(plan.layers))}</li>")
    sections = [("networks", "Networks", f"<ul>{''.join(links)}</ul>"
                 + "".join(note(n) for n in notes))]
    bh = outputs.group_table(output_dir, task, "bhscore", "summary")
    if bh.is_file():
        sections.append(("bhscore", "Brain hierarchy score", (
            "<p>Decoding-based BH score (Nonaka et al. 2021): the Spearman correlation between "
            "the layer position and the preferred-ROI position (V1 &lt; V2 &lt; V3 &lt; V4 &lt; "
            "HVC) of the units whose best accuracy is significant, averaged over 100 draws of "
            "5 layers (first and last always in); per subject and pooled over subjects, with a "
            "bootstrap 95% interval over units (ci_low, ci_high). Encoding-based BH score "
            "(bh_encoding, with --encoding outputs): the Spearman correlation between the ROI "
            "position and the position of the best-predicting layer of the voxels (at most "
            "--bh-units, default 1000, drawn per subject and ROI) whose best accuracy is "
            "significant, with its interval over voxels. bh_score: their mean, the published "
            "score. See "
            "docs/outputs.md.</p>")
            + table(outputs.Table.read(bh))))
    summary = outputs.Table.read(outputs.group_table(output_dir, task, "networks", "summary"))
    sections.append(("comparison", "Networks side by side", table(summary)))
    sections.append(("figures", "Figures", "".join(figure_html(f) for f in figures)))
    path = outputs.group_report(output_dir)
    write_text(path, page(f"bids_decode group report: task {task}", stamp(), sections))
    return path

