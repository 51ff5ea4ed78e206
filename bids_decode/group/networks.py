"""Group level, step 8: networks compared, and their brain hierarchy (BH) scores.

Reads only what the group level of each network wrote (its summary table) and the subjects'
outputs (unit accuracies and p-values); writes the tables across networks declared in
:data:`bids_decode.outputs.schema.NETWORK_TABLES`, two figures and ``group/report.html``:

- ``task-<T>_desc-networks_summary.tsv``: per network, ROI and layer, the mean accuracy,
  fraction decodable and between-subject r (raw and disattenuated) against the layer's
  relative depth (0 = first layer, 1 = last);
- ``task-<T>_desc-bhscore_summary.tsv`` and ``task-<T>_desc-bhscore_layers.tsv``: the BH
  score (:mod:`bids_decode.evaluation.bhscore`) per network and subject and pooled, and per
  layer the units kept and their preferred-ROI distribution (the paper's Fig. 1), when V1, V2,
  V3, V4 and HVC were decoded. With the participant level's encoding outputs (``--encoding``)
  of those ROIs, the summary adds the encoding-based score and the full score, their mean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bids_decode.config import RunConfig
from bids_decode.errors import DataError, UsageError
from bids_decode.evaluation import bhscore
from bids_decode.features.units import sample_units
from bids_decode.group.io import GroupPlan
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.encoding import find_encoding_files, read_encoding
from bids_decode.reports import figures, write_networks_report
from bids_decode.reports.figures import ReportFigure
from bids_decode.utils.files import atomic_path

LOGGER = logging.getLogger(__name__)

POOLED = "pooled"


@dataclass
class NetworkBH:
    """The BH score of one network: layers used, results per subject and pooled, notes.

    ``encoding`` holds the encoding-based results (subject or ``pooled`` -> result; empty when
    the network has no encoding outputs to score) and ``encoding_layers`` their layers.
    """

    network: str
    layers: list[str]
    results: dict[str, bhscore.BHResult] = field(default_factory=dict)
    encoding: dict[str, bhscore.BHResult] = field(default_factory=dict)
    encoding_layers: list[str] = field(default_factory=list)


def write_network_comparison(config: RunConfig, plans: dict[str, GroupPlan]) -> Path:
    """Tables, figures and ``group/report.html`` across the networks of a group run.

    Parameters
    ----------
    config : RunConfig
        The group level's configuration (task, ``--bh-*`` options, ``--unit-seed``).
    plans : dict network -> GroupPlan
        What each network's group level worked on.

    Returns
    -------
    Path of ``group/report.html``.
    """
    out_dir, task = Path(config.output_dir), config.task
    rows = [r for net, plan in plans.items() for r in comparison_rows(out_dir, task, plan)]
    outputs.NETWORKS_SUMMARY.write(outputs.group_table(out_dir, task, "networks", "summary"),
                                   rows)
    notes, scores = [], []
    for network, plan in plans.items():
        missing = [r for r in bhscore.BH_ROIS if r not in plan.rois]
        if missing:
            notes.append(f"No BH score for network {network}: it needs the ROIs "
                         f"{' '.join(bhscore.BH_ROIS)} and {' '.join(missing)} were not decoded "
                         f"(participant level: --roi {' '.join(bhscore.BH_ROIS)}).")
            continue
        scores.append(network_bhscore(config, plan))
        notes += encoding_bhscore(config, plan, scores[-1])
    for n in notes:
        LOGGER.info(n)
    if scores:
        outputs.BH_SUMMARY.write(outputs.group_table(out_dir, task, "bhscore", "summary"),
                                 bh_summary_rows(scores, config.bh_test))
        outputs.BH_LAYERS.write(outputs.group_table(out_dir, task, "bhscore", "layers"),
                                bh_layer_rows(scores))
    figs = comparison_figures(pd.DataFrame(rows, columns=outputs.NETWORKS_SUMMARY.names), task)
    if scores:
        figs.append(preferred_roi_figure(scores, task))
    fig_dir = outputs.group_dir(out_dir) / "figures"
    for fig in figs:
        with atomic_path(fig_dir / fig.name) as tmp:
            tmp.write_bytes(fig.png)
    _print_scores(scores, config.bh_test)
    return write_networks_report(out_dir, task, plans=plans, figures=figs, notes=notes)


# --------------------------------------------------------------------------------- table

def comparison_rows(out_dir: Path, task: str, plan: GroupPlan) -> list[dict]:
    """Rows of ``task-<T>_desc-networks_summary.tsv`` for one network."""
    group = outputs.Table.read(outputs.group_table(out_dir, task, "crosssubject", "summary",
                                                   network=plan.network))
    # (no fraction where the participant level ran without permutation tests: NaN)
    decodable = [s.summary[["roi", "layer", "fraction_decodable"]] for s in plan.subjects
                 if s.summary is not None and "fraction_decodable" in s.summary]
    frac = (pd.concat(decodable).groupby(["roi", "layer"])["fraction_decodable"].mean()
            if decodable else pd.Series(dtype=float))
    layers = bhscore.hierarchy_layers(plan.network, plan.layers)
    layers += [la for la in plan.layers if la not in layers]
    depth = {la: i / max(1, len(layers) - 1) for i, la in enumerate(layers)}
    rows = []
    for _, g in group.iterrows():
        roi, layer = str(g["roi"]), str(g["layer"])
        rows.append({
            "network": plan.network, "roi": roi, "layer": layer,
            "layer_index": layers.index(layer), "relative_depth": depth[layer],
            "n_subjects": int(g["n_subjects"]), "profile_r_mean": g["profile_r_mean"],
            "fraction_decodable_mean": float(frac.get((roi, layer), np.nan)),
            "r_mean": g["r_mean"], "r_disattenuated_mean": g["r_disattenuated_mean"]})
    return sorted(rows, key=lambda r: (r["roi"], r["layer_index"]))


# ------------------------------------------------------------------------------ BH score

def bh_units(config: RunConfig, plan: GroupPlan, layer: str) -> np.ndarray | None:
    """The units of a layer in the score: the outputs' own sample (None: every unit stored),
    else ``--bh-units`` drawn with ``--unit-seed`` (:func:`bids_decode.units.sample_units`)."""
    side = plan.subjects[0].first_sidecar
    if int(side.get("UnitsPerLayer") or 0) > 0:
        return None  # the outputs hold the sample: every stored unit
    n_units = int(np.prod(plan.shapes[layer]))
    return sample_units(n_units, config.bh_units, config.unit_seed, layer)


def _layer_accuracies(plan: GroupPlan, subject, layer: str, units, need_p: bool):
    """(acc, p) of one subject's units of a layer, ROIs in BH order: shape (5, n_units)."""
    acc, pval = [], []
    for roi in bhscore.BH_ROIS:
        with h5py.File(subject.h5[roi], "r") as f:
            g = f[layer]
            a = g["accuracy"][()].astype(np.float64).ravel()
            acc.append(a if units is None else a[units])
            if need_p:
                if "p_value" not in g:
                    raise DataError(
                        f"{subject.h5[roi]} has no permutation p-values (the participant level "
                        "ran with --n-permutations 0), which the BH score's default test "
                        "needs. Rerun the participant level with permutations, or use "
                        "--bh-test paper at the group level.")
                p = g["p_value"][()].astype(np.float64).ravel()
                pval.append(p if units is None else p[units])
    return np.array(acc), (np.array(pval) if need_p else None)


