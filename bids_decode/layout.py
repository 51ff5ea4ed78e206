"""Find one subject's runs, events and metadata in a BIDS dataset (pybids)."""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, MissingInputError, UsageError

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
    """

    bold: Path
    events: Path
    session: str | None
    run: str | None
    tr: float
    volume_offset: int = 0

    @property
    def label(self) -> str:
        return self.bold.name.split("_bold")[0]


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


def resolve_subjects(bids_dir: Path, labels: tuple[str, ...]) -> list[str]:
    """Subjects to run: the given labels (with or without ``sub-``) or all of them."""
    found = list_subjects(bids_dir)
    if not labels:
        if not found:
            raise MissingInputError(
                f"No sub-* folders in {bids_dir}: nothing to process. Is BIDS_DIR right?"
            )
        return found
    wanted = [strip_sub(lab) for lab in labels]
    missing = [w for w in wanted if w not in found]
    if missing:
        raise MissingInputError(
            f"Participant(s) {['sub-' + m for m in missing]} not found in {bids_dir} (it has "
            f"{['sub-' + f for f in found][:10]}). Fix --participant-label."
        )
    return wanted


def _events_for(bold: Path) -> Path:
    name = bold.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        stem = bold.stem
    stem = re.sub(r"_bold(_preproc)?$", "", stem)
    stem = re.sub(r"_(space|desc|res|den)-[A-Za-z0-9]+", "", stem)
    return bold.with_name(stem + "_events.tsv")


def find_runs(
    layout, subject: str, task: str, session_glob: str, *, what: str
) -> list[Run]:
    """Raw BOLD runs of one subject, task and session pattern, with events and TR.

    Parameters
    ----------
    layout : bids.BIDSLayout
    subject : str
        Label without ``sub-``.
    task : str
    session_glob : str
        fnmatch pattern on the session label (``perceptionTraining*``); ``*`` for datasets
        without sessions.
    what : str
        'training' or 'test' (for messages).

    Returns
    -------
    list of Run, sorted by session and run.
    """
    files = layout.get(
        subject=subject, task=task, suffix="bold", extension=[".nii.gz", ".nii"],
        datatype="func", return_type="object",
    )
    runs = []
    for f in files:
        ses = f.entities.get("session")
        if not fnmatch.fnmatchcase(str(ses) if ses is not None else "", session_glob) and not (
            ses is None and session_glob == "*"
        ):
            continue
        bold = Path(f.path)
        events = _events_for(bold)
        if not events.is_file():
            raise MissingInputError(
                f"The BOLD run {bold} has no events file (expected {events}). Add the "
                "events.tsv of every run, or exclude the run's session with --train-session/"
                "--test-session."
            )
        meta = f.get_metadata()
        tr = meta.get("RepetitionTime")
        if tr is None:
            raise DataError(
                f"No RepetitionTime for {bold} in its JSON sidecars. Add it (e.g. to "
                f"task-{task}_bold.json at the dataset's top level)."
            )
        run = f.entities.get("run")
        runs.append(Run(bold, events, None if ses is None else str(ses),
                        None if run is None else str(run), float(tr)))
    runs.sort(key=lambda r: (r.session or "", r.run or "", r.bold.name))
    if not runs:
        sessions = sorted({str(s) for s in layout.get_sessions(subject=subject)})
        raise MissingInputError(
            f"No {what} runs for sub-{subject}, task '{task}', sessions matching "
            f"'{session_glob}' in {layout.root} (sessions present: {sessions or 'none'}). "
            f"Fix --{'train' if what == 'training' else 'test'}-session or --task."
        )
    return runs


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


def check_session_glob(glob: str) -> str:
    if not glob or "/" in glob:
        raise UsageError(f"A session pattern must be an fnmatch pattern like "
                         f"'perceptionTraining*'; got {glob!r}.")
    return glob
