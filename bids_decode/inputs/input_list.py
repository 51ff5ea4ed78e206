"""The files a participant run reads (``--list-inputs``, the annex check, the validator's rule).

The list is not a second copy of the finding logic: each subject's files come from its BOLD
source's :meth:`inputs.BoldSource.input_files`, which runs the same searches as the run
(:meth:`sources.BidsRuns.subject_runs` -> ``find_runs`` -> ``run_of`` -> ``run_files``, whose
:class:`layout.Run` records the image, events, confounds and transforms;
:func:`rois.mask_files`) with ``read=False``, so no image is opened and a clone without content
can be listed. Every option
that selects files acts through those searches: sessions, task, ``--bold-source``, ROIs,
confounds, derivatives folders, imagery. The command line adds the features step's files
(:func:`participant.feature_files`: ``--features``, or the stimulus images and ``--weights``).

Uses:

- ``--list-inputs`` prints the files inside BIDS_DIR, one path per line relative to it, so
  that ``datalad get $(bids_decode ... --list-inputs)`` fetches one run's share of a DataLad
  clone; files outside BIDS_DIR (``--features``, ``-d`` folders elsewhere) are named on stderr;
- the annex check (:func:`annex.absent_files`) stops a run whose files lack content
  (exit 66);
- :func:`validation.validate_bids` stops only for the validator's errors in these files.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bids_decode.inputs.annex import shown
from bids_decode.inputs.sources import BoldSource

LOGGER = logging.getLogger(__name__)


def run_inputs(config, subjects, source: BoldSource) -> list[Path]:
    """Every file steps 1-3 of the participant level (layout, ROIs, samples) read for
    ``subjects``, each once, sorted (the features step adds
    :func:`participant.feature_files`).

    Parameters
    ----------
    config : RunConfig
    subjects : list of str
        Labels without ``sub-``.
    source : BoldSource
        The run's source (:meth:`BoldSource.of`, ``auto`` resolved once by the caller).

    Returns
    -------
    list of Path
        As the run builds them (under BIDS_DIR, or where options point).
    """
    files = set()
    for sub in subjects:
        files.update(source.input_files(config, sub))
    return sorted(files)


def inside(paths, bids_dir: Path) -> tuple[list[str], list[str]]:
    """The paths inside BIDS_DIR (relative, POSIX) and those outside it (absolute)."""
    rel, out = [], []
    for p in paths:
        text = shown(p, bids_dir)
        (out if Path(text).is_absolute() else rel).append(text)
    return rel, out


def print_inputs(paths, bids_dir: Path, stream=None) -> None:
    """``--list-inputs``: the files inside BIDS_DIR, one per line relative to it, on
    ``stream`` (stdout); those outside it are logged."""
    rel, outside = inside(paths, bids_dir)
    stream = stream or sys.stdout
    for r in rel:
        print(r, file=stream)
    LOGGER.info("%d files in %s%s", len(rel), bids_dir,
                f"; also read, outside it: {' '.join(outside)}" if outside else "")