def network_bhscore(config: RunConfig, plan: GroupPlan) -> NetworkBH:
    """The BH score of one network for each subject and pooled over subjects."""
    layers = bhscore.hierarchy_layers(plan.network, plan.layers, config.bh_layers)
    draws = bhscore.layer_draws(len(layers), config.bh_seed)
    n_images = len(plan.test_names)
    per_subject: dict[str, list] = {s.label: [] for s in plan.subjects}
    for layer in layers:
        units = bh_units(config, plan, layer)
        for s in plan.subjects:
            acc, pval = _layer_accuracies(plan, s, layer, units,
                                          need_p=config.bh_test == "permutation")
            per_subject[s.label].append(bhscore.best_and_kept(acc, pval, config.bh_test,
                                                              n_images))
    res = NetworkBH(plan.network, layers)
    for label, units in per_subject.items():
        counts = bhscore.unit_counts([b for b, _ in units], [k for _, k in units])
        res.results[label] = bhscore.score_with_interval(counts, draws, config.bh_seed)
    pooled = sum(r.counts for r in res.results.values())  # (subject, unit) pairs pooled
    res.results[POOLED] = bhscore.score_with_interval(pooled, draws, config.bh_seed)
    return res


def encoding_bhscore(config: RunConfig, plan: GroupPlan, res: NetworkBH) -> list[str]:
    """The encoding-based BH score of one network, per subject and pooled, into ``res``.

    Reads the subjects' encoding files (``*_desc-<ROI>_encoding.h5``) of the BH ROIs; the
    subjects of ``plan`` without all five are left out (noted). Returns the notes; without
    any usable encoding output ``res.encoding`` stays empty (the table says n/a).
    """
    files = find_encoding_files(config.output_dir, config.task, plan.network)
    usable = {s.label: files[s.label] for s in plan.subjects
              if all(r in files.get(s.label, {}) for r in bhscore.BH_ROIS)}
    if not usable:
        return [f"No encoding BH score (so no full BH score) for network {plan.network}: no "
                f"subject has encoding outputs of the ROIs {' '.join(bhscore.BH_ROIS)} "
                "(participant level: --encoding)."]
    notes = [f"sub-{s.label} is left out of the encoding BH score of network {plan.network}: "
             f"it has no encoding outputs of ROIs "
             f"{' '.join(r for r in bhscore.BH_ROIS if r not in files.get(s.label, {}))} "
             "(participant level: --encoding)."
             for s in plan.subjects if s.label not in usable]
    first = read_encoding(next(iter(usable.values()))[bhscore.BH_ROIS[0]])
    try:
        layers = bhscore.hierarchy_layers(plan.network, first.layers, config.bh_layers)
    except UsageError as err:
        return notes + [f"No encoding BH score for network {plan.network}: {err}"]
    for label, rois in usable.items():
        kept = [_encoding_kept(config, read_encoding(rois[roi]), layers)
                for roi in bhscore.BH_ROIS]
        counts = bhscore.voxel_counts([b for b, _ in kept], [k for _, k in kept], len(layers))
        res.encoding[label] = bhscore.encoding_score(counts, config.bh_seed)
    pooled = sum(r.counts for r in res.encoding.values())  # (subject, voxel) pairs pooled
    res.encoding[POOLED] = bhscore.encoding_score(pooled, config.bh_seed)
    res.encoding_layers = layers
    return notes


