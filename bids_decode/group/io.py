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
    rois: list[str]
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]
    test_names: list[str]
    features_file: Path
    notes: list[str]


def find_outputs(output_dir: Path, task: str, labels=()) -> list[SubjectOutputs]:
    """Participant outputs of ``task`` in ``output_dir``, one entry per subject that has any.

    Parameters
    ----------
    output_dir : Path
    task : str
    labels : sequence of str
        Subjects to keep (with or without ``sub-``); all when empty.
    """
    output_dir = Path(output_dir)
    per_sub = outputs.find_decoding_files(output_dir, task)
    wanted, missing = missing_labels(labels, per_sub)
    if missing:
        raise MissingInputError(
            f"No participant outputs for task '{task}' of {['sub-' + m for m in missing]} in "
            f"{output_dir} (expected sub-<L>/func/sub-<L>_task-{task}_desc-<ROI>_decoding.h5; "
            f"subjects with outputs: {['sub-' + s for s in sorted(per_sub)] or 'none'}). Run the "
            "participant level for them first, or fix --participant-label / --task."
        )
    return [outputs.read_subject(output_dir, label, task, per_sub[label])
            for label in wanted or sorted(per_sub)]


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
                     sidecar_keys, config_keys) -> GroupPlan:
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
            f"two; {output_dir} has outputs for task '{task}' from {have} (files "
            f"sub-<L>/func/sub-<L>_task-{task}_desc-<ROI>_decoding.h5). Run the participant level "
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
            f"subject's sub-<L>/sub-<L>_task-{task}_config.json lists them; 'bids_decode --config "
            "FILE' repeats a run), or restrict the group level to matching subjects with "
            "--participant-label."
        )
    ref = subjects[0]
    notes, feat = _notes(subjects)
    if not feat:
        with h5py.File(next(iter(ref.h5.values())), "r") as f:
            feat = f.attrs.get("features_file", "")
    return GroupPlan(subjects, list(ref.h5), list(ref.layers), dict(ref.shapes),
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
