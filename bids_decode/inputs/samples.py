"""BOLD runs + events -> one sample per stimulus block (training) or per image (test).

Steps, per run: mask the volumes to the voxels of every requested ROI, clean the time series
(linear detrending and z-scoring within the run, ``nilearn.signal.clean``), then average the
volumes of each block after a haemodynamic shift. Which rows are samples and what marks a repeat
follows each file's event convention (:mod:`bids_decode.inputs.events`: ds001246's one-back repeats
are dropped, ds001506's repetition blocks are left out). Test blocks are averaged per image;
training trials are samples each, or averaged per image with ``train_average``.

What every BOLD source gives decoding is declared here too: :class:`SubjectInputs` (the
:class:`Samples`, ROI masks, TR and the :class:`InputQc` of the report's QC file).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from bids_decode.errors import DataError
from bids_decode.inputs.bold import load_run_timeseries
from bids_decode.inputs.confounds import load_confounds
from bids_decode.inputs.events import Blocks, EventSpec, read_blocks
from bids_decode.inputs.layout import Run

LOGGER = logging.getLogger(__name__)


def block_volumes(onset: float, duration: float, tr: float, shift: float, offset: int,
                  n_vols: int) -> np.ndarray:
    """Indices of the volumes of ``bold`` acquired during a block, after the shift.

    Volume ``k`` of the image was acquired at ``(k + offset) * tr`` seconds after the events'
    time zero; the block's volumes are those in ``[onset + shift, onset + duration + shift)``
    (at least the first volume at or after ``onset + shift``).
    """
    t0, t1 = onset + shift, onset + duration + shift
    first = int(np.ceil(t0 / tr - 1e-6))
    last = int(np.ceil(t1 / tr - 1e-6))  # exclusive
    last = max(last, first + 1)
    return np.arange(first, last) - offset


@dataclass
class Samples:
    """Samples of one subject over the voxels of a union mask.

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels), float32
    train_labels : list of str, length n_train
    train_run : ndarray of shape (n_train,)
        Index of the run of each training sample.
    X_test : ndarray of shape (n_test_images, n_voxels), float32
        Test blocks averaged per image.
    test_labels : list of str, length n_test_images
    test_counts : ndarray of shape (n_test_images,)
        Blocks averaged per test image.
    voxels : ndarray of shape (n_voxels,)
        Flat (C-order) indices of the voxels in the BOLD grid.
    info : dict
        Counts for the log and the report.
    test_halves : ndarray of shape (2, n_test_images, n_voxels), float32, or None
        Each test image's odd (1st, 3rd, ...) and even (2nd, 4th, ...) presentations averaged
        separately (split-half reliability); None when an image has fewer than two blocks.
    """

    X_train: np.ndarray
    train_labels: list[str]
    train_run: np.ndarray
    X_test: np.ndarray
    test_labels: list[str]
    test_counts: np.ndarray
    voxels: np.ndarray
    info: dict = field(default_factory=dict)
    test_halves: np.ndarray | None = None


@dataclass
class InputQc:
    """What the report's QC file shows of one subject's inputs besides its samples and masks
    (written by :func:`bids_decode.outputs.qc.write_qc`).

    Attributes
    ----------
    run : layout.Run or None
        The run whose ROI time courses are shown (the first training run); None for samples
        without runs (a BData file).
    union : ndarray of shape ref_shape[:3], bool, or None
        The voxels of every ROI on the reference grid.
    ref_shape : tuple or None
        Shape of the reference grid.
    """

    run: Run | None = None
    union: np.ndarray | None = None
    ref_shape: tuple | None = None


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
    qc : InputQc or None
        What the report's QC file shows besides the samples and masks (None: no QC file).
    affine : ndarray of shape (4, 4) or None
        Voxel-to-world affine of the masks' grid (None: the masks are not on an image grid,
        e.g. a BData file's columns); brain maps need it.
    """

    samples: Samples
    masks: dict
    files: dict
    tr: float | None
    qc: InputQc | None = None
    affine: np.ndarray | None = None



