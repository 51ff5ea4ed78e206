"""Group level: reads participant outputs only; between-subject statistics and the Averaged subject.

Nothing is refitted. For each (ROI, layer) the per-unit accuracies of every pair of subjects are
correlated (the between-subject consistency of Horikawa et al. 2019, Fig. 2), the overlap of
their top-k% units is counted, and the subjects' decoded features are averaged into an
"Averaged" subject scored like a participant against the true features. Outputs: see
docs/outputs.md.

Work is streamed layer by layer: at any time memory holds one layer's true test features, the
per-unit accuracies of that layer for every subject and one chunk of decoded features per subject.

The steps live in their own modules: :mod:`bids_decode.group.io` (1-2: find and check the
outputs), :mod:`bids_decode.group.stats` (3: between-subject statistics),
:mod:`bids_decode.group.averaged` (4: the Averaged subject), :mod:`bids_decode.outputs.schema`
(5-6: paths and tables), :mod:`bids_decode.group.figures` and :mod:`bids_decode.reports`
(7: figures and report); this module runs them in order and prints the result.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

from bids_decode.config import RunConfig, group_keys
from bids_decode.errors import MissingInputError
from bids_decode.features.h5file import FeatureFile
from bids_decode.features.units import UnitSample
from bids_decode.group.averaged import AveragedSubject
from bids_decode.group.figures import averaged_decoded_figure, group_figures
from bids_decode.group.io import GroupPlan, check_consistent, find_outputs
from bids_decode.group.networks import write_network_comparison
from bids_decode.group.stats import (
    LayerResult,
    nanmean,
    pair_statistics,
    reliability_columns,
    summary_row,
)
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import AVERAGED, group_dir
from bids_decode.outputs.work_files import check_shards_complete
from bids_decode.reports import figures, write_group_report
from bids_decode.utils.files import atomic_path, lock

LOGGER = logging.getLogger(__name__)

#: Sidecar entries that must be equal across subjects (per ROI): the declared parameters
#: (config.py) and what the features file says.
SIDECAR_KEYS = (*group_keys("sidecar"), "FeaturesAttributes", "Layers")
#: Run-config entries that must be equal across subjects (declared in config.py).
CONFIG_KEYS = group_keys("config")


def run_group(config: RunConfig) -> int:
    """Group level of one task, per network, then across networks: read participant outputs,
    write ``OUTPUT_DIR/group/``.

    Returns
    -------
    int
        Exit code (0).
    """
    t0 = time.time()
    out_dir = Path(config.output_dir)
    task = config.task
    # 1. find the participant outputs (all unit shards done), per network
    check_shards_complete(out_dir, task, config.participant_label)
    # 2. check that each network's subjects can be compared, every network before any work
    plans = {network: _plan(config, network)
             for network in _networks(out_dir, task, config.participant_label)}
    with lock(out_dir, "group"):
        for plan in plans.values():
            _print_summary(plan, _run_network(config, plan))
        # 8. across networks: the comparison table and figure, the brain hierarchy score
        write_network_comparison(config, plans)
    LOGGER.info("group: done in %.1f s; outputs in %s", time.time() - t0, group_dir(out_dir))
    print(f"Report: {outputs.group_report(out_dir)}")
    return 0


def _networks(out_dir: Path, task: str, labels) -> list[str]:
    """The networks of the group level: those of any subject wanted (all when no labels)."""
    wanted = {str(x).removeprefix("sub-") for x in labels}
    found = outputs.find_networks(out_dir, task)
    names = [outputs.network_name(out_dir, task, lab) for lab, subs in found.items()
             if not wanted or wanted & set(subs)]
    if not names:
        who = f" of {sorted('sub-' + w for w in wanted)}" if wanted else ""
        raise MissingInputError(
            f"The group level compares subjects and needs the participant outputs of at least "
            f"two; {out_dir} has none for task '{task}'{who} (files "
            f"sub-<L>/func/sub-<L>_task-{task}_net-<N>_desc-<ROI>_decoding.h5). Run the "
            "participant level first ('bids_decode BIDS_DIR OUTPUT_DIR participant "
            "--participant-label ...'), or check --participant-label and --task."
        )
    return names


def _plan(config: RunConfig, network: str) -> GroupPlan:
    """Steps 1-2 for one network: its subjects' outputs, checked to be comparable."""
    out_dir, task = Path(config.output_dir), config.task
    subjects = find_outputs(out_dir, task, config.participant_label, network=network)
    plan = check_consistent(out_dir, task, subjects, sidecar_keys=SIDECAR_KEYS,
                            config_keys=CONFIG_KEYS, network=network)
    LOGGER.info("group, network %s: %d subjects (%s), ROIs %s, layers %s", network,
                len(plan.subjects), ", ".join(f"sub-{s.label}" for s in plan.subjects),
                plan.rois, plan.layers)
    return plan


def _run_network(config: RunConfig, plan: GroupPlan) -> list[dict]:
    """Steps 3-7 for one network: statistics, Averaged subject, tables, figures; returns the
    summary rows."""
    out_dir, task = Path(config.output_dir), config.task
    # 3-5. statistics and the Averaged subject
    results = _compute(config, plan)
    # 6. tables
    summary_rows = _write_tables(out_dir, task, plan, results)
    # 7. figures and report
    _write_figures_and_report(out_dir, task, plan, results)
    return summary_rows


