"""One subject's inputs: the registry of BOLD sources (``--bold-source``), one class per kind.

:data:`BOLD_SOURCES` maps each kind to its class; :meth:`BoldSource.parse` turns the option's
value into an instance, and :meth:`BoldSource.subject_inputs` gives the participant level what
it decodes (:class:`SubjectInputs`: samples, ROI masks, TR, QC writer), so the participant level
never asks which kind it has. The kinds of today:

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
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from bids_decode.errors import MissingInputError, UsageError
from bids_decode.inputs.alignment import (
    RunTransforms,
    align_runs,
    fmriprep_run,
    preproc_spm_root,
    resolve_bold_source,
)
from bids_decode.inputs.annex import matching
from bids_decode.inputs.events import events_sidecars
from bids_decode.inputs.layout import (
    Run,
    bold_sidecars,
    check_trs,
    events_stem,
    find_nifti,
    find_runs,
    first_sorted,
    make_layout,
    missing_volumes,
)
from bids_decode.inputs.rois import RoiSpec, load_roi, mask_files, read_atlas_labels
from bids_decode.inputs.samples import EventSpec, build_samples
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)


@dataclass
class SubjectInputs:
    """What decoding needs from one subject's inputs (BIDS runs, or a BData file).

    Attributes
    ----------
    samples : Samples
    masks : dict of str -> ndarray of bool
        Each ROI's voxels, on the grid whose flat indices ``samples.voxels`` holds.
    files : dict of str -> list
        The files (or file#key) defining each ROI, for the sidecars.
    tr : float or None
        Repetition time of the runs (None when unknown).
    qc : callable or None
        ``qc(warnings)`` writes the sample-quality file of the report.
    """

    samples: object
    masks: dict
    files: dict
    tr: float | None
    qc: object = None


@dataclass(frozen=True)
class BoldSource(ABC):
    """Where one run's (or one subject's) BOLD data come from: one subclass per kind.

    Attributes
    ----------
    root : Path or None
        Folder (or file) of the source; None for the dataset's own runs.
    space : str
        Output space of the derivatives (fMRIPrep's ``space-<space>``).
    kind : str
        The kind's name in :data:`BOLD_SOURCES` (class attribute).
    takes_path : bool
        The option is ``KIND=PATH`` rather than ``KIND`` (class attribute).
    """

    root: Path | None = None
    space: str = "T1w"
    kind: ClassVar[str] = ""
    takes_path: ClassVar[bool] = False

    @classmethod
    def parse(cls, text: str, bids_dir: Path, derivatives: dict[str, str],
              space: str) -> BoldSource:
        """The source named by ``--bold-source``: a kind of :data:`BOLD_SOURCES` (``KIND``,
        or ``KIND=PATH`` for kinds that take a path), ``auto``
        (:func:`bold_sources.resolve_bold_source`), or the PATH of a derivatives folder (its
        kind is the first whose :meth:`detect` accepts it)."""
        text = resolve_bold_source(text, bids_dir, derivatives)
        kind, sep, path = text.partition("=")
        source = BOLD_SOURCES.get(kind if sep else text)
        if source is not None and source.takes_path == bool(sep):
            return source.locate(Path(path) if sep else None, bids_dir, derivatives, space)
        root = _checked_root(Path(text), "--bold-source")
        return next(s for s in BOLD_SOURCES.values() if s.detect(root))(root, space)

    @classmethod
    def of(cls, config) -> BoldSource:
        """The source of a run configuration (``--bold-source``, ``-d``, ``--space``)."""
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
    """BOLD runs matching the dataset's ``_events.tsv`` files (:func:`layout.find_runs`).

    A subclass says where a run's image is (:meth:`run_files`) and whether its runs are
    preprocessed (:attr:`preprocessed`).

    Attributes
    ----------
    preprocessed : bool
        Derivatives: motion-corrected runs in one space, which may lack volumes at their
        start (class attribute). Runs that are not are refused at other placements than the
        masks' (:func:`bold_sources.align_runs`).
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
        train_runs, test_runs, tr = self._runs(config, subject, bids_dir)
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

        def qc(warnings):
            from bids_decode.participant import write_qc

            return write_qc(config, subject, train_runs[0], union, masks, ref.shape, samples,
                            warnings)

        return SubjectInputs(samples, masks, files, tr, qc)

    def input_files(self, config, subject: str) -> list[Path]:
        """Each run's files (:meth:`layout.Run.input_files`) and sidecars, the ROIs' masks and
        the atlas labels, found as :meth:`subject_inputs` finds them."""
        bids_dir = Path(config.bids_dir)
        train_runs, test_runs, _ = self._runs(config, subject, bids_dir, read=False)
        specs, roots = self._rois(config)
        files = [*([Path(config.atlas_labels)] if config.atlas_labels else [])]
        for run in train_runs + test_runs:
            files += run.input_files(self.preprocessed, config.confounds)
            files += [*bold_sidecars(bids_dir, run.events), *events_sidecars(run.events)]
        for spec in specs:
            files += mask_files(bids_dir, subject, spec, roots, config.atlas)
        return files

    def _rois(self, config) -> tuple[list[RoiSpec], list]:
        """The requested ROIs and the folders searched for their masks."""
        labels = read_atlas_labels(config.atlas_labels) if config.atlas_labels else None
        specs = [RoiSpec.parse(r, labels) for r in config.roi]
        return specs, [*config.derivative_paths.values(), *([self.root] if self.root else [])]

    def _runs(self, config, subject: str, bids_dir: Path,
              read: bool = True) -> tuple[list[Run], list[Run], float]:
        """Training runs, test runs (disjoint) and their common TR (``read=False``: files
        only, see :func:`layout.find_runs`)."""
        layout = make_layout(bids_dir, [subject])
        train_runs = find_runs(layout, subject, config.train_task, config.train_session,
                               what="training", source=self, read=read)
        test_runs = find_runs(layout, subject, config.task, config.test_session_glob,
                              what="test", source=self, read=read)
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
    outputs, the raw runs and their transforms (:func:`bold_sources.fmriprep_run`). Any
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
        from bids_decode.inputs.bdata import subject_inputs

        return subject_inputs(config, subject, self.root)

    def input_files(self, config, subject: str) -> list[Path]:
        """The subject's BData file (its ROIs are columns of the same file)."""
        from bids_decode.inputs.bdata import subject_path

        return [subject_path(self.root, subject)]


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