def _encoding_kept(config: RunConfig, enc, layers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Best layer and significance of the drawn voxels of one encoding file (one ROI).

    At most ``--bh-units`` voxels (:func:`bhscore.voxel_draw`, ``--bh-seed``), the same for
    every layer; the best layer among ``layers`` (hierarchy order).
    """
    missing = [la for la in layers if la not in enc.layers]
    if missing:
        raise DataError(
            f"{enc.path} has no encoding accuracies of the layers {missing} of the BH score "
            f"(it holds {enc.layers}). Rerun the participant level with --encoding for these "
            "layers, or choose the score's layers with --bh-layers.")
    rows = [enc.layers.index(la) for la in layers]
    vox = bhscore.voxel_draw(enc.accuracy.shape[1], config.bh_units, config.bh_seed)
    pval = None
    if config.bh_test == "permutation":
        pval = enc.p_value[rows][:, vox]
        if pval.size and np.isnan(pval).all():
            raise DataError(
                f"{enc.path} has no permutation p-values (the participant level ran with "
                "--n-permutations 0), which the BH score's default test needs. Rerun the "
                "participant level with permutations, or use --bh-test paper at the group "
                "level.")
    return bhscore.best_and_kept(enc.accuracy[rows][:, vox], pval, config.bh_test,
                                 int(enc.attrs["n_test_images"]))


def bh_summary_rows(scores: list[NetworkBH], test: str) -> list[dict]:
    """Rows of ``task-<T>_desc-bhscore_summary.tsv``: decoding, encoding and full score."""
    rows = []
    nan = float("nan")
    for s in scores:
        for sub, r in s.results.items():
            e = s.encoding.get(sub)
            rows.append({
                "network": s.network, "subject": sub, "bh_decoding": r.score,
                "ci_low": r.ci_low, "ci_high": r.ci_high, "n_units_kept": r.n_kept,
                "test": test, "bh_encoding": e.score if e else nan,
                "bh_encoding_ci_low": e.ci_low if e else nan,
                "bh_encoding_ci_high": e.ci_high if e else nan,
                "n_voxels_kept": e.n_kept if e else nan,
                "bh_score": (r.score + e.score) / 2 if e else nan})
    return rows


def bh_layer_rows(scores: list[NetworkBH]) -> list[dict]:
    rows = []
    for s in scores:
        for sub, r in s.results.items():
            for i, layer in enumerate(s.layers):
                c = r.counts[i]
                kept = int(c[:-1].sum())
                rows.append({
                    "network": s.network, "subject": sub, "layer": layer, "layer_index": i,
                    "n_units": int(c.sum()), "n_units_kept": kept,
                    "share_kept": kept / c.sum() if c.sum() else np.nan,
                    **{f"share_{roi}": (c[j] / kept if kept else np.nan)
                       for j, roi in enumerate(bhscore.BH_ROIS)}})
    return rows


def _print_scores(scores: list[NetworkBH], test: str) -> None:
    if not scores:
        return
    print(f"Brain hierarchy score (decoding; --bh-test {test}), pooled over subjects:")
    for s in scores:
        r = s.results[POOLED]
        print(f"  {s.network:<16} {r.score:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] "
              f"({r.n_kept} units kept)")
    enc = [s for s in scores if POOLED in s.encoding]
    if enc:
        print("Encoding BH score and full BH score (mean of the two), pooled over subjects:")
    for s in enc:
        e = s.encoding[POOLED]
        print(f"  {s.network:<16} encoding {e.score:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}] "
              f"({e.n_kept} voxels kept); full {(s.results[POOLED].score + e.score) / 2:.3f}")


# ------------------------------------------------------------------------------- figures

MEASURES = {"profile_r_mean": "mean unit accuracy",
            "fraction_decodable_mean": "fraction decodable (q < 0.05)",
            "r_mean": "between-subject r", "r_disattenuated_mean": "disattenuated r"}


def comparison_figures(table: pd.DataFrame, task: str) -> list[ReportFigure]:
    """Per ROI: the networks side by side against relative depth, one panel per measure."""
    figs = []
    for roi, sub in table.groupby("roi", sort=False):
        fig, axes = figures.new_figure(len(MEASURES), ncols=4, margins=(0.7, 0.2, 0.95, 0.55))
        for ax, (col, label) in zip(axes, MEASURES.items()):
            for i, (net, g) in enumerate(sub.groupby("network", sort=False)):
                g = g.sort_values("relative_depth")
                ax.plot(g["relative_depth"], g[col], "o-", color=figures.COLORS[i % 10],
                        label=net, markersize=4)
            ax.set_title(label, fontsize=10, y=1.0)
            ax.set_xlabel("relative depth")
            ax.set_xlim(-0.05, 1.05)
        axes[0].legend(fontsize=7, frameon=False)
        figures._suptitle(fig, f"Networks compared, ROI {roi}")
        figs.append(ReportFigure(
            f"{outputs.group_prefix(task)}_desc-{roi}_networks.png",
            f"Networks side by side: {roi}",
            "Each line is a network; x: the layer's relative depth (0 = first layer, 1 = last, "
            "in hierarchy order); panels: mean unit accuracy over subjects, mean fraction of "
            "decodable units (q < 0.05), mean between-subject r of unit accuracies, and the "
            "same corrected for the subjects' split-half reliabilities.", figures.to_png(fig)))
    return figs


def preferred_roi_figure(scores: list[NetworkBH], task: str) -> ReportFigure:
    """The paper's Fig. 1: per network, the preferred-ROI distribution of the kept units per
    layer (pooled subjects), with the BH score in the panel title."""
    fig, axes = figures.new_figure(len(scores), ncols=3, margins=(0.7, 1.0, 0.95, 0.55))
    for ax, s in zip(axes, scores):
        counts = s.results[POOLED].counts[:, :-1].astype(float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        bottom = np.zeros(len(s.layers))
        for j, roi in enumerate(bhscore.BH_ROIS):
            ax.bar(range(len(s.layers)), share[:, j], bottom=bottom, label=roi,
                   color=figures.COLORS[j], width=0.8)
            bottom += share[:, j]
        ax.set_xticks(range(len(s.layers)), s.layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{s.network}: BH {s.results[POOLED].score:.2f}", fontsize=10, y=1.0)
    axes[0].set_ylabel("share of kept units")
    axes[-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figures._suptitle(fig, "Preferred ROI per layer")
    return ReportFigure(
        f"{outputs.group_prefix(task)}_desc-bhscore_preferredroi.png",
        "Preferred ROI per layer (brain hierarchy)",
        "For each network, each layer's kept units (pooled over subjects) split by their "
        "preferred ROI (V1 at the bottom ... HVC at the top), as in Nonaka et al. (2021), "
        "Fig. 1; a brain-like hierarchy climbs from V1 in early layers to HVC in late ones. The "
        "title gives the pooled BH score.", figures.to_png(fig))