def clean_run(ts: np.ndarray, tr: float, confounds: np.ndarray | None = None) -> np.ndarray:
    """Linear detrending, confound regression and z-scoring over the run (nilearn), float32.

    Parameters
    ----------
    ts : ndarray of shape (n_volumes, n_voxels)
    tr : float
    confounds : ndarray of shape (n_volumes, n_confounds), optional
    """
    from nilearn.signal import clean

    out = clean(ts, detrend=True, standardize="zscore_sample", t_r=tr, ensure_finite=False,
                confounds=confounds)
    return np.asarray(out, dtype=np.float32)


def _run_samples(run: Run, ts: np.ndarray, blocks: Blocks, shift: float):
    n_vols = ts.shape[0]
    out = np.empty((len(blocks.labels), ts.shape[1]), dtype=np.float32)
    for i, (onset, dur) in enumerate(zip(blocks.onsets, blocks.durations)):
        vols = block_volumes(onset, dur, run.tr, shift, run.volume_offset, n_vols)
        if vols[0] < 0 or vols[-1] >= n_vols:
            raise DataError(
                f"The BOLD run {run.bold} has {n_vols} volumes (TR {run.tr} s, offset "
                f"{run.volume_offset}) but its events ({run.events}) need volume "
                f"{vols[-1] + run.volume_offset} for the block at {onset} s. The run is shorter "
                "than its events: check that the events belong to this run and the TR."
            )
        out[i] = ts[vols].mean(axis=0)
    return out


def build_samples(train_runs: list[Run], test_runs: list[Run], mask: np.ndarray,
                  ref_shape, *, stimulus_column: str | None = None, shift: float,
                  train_events: EventSpec | None = None, test_events: EventSpec | None = None,
                  confounds: str | None = None, progress=None,
                  train_average: bool = False) -> Samples:
    """Load every run once (streamed run by run) and make the samples.

    Parameters
    ----------
    train_runs, test_runs : list of Run
    mask : ndarray of shape ref_shape[:3], bool
        Union of all requested ROIs.
    ref_shape : tuple
        Shape of the first BOLD run.
    stimulus_column : str or None
        Column naming the stimulus (when no EventSpec is given).
    shift : float
        Haemodynamic shift (s).
    train_events, test_events : EventSpec, optional
        Which events make samples (default: ds001246 perception blocks).
    confounds : str, optional
        Confound set regressed out of each run (fMRIPrep tables).
    progress : callable, optional
        Wraps the iterable of runs (a progress bar).
    train_average : bool
        Average the training samples of each image (default: every trial is a sample, as in
        the authors' feature-decoding code); ``train_run`` is then the run of the image's
        first trial.
    """
    voxels = np.flatnonzero(mask.ravel())
    finite = np.ones(voxels.size, dtype=bool)
    parts = {"train": ([], [], []), "test": ([], [], [])}
    runs = [("train", r) for r in train_runs] + [("test", r) for r in test_runs]
    n_repeats = 0
    conventions: dict[str, list[str]] = {"train": [], "test": []}
    iterator = progress(runs) if progress else runs
    specs = {"train": train_events or EventSpec(stimulus_column),
             "test": test_events or EventSpec(stimulus_column)}
    for k, (split, run) in enumerate(iterator):
        blocks = read_blocks(run.events, specs[split])
        n_repeats += blocks.n_repeats
        if blocks.convention not in conventions[split]:
            conventions[split].append(blocks.convention)
            LOGGER.info("%s events (%s): %s", split, run.events.name, blocks.convention)
        ts = load_run_timeseries(run, mask, ref_shape)
        bad = ~np.isfinite(ts).all(axis=0)
        if bad.any():
            finite &= ~bad
            ts = np.where(np.isfinite(ts), ts, 0.0).astype(np.float32)
        conf = load_confounds(run, confounds, ts.shape[0])
        X = _run_samples(run, clean_run(ts, run.tr, conf), blocks, shift)
        parts[split][0].append(X)
        parts[split][1].extend(blocks.labels)
        parts[split][2].append(np.full(len(blocks.labels), k))
    if not finite.all():
        LOGGER.warning("%d voxel(s) have non-finite values in some run; they are excluded.",
                       int((~finite).sum()))
    X_train = np.concatenate(parts["train"][0])[:, finite]
    train_labels = list(parts["train"][1])
    train_run = np.concatenate(parts["train"][2])
    n_trials = X_train.shape[0]
    if train_average:
        X_train, train_labels, _, first = average_by_label(X_train, train_labels, sort=False)
        train_run = train_run[first]
    X_test_blocks = np.concatenate(parts["test"][0])[:, finite]
    X_test, uniq, counts, _ = average_by_label(X_test_blocks, parts["test"][1], sort=True)
    info = {
        "n_train_runs": len(train_runs),
        "n_test_runs": len(test_runs),
        "n_train_samples": int(X_train.shape[0]),
        "n_test_blocks": int(X_test_blocks.shape[0]),
        "n_test_images": len(uniq),
        "n_repeats_dropped": n_repeats,
        "n_train_trials": int(n_trials),
        "train_average": bool(train_average),
        "event_conventions": conventions,
        "n_nonfinite_voxels": int((~finite).sum()),
        "runs_per_session": _runs_per_session(train_runs + test_runs),
    }
    index = {lab: i for i, lab in enumerate(uniq)}
    inv = np.array([index[lab] for lab in parts["test"][1]], dtype=np.int64)
    return Samples(X_train, train_labels, train_run, X_test, uniq, counts, voxels[finite], info,
                   test_halves=half_averages(X_test_blocks, inv, len(uniq)))


