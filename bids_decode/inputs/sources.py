"""One subject's inputs: the registry of BOLD sources (``--bold-source``), one class per kind.

:data:`BOLD_SOURCES` maps each kind to its class; :meth:`BoldSource.parse` turns the option's
value into an instance, and :meth:`BoldSource.subject_inputs` gives the participant level what
it decodes (:class:`samples.SubjectInputs`: samples, ROI masks, TR, QC data), so the
participant level never asks which kind it has. ``auto`` (the default) is resolved here, once
(:func:`resolve_bold_source`), and the source records the value it stands for
(:attr:`BoldSource.option`). The kinds of today:

``raw``
    The dataset's own runs (:class:`RawRuns`).
``preproc-spm``
    ds001246's SPM-preprocessed runs (:class:`PreprocSpmRuns`).
``fmriprep``
    fMRIPrep derivatives, full outputs or minimal ones (transforms only, :class:`FmriprepRuns`).
``bdata=PATH``
    The authors' preprocessed samples in a bdpy BData file (:class:`BDataSource`).

Adding a kind is one subclass of :class:`BoldSource` (or, for BOLD runs next to the dataset's
events, of :class:`BidsRuns`) and one entry of :data:`BOLD_SOURCES`.

The runs of a :class:`BidsRuns` kind, and so every file it reads for them (image, events,
confounds, transforms: :class:`layout.Run`), come from its own methods:
:meth:`BidsRuns.subject_runs` (training and test runs of a run configuration) ->
:meth:`BidsRuns.find_runs` (one task and session pattern) -> :meth:`BidsRuns.run_of` (one
events file) -> :meth:`BidsRuns.run_files` (where this kind keeps the run's files).
"""

# long: the registry is one module (base classes, every kind and BOLD_SOURCES), so that a
# reader finds every --bold-source kind and how it finds its runs in one place

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from bids_decode.errors import MissingInputError, UsageError
from bids_decode.inputs import bdata
from bids_decode.inputs.alignment import align_runs
from bids_decode.inputs.annex import matching
from bids_decode.inputs.bids_names import entities_of, inherited_sidecars
from bids_decode.inputs.events import EventSpec
from bids_decode.inputs.fmriprep import RunTransforms, fmriprep_run
from bids_decode.inputs.layout import (
    Run,
    check_trs,
    events_files,
    events_stem,
    find_nifti,
    first_sorted,
    inherited_metadata,
    make_layout,
    missing_volumes,
    repetition_time,
)
from bids_decode.inputs.rois import RoiSpec, load_roi, mask_files, read_atlas_labels
from bids_decode.inputs.samples import InputQc, SubjectInputs, build_samples
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)

#: default of --bold-source: preproc-spm where the dataset ships it, else raw
AUTO = "auto"


def preproc_spm_root(bids_dir: Path, derivatives: dict[str, str]) -> Path:
    """Where ds001246 keeps its SPM-preprocessed runs (``-d preproc-spm=PATH`` overrides)."""
    return Path(derivatives.get("preproc-spm",
                                Path(bids_dir) / "derivatives" / "preproc-spm" / "output"))


def resolve_bold_source(text: str, bids_dir: Path, derivatives: dict[str, str]) -> str:
    """The concrete ``--bold-source``: ``auto`` becomes ``preproc-spm`` or ``raw`` (logged).

    Called by :meth:`BoldSource.parse` only, so ``auto`` is resolved once per participant run;
    the result is recorded as the run's ``bold_source`` (:attr:`BoldSource.option`).

    Parameters
    ----------
    text : str
        The option's value (``auto``, ``raw``, ``preproc-spm``, ``fmriprep`` or a path).
    bids_dir : Path
    derivatives : dict
        ``-d NAME=PATH`` folders.

    Returns
    -------
    str
        ``text`` itself unless it is ``auto``.
    """
    if text != AUTO:
        return text
    source = "preproc-spm" if preproc_spm_root(bids_dir, derivatives).is_dir() else "raw"
    LOGGER.info("BOLD source: %s (--bold-source %s: %s)", source, text,
                "the dataset has derivatives/preproc-spm" if source == "preproc-spm"
                else "no derivatives/preproc-spm in the dataset")
    return source