def _write_tables(out_dir: Path, task: str, plan: GroupPlan,
                  results: dict[tuple[str, str], LayerResult]) -> list[dict]:
    """The three group tables; returns the summary rows."""
    pair_rows, overlap_rows, summary_rows = [], [], []
    for (roi, layer), res in results.items():
        pair_rows += [{"roi": roi, "layer": layer, **p} for p in res.pairs]
        overlap_rows += [{"roi": roi, "layer": layer, **o} for o in res.overlap]
        summary_rows.append(summary_row(roi, layer, len(plan.subjects), plan.shapes[layer], res))
    rows = {("crosssubject", "correlation"): pair_rows,
            ("crosssubject", "summary"): summary_rows,
            ("rankconsistency", "overlap"): overlap_rows}
    for (desc, suffix), table in outputs.GROUP_TABLES.items():
        table.write(outputs.group_table(out_dir, task, desc, suffix, network=plan.network),
                    rows[desc, suffix])
    return summary_rows


def _write_figures_and_report(out_dir: Path, task: str, plan: GroupPlan,
                              results: dict[tuple[str, str], LayerResult]) -> None:
    figs = group_figures(plan, results, task)
    if all(res.averaged for res in results.values()):
        figs += averaged_decoded_figure(out_dir, task, plan.rois[0], plan.network)
    fig_dir = group_dir(out_dir) / "figures"
    for fig in figs:
        with atomic_path(fig_dir / fig.name) as tmp:
            tmp.write_bytes(fig.png)
    summary = outputs.Table.read(outputs.group_table(out_dir, task, "crosssubject", "summary",
                                                     network=plan.network))
    write_group_report(out_dir, task, plan=plan, summary=summary, figures=figs)


def _print_summary(plan: GroupPlan, summary_rows: list[dict]) -> None:
    print(f"Group level, network {plan.network} ({len(plan.subjects)} subjects): mean "
          "between-subject r of unit accuracies")
    for row in summary_rows:
        print(f"  {row['roi']:<6} {row['layer']:<12} r = {row['r_mean']:.3f} "
              f"[{row['r_min']:.3f}, {row['r_max']:.3f}]")


def _open_truth(stack: contextlib.ExitStack, config: RunConfig,
                plan: GroupPlan) -> AveragedSubject | None:
    """The Averaged subject, or None when the true features are missing or are categories."""
    if not plan.features_file.is_file():
        note = (f"The features file {plan.features_file} named in the participant outputs is not "
                "there, so the Averaged subject was not computed (its accuracy needs the true "
                "features). Restore the file at that path and rerun the group level.")
        LOGGER.warning(note)
        plan.notes.append(note)
        return None
    ff = stack.enter_context(FeatureFile(plan.features_file))
    side = plan.subjects[0].first_sidecar
    if int(side.get("UnitsPerLayer") or 0) > 0:  # the participants' unit sample
        ff = UnitSample(ff, int(side["UnitsPerLayer"]), int(side.get("UnitSeed") or 0))
    test_rows = ff.image_rows(plan.test_names)
    if test_rows is None:
        LOGGER.warning(
            "The test labels of task %s name categories, not images (e.g. %s): the "
            "Averaged subject is scored against image features only, so it is skipped.",
            config.task, plan.test_names[0])
        return None
    return AveragedSubject(stack, ff, Path(config.output_dir), config.task, plan, test_rows,
                           config.mem_gb)


def _compute(config: RunConfig, plan: GroupPlan) -> dict[tuple[str, str], LayerResult]:
    """Steps 3-5: statistics and the Averaged subject, streamed layer by layer."""
    results: dict[tuple[str, str], LayerResult] = {}
    with contextlib.ExitStack() as stack:
        # The products here are (n_test x units) @ (units x n_test): memory-bound, and a
        # multi-threaded BLAS on busy cores is up to 30x slower than one thread.
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        avg = _open_truth(stack, config, plan)
        handles = {(s.label, roi): stack.enter_context(h5py.File(s.h5[roi], "r"))
                   for s in plan.subjects for roi in plan.rois}
        for layer in plan.layers:
            t1 = time.time()
            if avg is not None:
                avg.read_layer(layer)
            for roi in plan.rois:
                results[roi, layer] = _layer_result(plan, handles, roi, layer, avg)
            LOGGER.info("group: %s done for %d ROIs in %.1f s", layer, len(plan.rois),
                        time.time() - t1)
        results = {(roi, layer): results[roi, layer] for roi in plan.rois
                   for layer in plan.layers}
        if avg is not None:
            avg.finish()
    return results


def _layer_result(plan: GroupPlan, handles: dict, roi: str, layer: str,
                  avg: AveragedSubject | None) -> LayerResult:
    """Statistics of one (ROI, layer) over the subjects, and its Averaged subject."""
    acc = {s.label: handles[s.label, roi][layer]["accuracy"][()].astype(np.float64).ravel()
           for s in plan.subjects}
    averaged = avg.score(handles, roi, layer) if avg is not None else None
    dists = {f"sub-{k}": figures.distribution(v) for k, v in acc.items()}
    if averaged is not None:
        dists[AVERAGED] = figures.distribution(averaged.pop("accuracy"))
    pairs, overlap = pair_statistics(acc)
    decodable_all = reliability_columns(
        pairs, {s.label: handles[s.label, roi][layer] for s in plan.subjects})
    first, second = plan.subjects[0].label, plan.subjects[1].label
    return LayerResult(
        pairs=pairs, overlap=overlap, subject_means={k: nanmean(v) for k, v in acc.items()},
        distributions=dists,
        scatter=(acc[first], acc[second]) if roi == plan.rois[0] else None,
        averaged=averaged, decodable_all=decodable_all,
    )