def average_by_label(X: np.ndarray, labels: list[str], *, sort: bool):
    """Average the rows of each label.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_voxels)
    labels : list of str, length n_rows
    sort : bool
        Order the labels alphabetically (else by first appearance).

    Returns
    -------
    X_mean : ndarray of shape (n_labels, n_voxels), float32
    uniq : list of str
    counts : ndarray of shape (n_labels,)
        Rows averaged per label.
    first : ndarray of shape (n_labels,)
        Index of each label's first row.
    """
    uniq = list(OrderedDict.fromkeys(sorted(labels) if sort else labels))
    index = {lab: i for i, lab in enumerate(uniq)}
    inv = np.array([index[lab] for lab in labels], dtype=np.int64)
    counts = np.bincount(inv, minlength=len(uniq))
    first = np.unique(inv, return_index=True)[1]
    out = np.zeros((len(uniq), X.shape[1]), dtype=np.float64)
    np.add.at(out, inv, X)
    return (out / counts[:, None]).astype(np.float32), uniq, counts, first


def half_averages(X_blocks: np.ndarray, image: np.ndarray, n_images: int) -> np.ndarray | None:
    """Average each image's odd and even presentations separately (a fixed split-half).

    Parameters
    ----------
    X_blocks : ndarray of shape (n_blocks, n_voxels)
        Test blocks in presentation order (runs in order, blocks in time order).
    image : ndarray of shape (n_blocks,), int
        Image index of each block.
    n_images : int

    Returns
    -------
    ndarray of shape (2, n_images, n_voxels), float32, or None
        ``[0]``: mean of the 1st, 3rd, ... presentations of each image; ``[1]``: of the 2nd,
        4th, ...; None when some image was presented fewer than two times.
    """
    image = np.asarray(image)
    seen = np.zeros(n_images, dtype=np.int64)
    half = np.empty(image.size, dtype=np.int64)
    for j, i in enumerate(image):
        half[j] = seen[i] % 2
        seen[i] += 1
    if image.size == 0 or seen.min() < 2:
        return None
    out = np.zeros((2, n_images, X_blocks.shape[1]), dtype=np.float64)
    np.add.at(out, (half, image), X_blocks)
    n = np.stack([np.bincount(image[half == h], minlength=n_images) for h in (0, 1)])
    return (out / n[:, :, None]).astype(np.float32)


def _runs_per_session(runs: list[Run]) -> dict:
    out: dict[str, int] = {}
    for r in runs:
        out[r.session or "-"] = out.get(r.session or "-", 0) + 1
    return out