@dataclass(frozen=True)
class BoldSource(ABC):
    """Where one run's (or one subject's) BOLD data come from: one subclass per kind.

    Attributes
    ----------
    root : Path or None
        Folder (or file) of the source; None for the dataset's own runs.
    space : str
        Output space of the derivatives (fMRIPrep's ``space-<space>``).
    option : str
        The ``--bold-source`` value this source stands for, ``auto`` resolved (recorded as the
        run's ``bold_source``); set by :meth:`parse`.
    kind : str
        The kind's name in :data:`BOLD_SOURCES` (class attribute).
    takes_path : bool
        The option is ``KIND=PATH`` rather than ``KIND`` (class attribute).
    """

    root: Path | None = None
    space: str = "T1w"
    option: str = field(default="", compare=False)
    kind: ClassVar[str] = ""
    takes_path: ClassVar[bool] = False

    @classmethod
    def parse(cls, text: str, bids_dir: Path, derivatives: dict[str, str],
              space: str) -> BoldSource:
        """The source named by ``--bold-source``: a kind of :data:`BOLD_SOURCES` (``KIND``,
        or ``KIND=PATH`` for kinds that take a path), ``auto``
        (:func:`resolve_bold_source`), or the PATH of a derivatives folder (its
        kind is the first whose :meth:`detect` accepts it)."""
        text = resolve_bold_source(text, bids_dir, derivatives)
        kind, sep, path = text.partition("=")
        source = BOLD_SOURCES.get(kind if sep else text)
        if source is not None and source.takes_path == bool(sep):
            found = source.locate(Path(path) if sep else None, bids_dir, derivatives, space)
        else:
            root = _checked_root(Path(text), "--bold-source")
            found = next(s for s in BOLD_SOURCES.values() if s.detect(root))(root, space)
        return replace(found, option=text)

    @classmethod
    def of(cls, config) -> BoldSource:
        """The source of a run configuration (``--bold-source``, ``-d``, ``--space``): the
        one :meth:`parse` of a run, whose :attr:`option` the run records."""
        return cls.parse(config.bold_source, Path(config.bids_dir), config.derivative_paths,
                         config.space)

    @classmethod
    def locate(cls, path: Path | None, bids_dir: Path, derivatives: dict[str, str],
               space: str) -> BoldSource:
        """This kind, from ``KIND=PATH``'s PATH (None for ``KIND``) and the ``-d`` folders."""
        return cls(path, space)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether the folder given as ``--bold-source PATH`` holds this kind."""
        return False

    @abstractmethod
    def subject_inputs(self, config, subject: str) -> SubjectInputs:
        """Steps 1-3 of a participant run: samples and ROI masks of one subject.

        Parameters
        ----------
        config : RunConfig
        subject : str
            Label without ``sub-``.
        """

    @abstractmethod
    def input_files(self, config, subject: str) -> list[Path]:
        """The files :meth:`subject_inputs` reads, found by the same code without opening
        any image (``--list-inputs``, :func:`annex.absent_files`).

        Parameters
        ----------
        config : RunConfig
        subject : str
            Label without ``sub-``.
        """


class RunFiles(NamedTuple):
    """The files of one run (:meth:`BidsRuns.run_files`).

    Attributes
    ----------
    bold : Path or None
        The 4-D image the samples are cut from (None: not found).
    expected : Path
        Where it was looked for (for messages).
    confounds : Path or None
    transforms : RunTransforms or None
    """

    bold: Path | None
    expected: Path
    confounds: Path | None = None
    transforms: RunTransforms | None = None


@dataclass(frozen=True)
class BidsRuns(BoldSource):
    """BOLD runs matching the dataset's ``_events.tsv`` files (:meth:`find_runs`).

    A subclass says where a run's image is (:meth:`run_files`) and whether its runs are
    preprocessed (:attr:`preprocessed`).

    Attributes
    ----------
    preprocessed : bool
        Derivatives: motion-corrected runs in one space, which may lack volumes at their
        start (class attribute). Runs that are not are refused at other placements than the
        masks' (:func:`alignment.align_runs`).
    """

    preprocessed: ClassVar[bool] = True

    @abstractmethod
    def run_files(self, events: Path, bids_dir: Path, raw_bold: Path | None) -> RunFiles:
        """The files of the run of ``events`` (``raw_bold``: the dataset's run, if any)."""

    def missing_hint(self) -> str:
        """Start of the fix of a "No BOLD run" message."""
        return f"Check the {self.kind} derivatives ({self.root}), "

    def volume_offset(self, events: Path, bold: Path, raw_bold: Path | None,
                      tr: float) -> int:
        """Volumes missing at the start of ``bold`` relative to the events (0 for raw runs)."""
        return missing_volumes(events, bold, raw_bold, tr) if self.preprocessed else 0

    def subject_inputs(self, config, subject: str) -> SubjectInputs:
        """Steps 1-3 on a BIDS dataset: runs and events, ROI masks, samples."""
        bids_dir = Path(config.bids_dir)
        LOGGER.info("sub-%s: indexing %s", subject, bids_dir)
        # 1. layout
        train_runs, test_runs, tr = self.subject_runs(config, subject)
        # 2. ROIs, on the reference grid (runs not in the masks' space are refused here)
        specs, roots = self._rois(config)
        ref, runs = align_runs(self.kind, train_runs + test_runs,
                               mask_files(bids_dir, subject, specs[0], roots, config.atlas)[0],
                               subject, assume_aligned=config.assume_aligned,
                               preprocessed=self.preprocessed)
        train_runs, test_runs = runs[:len(train_runs)], runs[len(train_runs):]
        masks = {s.name: load_roi(bids_dir, subject, s, ref, roots, config.atlas)
                 for s in specs}
        union = np.logical_or.reduce(list(masks.values()))
        # 3. samples
        same_task = config.task == config.train_task
        samples = build_samples(
            train_runs, test_runs, union, ref.shape, shift=config.hrf_shift,
            train_events=EventSpec.for_task(config.train_task, config.stimulus_column,
                                            config.sample_events_for("train")),
            test_events=EventSpec.for_task(config.task,
                                           config.stimulus_column if same_task else None,
                                           config.sample_events_for("test")),
            confounds=config.confounds, train_average=config.train_average,
            progress=lambda it: progress_bar(it, desc=f"sub-{subject} runs", unit="run"),
        )
        files = {s.name: mask_files(bids_dir, subject, s, roots, config.atlas) for s in specs}
        return SubjectInputs(samples, masks, files, tr, InputQc(train_runs[0], union, ref.shape),
                             affine=np.asarray(ref.affine, dtype=np.float64))

    def input_files(self, config, subject: str) -> list[Path]:
        """Each run's files (:meth:`layout.Run.input_files`) and sidecars, the ROIs' masks and
        the atlas labels, found as :meth:`subject_inputs` finds them (:meth:`subject_runs`
        with ``read=False``, :func:`rois.mask_files`)."""
        bids_dir = Path(config.bids_dir)
        train_runs, test_runs, _ = self.subject_runs(config, subject, read=False)
        specs, roots = self._rois(config)
        files = [*([Path(config.atlas_labels)] if config.atlas_labels else [])]
        for run in train_runs + test_runs:
            files += run.input_files(self.preprocessed, config.confounds)
            files += [*inherited_sidecars(run.events, "*_bold.json", bids_dir),
                      *inherited_sidecars(run.events, "*_events.json")]
        for spec in specs:
            files += mask_files(bids_dir, subject, spec, roots, config.atlas)
        return files

    def _rois(self, config) -> tuple[list[RoiSpec], list]:
        """The requested ROIs and the folders searched for their masks."""
        labels = read_atlas_labels(config.atlas_labels) if config.atlas_labels else None
        specs = [RoiSpec.parse(r, labels) for r in config.roi]
        return specs, [*config.derivative_paths.values(), *([self.root] if self.root else [])]

    def subject_runs(self, config, subject: str,
                     read: bool = True) -> tuple[list[Run], list[Run], float]:
        """Training runs, test runs (disjoint) and their common TR.

        Parameters
        ----------
        config : RunConfig
            Its tasks and session patterns select the runs.
        subject : str
            Label without ``sub-``.
        read : bool
            False: find the files only, without opening an image (TR NaN; see
            :meth:`run_of`): what ``--list-inputs`` and the annex check use.
        """
        layout = make_layout(Path(config.bids_dir), [subject])
        train_runs = self.find_runs(layout, subject, config.train_task, config.train_session,
                                    what="training", read=read)
        test_runs = self.find_runs(layout, subject, config.task, config.test_session_glob,
                                   what="test", read=read)
        shared = sorted({r.bold.name for r in train_runs} & {r.bold.name for r in test_runs})
        if shared:
            raise UsageError(
                f"{len(shared)} run(s) of sub-{subject} would both train and test the decoders "
                f"(e.g. {shared[0]}): --train-session '{config.train_session}' and "
                f"--test-session '{config.test_session_glob}' overlap. Choose disjoint session "
                "patterns."
            )
        if not read:
            return train_runs, test_runs, float("nan")
        tr = check_trs(train_runs + test_runs)
        LOGGER.info("sub-%s: %d training and %d test runs (TR %.3g s)", subject,
                    len(train_runs), len(test_runs), tr)
        return train_runs, test_runs, tr

    def find_runs(self, layout, subject: str, task: str, session_glob: str, *,
                  what: str, read: bool = True) -> list[Run]:
        """Runs of one subject, task and session pattern, with events, TR and this source's
        image (and confounds, transforms) of each.

        Parameters
        ----------
        layout, subject, task, session_glob
            As :func:`layout.events_files` (the runs are those of its events files).
        what : str
            'training' or 'test' (for messages).
        read : bool
            False: find the files only (:meth:`run_of`).

        Returns
        -------
        list of Run, sorted by session and run.
        """
        bids_dir = Path(layout.root)
        runs = [self.run_of(events, bids_dir, task, read)
                for events in events_files(layout, subject, task, session_glob)]
        runs.sort(key=lambda r: (r.session or "", r.run or "", r.bold.name))
        offsets = sorted({r.volume_offset for r in runs})
        if self.preprocessed and runs and read:
            LOGGER.info("%d %s runs of sub-%s (%s): %s volume(s) missing at the start relative "
                        "to the events (from the volume counts); events are aligned "
                        "accordingly.", len(runs), what, subject, self.kind,
                        "/".join(map(str, offsets)))
        if not runs:
            sessions = sorted({str(s) for s in layout.get_sessions(subject=subject)})
            raise MissingInputError(
                f"No {what} runs for sub-{subject}, task '{task}', sessions matching "
                f"'{session_glob}' in {layout.root} (sessions present: {sessions or 'none'}). "
                f"Fix --{'train' if what == 'training' else 'test'}-session or --task."
            )
        return runs

    def run_of(self, events: Path, bids_dir: Path, task: str, read: bool = True) -> Run:
        """The :class:`layout.Run` of one events file: this source's image of it
        (:meth:`run_files`), its TR and volume offset (``read=False``: no image is opened;
        TR from the sidecars or NaN, offset 0)."""
        ents = entities_of(events.name)
        raw_bold = find_nifti(events.parent, events_stem(events) + "_bold")
        bold, expected, confounds, xfm = self.run_files(events, bids_dir, raw_bold)
        if bold is None:
            raise MissingInputError(
                f"No BOLD run for {events.name} (expected {expected}). "
                + self.missing_hint()
                + "or exclude its session with --train-session/--test-session."
            )
        if not read:
            tr = inherited_metadata(bids_dir, events).get("RepetitionTime")
            return Run(bold, events, ents.get("ses"), ents.get("run"),
                       float("nan") if tr is None else float(tr), 0, confounds, xfm, raw_bold)
        tr = repetition_time(bids_dir, events, bold, task)
        offset = self.volume_offset(events, bold, raw_bold, tr)
        return Run(bold, events, ents.get("ses"), ents.get("run"), tr, offset, confounds, xfm,
                   raw_bold)


@dataclass(frozen=True)
class RawRuns(BidsRuns):
    """``raw``: the dataset's own runs (``sub-*/**/func/*_bold.nii[.gz]``)."""

    kind: ClassVar[str] = "raw"
    preprocessed: ClassVar[bool] = False

    def run_files(self, events, bids_dir, raw_bold) -> RunFiles:
        return RunFiles(raw_bold, events.parent / (events_stem(events) + "_bold.nii.gz"))

    def missing_hint(self) -> str:
        return "Download the run's images, "


@dataclass(frozen=True)
class PreprocSpmRuns(BidsRuns):
    """``preproc-spm``: ds001246's ``*_bold_preproc.nii.gz`` runs (first volumes removed)."""

    kind: ClassVar[str] = "preproc-spm"

    @classmethod
    def locate(cls, path, bids_dir, derivatives, space) -> BoldSource:
        return cls(_checked_root(preproc_spm_root(bids_dir, derivatives), cls.kind), space)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return next(root.rglob("*_bold_preproc.nii*"), None) is not None

    def run_files(self, events, bids_dir, raw_bold) -> RunFiles:
        folder = self.root / events.parent.relative_to(bids_dir)
        stem = events_stem(events)
        return RunFiles(find_nifti(folder, stem + "_bold_preproc"),
                        folder / (stem + "_bold_preproc.nii.gz"))


@dataclass(frozen=True)
class FmriprepRuns(BidsRuns):
    """``fmriprep``: fMRIPrep's ``desc-preproc_bold`` runs and confounds, or, with its minimal
    outputs, the raw runs and their transforms (:func:`fmriprep.fmriprep_run`). Any
    ``--bold-source PATH`` folder that no other kind claims is taken to be fMRIPrep's."""

    kind: ClassVar[str] = "fmriprep"

    @classmethod
    def locate(cls, path, bids_dir, derivatives, space) -> BoldSource:
        root = Path(derivatives.get("fmriprep", bids_dir / "derivatives" / "fmriprep"))
        return cls(_checked_root(root, cls.kind), space)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return True

    def run_files(self, events, bids_dir, raw_bold) -> RunFiles:
        folder = self.root / events.parent.relative_to(bids_dir)
        stem = events_stem(events)
        bold = find_nifti(folder, f"{stem}_space-{self.space}*_desc-preproc_bold")
        conf = first_sorted(matching(folder, f"{stem}_desc-confounds_timeseries.tsv")) \
            or first_sorted(matching(folder, f"{stem}_desc-confounds_regressors.tsv"))
        expected = folder / f"{stem}_space-{self.space}_desc-preproc_bold.nii.gz"
        bold, xfm = fmriprep_run(folder, stem, self.space, bold, raw_bold, expected)
        return RunFiles(bold, expected, conf, xfm)


@dataclass(frozen=True)
class BDataSource(BoldSource):
    """``bdata=PATH``: the authors' preprocessed samples in a bdpy BData file
    (:mod:`bids_decode.inputs.bdata`)."""

    kind: ClassVar[str] = "bdata"
    takes_path: ClassVar[bool] = True

    def subject_inputs(self, config, subject: str) -> SubjectInputs:
        return bdata.subject_inputs(config, subject, self.root)

    def input_files(self, config, subject: str) -> list[Path]:
        """The subject's BData file (its ROIs are columns of the same file)."""
        return [bdata.subject_path(self.root, subject)]


#: ``--bold-source`` kind -> class; a ``--bold-source PATH`` folder is matched in this order.
BOLD_SOURCES: dict[str, type[BoldSource]] = {
    cls.kind: cls for cls in (RawRuns, PreprocSpmRuns, FmriprepRuns, BDataSource)
}


def _checked_root(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise MissingInputError(
            f"The BOLD source folder for '{what}' ({root}) does not exist. Give its location "
            f"with -d {what}=PATH (or --bold-source PATH), or use --bold-source raw."
        )
    return root
