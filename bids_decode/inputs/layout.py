"""One subject's files in a BIDS dataset (pybids): subjects, the index, events files, the runs'
metadata (TR from the sidecars or headers, volume counts) and the :class:`Run` record.

Which BOLD image, confounds and transforms a run has is its source's to say
(:meth:`bids_decode.inputs.sources.BidsRuns.find_runs`); this module knows only the dataset.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bids_decode.errors import DataError, MissingInputError
from bids_decode.inputs.annex import matching
from bids_decode.inputs.bids_names import entities_of, inherited_sidecars, read_sidecar
from bids_decode.inputs.fmriprep import RunTransforms

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One functional run and what is needed to cut it into samples.

    Attributes
    ----------
    bold : Path
        The 4-D BOLD image used for the samples.
    events : Path
        Its ``_events.tsv``.
    session : str or None
    run : str or None
    tr : float
        Repetition time (s).
    volume_offset : int
        Volumes dropped from the start of ``bold`` relative to the events' time zero
        (e.g. 3 for ds001246's ``preproc-spm`` runs, whose first 9 s were removed).
    confounds : Path or None
        fMRIPrep confounds table of the run.
    transforms : fmriprep.RunTransforms or None
        fMRIPrep's transforms of the run (resampling and motion parameters), or how a run on
        another grid reaches the reference grid.
    raw_bold : Path or None
        The dataset's own run beside the events (a derivative's volume count is compared
        with it).
    """

    bold: Path
    events: Path
    session: str | None
    run: str | None
    tr: float
    volume_offset: int = 0
    confounds: Path | None = None
    transforms: RunTransforms | None = None
    raw_bold: Path | None = None

    @property
    def label(self) -> str:
        return self.bold.name.split("_bold")[0]

    def input_files(self, preprocessed: bool, confounds: str | None) -> list[Path]:
        """The files that reading this run opens (``--list-inputs``, the annex check).

        The image and events; for a derivative (``preprocessed``) the raw run, whose volume
        count aligns it (:func:`missing_volumes`); fMRIPrep's transforms where the run is
        resampled through them; with ``--confounds``, the confounds table or, without one,
        the head-motion transforms the motion parameters come from.
        """
        files = [self.bold, self.events]
        if preprocessed and self.raw_bold is not None:
            files.append(self.raw_bold)
        xf = self.transforms
        if xf is not None and xf.resample and xf.coreg is not None:
            files += [xf.coreg, xf.hmc]
        if confounds and self.confounds is not None:
            files.append(self.confounds)
        elif confounds and xf is not None and xf.hmc is not None:
            files.append(xf.hmc)
        return files


def strip_sub(label: str) -> str:
    """``'sub-01'`` or ``'01'`` -> ``'01'``."""
    return label[4:] if label.startswith("sub-") else label


def check_bids_dir(bids_dir: Path) -> None:
    """Refuse a path that does not exist or is not a BIDS dataset."""
    if not bids_dir.exists():
        raise MissingInputError(
            f"BIDS_DIR {bids_dir} does not exist. Check the path (in a container: is the dataset "
            "mounted, e.g. 'docker run -v /data/ds:/data:ro ...')."
        )
    if not bids_dir.is_dir() or not (bids_dir / "dataset_description.json").is_file():
        raise MissingInputError(
            f"BIDS_DIR {bids_dir} is not a BIDS dataset: it has no dataset_description.json. "
            "Point BIDS_DIR at the dataset's top folder (the one holding sub-XX folders)."
        )


def make_layout(bids_dir: Path, subjects: list[str] | None = None):
    """A pybids layout indexing only raw subjects' folders (not sourcedata/derivatives/code)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore = ["code", "sourcedata", "derivatives", "stimuli", "models", re.compile(r"^\.")]
    if subjects:
        keep = "|".join(re.escape(s) for s in subjects)
        ignore.append(re.compile(rf"(^|/)sub-(?!(?:{keep})(?:[/_.]|$))[^/_]+"))
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)
    return BIDSLayout(str(bids_dir), validate=False, indexer=indexer)


def list_subjects(bids_dir: Path) -> list[str]:
    """Subject labels (without ``sub-``) found as folders of the dataset."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def missing_labels(labels, found) -> tuple[list[str], list[str]]:
    """The requested labels without ``sub-``, and those of them not in ``found``."""
    wanted = [strip_sub(lab) for lab in labels]
    return wanted, [w for w in wanted if w not in found]


def resolve_subjects(bids_dir: Path, labels: tuple[str, ...]) -> list[str]:
    """Subjects to run: the given labels (with or without ``sub-``) or all of them."""
    found = list_subjects(bids_dir)
    if not labels:
        if not found:
            raise MissingInputError(
                f"No sub-* folders in {bids_dir}: nothing to process. Is BIDS_DIR right?"
            )
        return found
    wanted, missing = missing_labels(labels, found)
    if missing:
        raise MissingInputError(
            f"Participant(s) {['sub-' + m for m in missing]} not found in {bids_dir} (it has "
            f"{['sub-' + f for f in found][:10]}). Fix --participant-label."
        )
    return wanted


#: Per-task defaults: which events are samples and which column names them.
TASKS: dict[str, dict] = {
    "perception": {"event_type": "stimulus", "columns": ("stim_file", "stimulus_name"),
                   "session": "perceptionTest*", "drop_repeats": True},
    "imagery": {"event_type": "imagery", "columns": ("category_name", "category_id"),
                "session": "imageryTest*", "drop_repeats": False},
}
GENERIC_TASK = {"event_type": "stimulus", "columns": ("stim_file", "stimulus_name"),
                "session": "*", "drop_repeats": True}


