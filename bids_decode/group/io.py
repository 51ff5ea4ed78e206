"""Group level, steps 1-2: find the participant outputs and check that they can be compared."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py

from bids_decode.errors import DataError, MissingInputError
from bids_decode.inputs.layout import missing_labels
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import SubjectOutputs

LOGGER = logging.getLogger(__name__)


@dataclass
class GroupPlan:
    """What the group level works on, after the consistency checks."""

    subjects: list[SubjectOutputs]
    network: str
    rois: list[str]
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]
    test_names: list[str]
    features_file: Path
    notes: list[str]


def find_outputs(output_dir: Path, task: str, labels=(), *,
                 network: str) -> list[SubjectOutputs]:
    """Participant outputs of ``task`` and ``network`` in ``output_dir``, one entry per subject.

    Parameters
    ----------
    output_dir : Path
    task : str
    labels : sequence of str
        Subjects to keep (with or without ``sub-``); all when empty: then every subject with
        outputs of ``task`` (of any network) must have this network's.
    network : str
        Name or ``net-`` label.

    Raises
    ------
    MissingInputError
        A subject of ``labels`` has no outputs of the network.
    DataError
        Without ``labels``: some subjects have other networks' outputs but not this one's.
    """
    output_dir = Path(output_dir)
    found = outputs.find_networks(output_dir, task)
    label = outputs.network_label(network)
    per_sub = found.get(label, {})
    wanted, missing = missing_labels(labels, per_sub)
    pattern = f"sub-<L>/func/sub-<L>_task-{task}_net-{label}_desc-<ROI>_decoding.h5"
    if missing:
        raise MissingInputError(
            f"No participant outputs of network {network} for task '{task}' of "
            f"{['sub-' + m for m in missing]} in {output_dir} (expected {pattern}; subjects "
            f"with outputs: {['sub-' + s for s in sorted(per_sub)] or 'none'}). Run the "
            "participant level for them first, or fix --participant-label / --task."
        )
    if not labels:
        lacking = sorted({s for subs in found.values() for s in subs} - set(per_sub))
        if lacking:
            raise DataError(
                f"The subjects {['sub-' + s for s in lacking]} in {output_dir} have outputs of "
                f"task '{task}' but none of network {network} (no {pattern}), which "
                f"{['sub-' + s for s in sorted(per_sub)]} have. Decode network {network} for "
                "them too (the participant level with its features file), or leave them out "
                "with --participant-label."
            )
    return [outputs.read_subject(output_dir, lab, task, per_sub[lab], network=network)
            for lab in wanted or sorted(per_sub)]


def _fmt(values: dict) -> str:
    return ", ".join(f"sub-{k}={json.dumps(v, default=str)}" for k, v in values.items())


def _differences(subjects: list[SubjectOutputs], sidecar_keys, config_keys) -> list[str]:
    """What differs between the subjects' ROIs, layers, shapes, parameters and test images."""
    ref = subjects[0]
    diffs = []

    def compare(what: str, get) -> None:
        vals = {s.label: get(s) for s in subjects}
        if any(v != vals[ref.label] for v in vals.values()):
            diffs.append(f"{what}: {_fmt(vals)}")

    compare("ROIs", lambda s: list(s.h5))
    compare("layers", lambda s: s.layers)
    if not diffs:
        compare("unit shapes", lambda s: {k: list(v) for k, v in s.shapes.items()})
        for roi in ref.h5:
            for key in sidecar_keys:
                compare(f"{key} (sidecar of ROI {roi})", lambda s, k=key, r=roi:
                        s.sidecars[r].get(k))
        for key in config_keys:
            compare(f"{key} (run config)", lambda s, k=key: s.config.get(k))
        compare("test images", lambda s: sorted(s.test_names))
    return diffs


def check_consistent(output_dir: Path, task: str, subjects: list[SubjectOutputs], *,
                     sidecar_keys, config_keys, network: str) -> GroupPlan:
    """Refuse fewer than two subjects, or subjects run with different ROIs, layers, parameters.

    Parameters
    ----------
    sidecar_keys, config_keys : sequence of str
        ROI-sidecar and run-config entries that must be equal across subjects.

    Raises
    ------
    MissingInputError
        Fewer than two subjects have outputs.
    DataError
        Subjects differ in ROIs, layers, unit shapes, test images or decoding parameters.
    """
    if len(subjects) < 2:
        have = [f"sub-{s.label}" for s in subjects] or "none"
        raise MissingInputError(
            f"The group level compares subjects and needs the participant outputs of at least "
            f"two; {output_dir} has outputs of network {network} for task '{task}' from {have} "
            f"(files sub-<L>/func/sub-<L>_task-{task}_net-{outputs.network_label(network)}"
            "_desc-<ROI>_decoding.h5). Run the participant level "
            "for more subjects first ('bids_decode BIDS_DIR OUTPUT_DIR participant "
            "--participant-label ...'), or check --participant-label and --task."
        )
    diffs = _differences(subjects, sidecar_keys, config_keys)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise DataError(
            f"The subjects' participant outputs in {output_dir} were made with different "
            f"ROIs, layers or parameters, so their unit accuracies cannot be compared: {shown}. "
            "Rerun the participant level of the odd subjects with the same options (each "
            f"subject's sub-<L>/sub-<L>_task-{task}_net-<N>_config.json lists them; "
            "'bids_decode --config FILE' repeats a run), or restrict the group level to "
            "matching subjects with --participant-label."
        )
    ref = subjects[0]
    notes, feat = _notes(subjects)
    if not feat:
        with h5py.File(next(iter(ref.h5.values())), "r") as f:
            feat = f.attrs.get("features_file", "")
    return GroupPlan(subjects, network, list(ref.h5), list(ref.layers), dict(ref.shapes),
                     list(ref.test_names), Path(str(feat)), notes)


def _notes(subjects: list[SubjectOutputs]) -> tuple[list[str], str | None]:
    """Warnings about comparable subjects (logged), and the first subject's features file."""
    notes = []
    missing_cfg = [f"sub-{s.label}" for s in subjects if not s.config]
    if missing_cfg:
        notes.append(f"No run configuration JSON for {missing_cfg}: their parameters were "
                     "compared from the sidecars only.")
    paths = {s.label: s.first_sidecar.get("FeaturesFile") for s in subjects}
    if len(set(paths.values())) > 1:
        notes.append(f"Subjects used different features files ({_fmt(paths)}) with the same "
                     "attributes and unit shapes; the first one is used as the truth of the "
                     "Averaged subject.")
    for n in notes:
        LOGGER.warning(n)
    return notes, paths[subjects[0].label]