def task_defaults(task: str) -> dict:
    return TASKS.get(task, GENERIC_TASK)


def inherited_metadata(bids_dir: Path, events: Path) -> dict:
    """JSON sidecar metadata of the run's BOLD by the BIDS inheritance principle."""
    meta: dict = {}
    for js in inherited_sidecars(events, "*_bold.json", bids_dir):
        meta.update(read_sidecar(js))
    return meta


def events_stem(events: Path) -> str:
    """``sub-01_task-x_run-1_events.tsv`` -> ``sub-01_task-x_run-1``."""
    return events.name[: -len("_events.tsv")]


def first_sorted(paths) -> Path | None:
    """The first of ``paths`` in sorted order (None when there are none)."""
    return next(iter(sorted(paths)), None)


def find_nifti(folder: Path, pattern: str) -> Path | None:
    """The first ``pattern.nii.gz`` or ``pattern.nii`` in ``folder`` (pattern may glob;
    git-annex links without content count)."""
    return first_sorted([*matching(folder, pattern + ".nii.gz"),
                         *matching(folder, pattern + ".nii")])


def missing_volumes(events: Path, bold: Path, raw_bold: Path | None, tr: float) -> int:
    """Volumes missing at the start of a derivative run, from the volume counts."""
    import nibabel as nib

    n = nib.load(str(bold)).shape[3]
    if raw_bold is not None and raw_bold.exists():
        expected = nib.load(str(raw_bold)).shape[3]
        how = f"the raw run has {expected}"
    else:
        import pandas as pd

        ev = pd.read_csv(events, sep="\t", na_values=["n/a"])
        expected = int(round((ev["onset"] + ev["duration"]).max() / tr))
        how = f"the events span {expected} volumes"
    offset = expected - n
    if offset < 0:
        raise DataError(
            f"{bold} has {n} volumes, more than expected ({how}); cannot align it to {events}. "
            "Check that the derivative belongs to this run."
        )
    LOGGER.debug("%s: %d volumes, %s: offset %d", bold.name, n, how, offset)
    return offset


def events_files(layout, subject: str, task: str, session_glob: str) -> list[Path]:
    """The ``_events.tsv`` of one subject's runs of a task in the sessions matching a pattern.

    Parameters
    ----------
    layout : bids.BIDSLayout
    subject : str
        Label without ``sub-``.
    task : str
    session_glob : str
        fnmatch pattern on the session label (``perceptionTraining*``); ``*`` also matches
        datasets without sessions.

    Returns
    -------
    list of Path, in pybids' order.

    Raises
    ------
    MissingInputError
        A BOLD run of these sessions has no events file.
    """
    files = layout.get(subject=subject, task=task, suffix="events", extension=".tsv",
                       return_type="filename")
    def in_sessions(name: str) -> bool:
        ses = entities_of(name).get("ses")
        return fnmatch.fnmatchcase(ses or "", session_glob) or (ses is None and
                                                                 session_glob == "*")

    bolds = layout.get(subject=subject, task=task, suffix="bold",
                       extension=[".nii.gz", ".nii"], return_type="filename")
    for b in map(Path, bolds):
        ev = b.with_name(b.name.split("_bold")[0] + "_events.tsv")
        if in_sessions(b.name) and not ev.is_file():
            raise MissingInputError(
                f"The BOLD run {b} has no events file (expected {ev}). Add the events.tsv of "
                "every run, or exclude the run's session with --train-session/--test-session."
            )
    return [Path(path) for path in files if in_sessions(Path(path).name)]


def repetition_time(bids_dir: Path, events: Path, bold: Path, task: str) -> float:
    """The TR of a run: ``RepetitionTime`` of its sidecars (:func:`inherited_metadata`), else
    the NIfTI header's; DataError when neither has it."""
    tr = inherited_metadata(bids_dir, events).get("RepetitionTime")
    if tr is None:
        tr = _header_tr(bold)
    if tr is None:
        raise DataError(
            f"No RepetitionTime for {bold}: none in the JSON sidecars and none in the NIfTI "
            f"header. Add it (e.g. to task-{task}_bold.json at the dataset's top level)."
        )
    return float(tr)


def _header_tr(bold: Path) -> float | None:
    import nibabel as nib

    try:
        hdr = nib.load(str(bold)).header
        zooms = hdr.get_zooms()
        unit = hdr.get_xyzt_units()[1]
    except Exception:  # noqa: BLE001 - unreadable headers are reported when loading the run
        return None
    if len(zooms) < 4 or zooms[3] <= 0:
        return None
    return float(zooms[3]) / 1000.0 if unit == "msec" else float(zooms[3])


def check_trs(runs: list[Run]) -> float:
    """The common TR of the runs; refuse mixed TRs."""
    trs = sorted({r.tr for r in runs})
    if len(trs) > 1:
        examples = {tr: next(r.bold.name for r in runs if r.tr == tr) for tr in trs}
        raise DataError(
            f"The runs have different repetition times {trs} (e.g. {examples}). Decoding needs "
            "one TR: check the sidecars' RepetitionTime or select sessions with the same TR."
        )
    return trs[0]
