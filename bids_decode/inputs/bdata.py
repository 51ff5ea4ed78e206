"""The authors' preprocessed fMRI as input: bdpy BData files (``--bold-source bdata=PATH``).

The Kamitani lab distributes its preprocessed data (e.g. the GOD fMRI, ``Subject1.h5`` ...
``Subject5.h5``) as BData (bdpy / BrainDecoderToolbox2). In HDF5:

``/dataset`` (older files: ``/dataSet``)
    float array of shape (n_samples, n_columns): the voxels and the per-sample design columns.
``/metadata/key``, ``/metadata/description`` (older: ``/metaData/...``)
    one name and one description per metadata key.
``/metadata/value``
    float array of shape (n_keys, n_columns): 1 where a key applies to a column, NaN elsewhere.
    Voxel keys (``VoxelData``, ``ROI_VC``, ``ROI_V1`` ...) mark voxel columns; sample keys
    (``DataType``, ``Run``, ``Label``, ``stimulus_name`` ...) mark their one column, whose
    values in ``/dataset`` are the key's per-sample values.
``/vmap/<key>/<value>``
    optional text label of each value of a key (e.g. the image name of each stimulus id).

Each row is already one sample (one block, preprocessed by the authors), so the samples are the
rows: training rows ``DataType = 1``, test rows ``DataType = 2`` (perception) or ``3``
(imagery), as in the GOD files, or the rows stated with ``--sample-events train:KEY=V
test:KEY=V``. The stimulus of a row is the ``stimulus_name`` label (``category_name`` for
imagery) or, without a label map, the ``Label`` id converted to an ImageNet name
(``1518878.005958`` -> ``n01518878_5958``, ``1443537`` -> ``n01443537``). ROIs are the
``ROI_<name>`` keys. Test rows are averaged per stimulus, as for BIDS inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bids_decode.errors import DataError, UsageError
from bids_decode.inputs.annex import listed
from bids_decode.inputs.events import canonical
from bids_decode.inputs.layout import task_defaults
from bids_decode.inputs.samples import (
    InputQc,
    Samples,
    SubjectInputs,
    average_by_label,
    half_averages,
)
from bids_decode.utils.h5 import H5Reader

LOGGER = logging.getLogger(__name__)

#: DataType values of the GOD BData files
DATA_TYPES = {"train": "1", "perception": "2", "imagery": "3"}
#: keys naming the stimulus of a row, in order of preference
LABEL_KEYS = {"perception": ("stimulus_name", "Label"), "imagery": ("category_name", "Label")}
ROWS_PER_READ = 512


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


class BDataFile(H5Reader):
    """Read-only view of a BData HDF5 file.

    Parameters
    ----------
    path : path-like

    Attributes
    ----------
    keys : list of str
    shape : (n_samples, n_columns)
    """

    def __init__(self, path):
        path = Path(path)
        h5 = self._open(
            path,
            f"The BData file {path} (--bold-source bdata=PATH) does not exist. Give the "
            "path of the subject's .h5 file ('{subject}' in PATH is replaced by the label).",
            f"The BData file {path} cannot be opened as HDF5 ({{err}}). Copy it again.")
        data = "dataset" if "dataset" in h5 else "dataSet"
        meta = "metadata" if "metadata" in h5 else "metaData"
        try:
            self._data = h5[data]
            self.keys = [_text(k) for k in h5[meta]["key"][()]]
            self._values = np.asarray(h5[meta]["value"][()], dtype=np.float64)
        except KeyError as err:
            self.close()
            raise DataError(
                f"{self.path} is not a BData file: it lacks /dataset and /metadata/key, /value "
                f"({err}). Give a bdpy BData .h5 file, or a BIDS --bold-source."
            ) from err
        self.shape = tuple(self._data.shape)
        if self._values.shape != (len(self.keys), self.shape[1]):
            self.close()
            raise DataError(
                f"The BData file {self.path} has {len(self.keys)} metadata keys and metadata "
                f"values of shape {self._values.shape}, but {self.shape[1]} data columns. "
                "The file is damaged: write it again with bdpy."
            )
        self.vmaps = {}
        if "vmap" in h5:
            for key in h5["vmap"]:
                self.vmaps[key] = {float(v): _text(h5["vmap"][key][v][()])
                                   for v in h5["vmap"][key]}

    def columns(self, key: str) -> np.ndarray:
        """Columns a key applies to (metadata value 1), as increasing indices."""
        if key not in self.keys:
            raise DataError(f"The BData file {self.path} has no metadata key '{key}' (keys: "
                            f"{self.keys[:30]}).")
        return np.flatnonzero(self._values[self.keys.index(key)] == 1)

    def sample_values(self, key: str) -> np.ndarray:
        """The per-sample values of a one-column key, shape (n_samples,)."""
        cols = self.columns(key)
        if cols.size != 1:
            raise DataError(f"The metadata key '{key}' of {self.path} marks {cols.size} columns; "
                            "a per-sample key marks exactly one.")
        return np.asarray(self._data[:, int(cols[0])], dtype=np.float64)

    def labels(self, key: str) -> list[str]:
        """Text label of each sample: the key's vmap, else an ImageNet name from the id."""
        values = self.sample_values(key)
        vmap = self.vmaps.get(key)
        if vmap is not None:
            missing = sorted({v for v in values if np.isfinite(v) and v not in vmap})
            if missing:
                raise DataError(f"The label map /vmap/{key} of {self.path} has no entry for "
                                f"the values {missing[:5]}. The file is inconsistent.")
            return [vmap[v] if np.isfinite(v) else "n/a" for v in values]
        return [imagenet_name(v) for v in values]

    def read_rows(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``dataset[rows][:, cols]`` read in row blocks (memory ~ the result).

        Returns
        -------
        ndarray of shape (len(rows), len(cols)), float32
        """
        out = np.empty((len(rows), len(cols)), dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        for a in range(0, len(srt), ROWS_PER_READ):
            block = srt[a:a + ROWS_PER_READ]
            lo, hi = int(block[0]), int(block[-1]) + 1
            chunk = np.asarray(self._data[lo:hi], dtype=np.float64)
            out[order[a:a + ROWS_PER_READ]] = chunk[block - lo][:, cols]
        return out


def imagenet_name(value: float) -> str:
    """A GOD stimulus id as an ImageNet name (``1518878.005958`` -> ``n01518878_5958``)."""
    if not np.isfinite(value):
        return "n/a"
    cat = int(np.floor(value))
    img = int(round((value - cat) * 1e6))
    return f"n{cat:08d}_{img}" if img else f"n{cat:08d}"


def subject_path(path: Path, subject: str) -> Path:
    """PATH with ``{subject}`` replaced by the label, or by the label without leading zeros
    when only that file exists (the GOD files are ``Subject1.h5`` for sub-01)."""
    out = Path(str(path).replace("{subject}", subject))
    if not listed(out) and subject.isdigit():
        alt = Path(str(path).replace("{subject}", str(int(subject))))
        if listed(alt):
            return alt
    return out


def _rows(bd: BDataFile, option, default: str, split: str) -> tuple[np.ndarray, str]:
    key, values = option if option is not None else ("DataType", (default,))
    if key not in bd.keys:
        raise DataError(
            f"The BData file {bd.path} has no '{key}' key to select the {split} samples (keys: "
            f"{bd.keys[:30]}). State them with --sample-events {split}:KEY=VALUE."
        )
    codes = np.array([canonical(v) if np.isfinite(v) else "n/a"
                      for v in bd.sample_values(key)])
    rows = np.flatnonzero(np.isin(codes, values))
    if rows.size == 0:
        raise DataError(
            f"The BData file {bd.path} has no {split} samples: no row with {key} = "
            f"{'/'.join(values)} ({key} values found: {sorted(set(codes.tolist()))[:20]}). State "
            f"the {split} rows with --sample-events {split}:{key}=VALUE."
        )
    return rows, f"{key} = {'/'.join(values)}"


def _label_key(bd: BDataFile, requested: str | None, kind: str) -> str:
    if requested:
        if requested not in bd.keys:
            raise DataError(f"--stimulus-column {requested}: the BData file {bd.path} has no such "
                            f"key (keys: {bd.keys[:30]}).")
        return requested
    for key in LABEL_KEYS[kind]:
        if key in bd.keys:
            return key
    raise DataError(
        f"The BData file {bd.path} has none of the keys {list(LABEL_KEYS[kind])} naming the "
        f"stimulus of each sample (keys: {bd.keys[:30]}). Name it with --stimulus-column."
    )


def _roi_masks(bd: BDataFile, names, path: Path) -> tuple[dict, dict]:
    """Each ROI's columns (``ROI_<name>`` keys) as a boolean mask over the file's columns,
    and its ``file#key`` for the sidecars."""
    masks, files = {}, {}
    for roi in names:
        if "=" in roi:
            raise UsageError(f"--roi {roi}: with --bold-source bdata the ROIs are the file's "
                             "ROI_<name> keys; give names only (e.g. --roi VC V1).")
        key = f"ROI_{roi}"
        if key not in bd.keys:
            have = [k[4:] for k in bd.keys if k.startswith("ROI_")]
            raise UsageError(f"ROI '{roi}' is not in the BData file {path} (its ROIs: {have}). "
                             "Fix --roi.")
        m = np.zeros(bd.shape[1], dtype=bool)
        m[bd.columns(key)] = True
        masks[roi], files[roi] = m, [f"{path}#{key}"]
    return masks, files


def _read_split(bd: BDataFile, config, kind: str, cols: np.ndarray) -> dict:
    """Rows, labels and values of the training and test samples (see the module docstring)."""
    train_rows, train_sel = _rows(bd, config.sample_events_for("train"),
                                  DATA_TYPES["train"], "train")
    test_rows, test_sel = _rows(bd, config.sample_events_for("test"), DATA_TYPES[kind],
                                "test")
    train_key = _label_key(bd, config.stimulus_column, "perception")
    test_key = _label_key(bd, config.stimulus_column if config.task == config.train_task
                          else None, kind)
    names = bd.labels(train_key)
    train_labels = [names[i] for i in train_rows]
    names = bd.labels(test_key) if test_key != train_key else names
    return {
        "train_rows": train_rows, "test_rows": test_rows,
        "train_labels": train_labels, "test_labels": [names[i] for i in test_rows],
        "runs": bd.sample_values("Run") if "Run" in bd.keys else np.zeros(bd.shape[0]),
        "X_train": bd.read_rows(train_rows, cols), "X_test_blocks": bd.read_rows(test_rows, cols),
        "conventions": {
            "train": [f"bdata: samples are rows with {train_sel}, image in '{train_key}'"],
            "test": [f"bdata: samples are rows with {test_sel}, image in '{test_key}'"],
        },
    }


def subject_inputs(config, subject: str, path: Path) -> SubjectInputs:
    """Steps 1-3 for a BData file: samples and ROI columns of one subject.

    Parameters
    ----------
    config : RunConfig
    subject : str
    path : Path
        ``--bold-source bdata=PATH`` (``{subject}`` replaced by the label, see
        :func:`subject_path`).

    Returns
    -------
    samples.SubjectInputs
        Masks are boolean vectors over the file's columns; ``samples.voxels`` holds column
        indices.
    """
    path = subject_path(path, subject)
    kind = "imagery" if task_defaults(config.task)["event_type"] == "imagery" else "perception"
    with BDataFile(path) as bd:
        LOGGER.info("sub-%s: BData %s (%d samples x %d columns)", subject, path, *bd.shape)
        masks, files = _roi_masks(bd, config.roi, path)
        cols = np.flatnonzero(np.logical_or.reduce(list(masks.values())))
        split = _read_split(bd, config, kind, cols)
    samples = _samples(config, split, cols, path)
    for name, text in split["conventions"].items():
        LOGGER.info("%s samples (%s): %s", name, path.name, text[0])
    return SubjectInputs(samples, masks, files, None, InputQc())


def _samples(config, split: dict, cols: np.ndarray, path: Path) -> Samples:
    """:class:`samples.Samples` of the rows read by :func:`_read_split` (non-finite voxels
    dropped, test blocks averaged per stimulus, training trials too with --train-average)."""
    X_train, X_test_blocks = split["X_train"], split["X_test_blocks"]
    runs, train_rows, test_rows = split["runs"], split["train_rows"], split["test_rows"]
    train_labels, test_labels = split["train_labels"], split["test_labels"]
    finite = np.isfinite(X_train).all(axis=0) & np.isfinite(X_test_blocks).all(axis=0)
    if not finite.all():
        LOGGER.warning("%d voxel(s) have non-finite values in the BData file; they are excluded.",
                       int((~finite).sum()))
    X_train, X_test_blocks = X_train[:, finite], X_test_blocks[:, finite]
    train_run = runs[train_rows]
    n_trials = X_train.shape[0]
    if config.train_average:
        X_train, train_labels, _, first = average_by_label(X_train, train_labels, sort=False)
        train_run = train_run[first]
    X_test, uniq, counts, _ = average_by_label(X_test_blocks, test_labels, sort=True)
    info = {
        "n_train_runs": int(np.unique(runs[train_rows]).size),
        "n_test_runs": int(np.unique(runs[test_rows]).size),
        "n_train_samples": int(X_train.shape[0]),
        "n_test_blocks": int(X_test_blocks.shape[0]),
        "n_test_images": len(uniq),
        "n_repeats_dropped": 0,
        "n_train_trials": int(n_trials),
        "train_average": bool(config.train_average),
        "event_conventions": split["conventions"],
        "n_nonfinite_voxels": int((~finite).sum()),
        "runs_per_session": {},
        "bdata_file": str(path),
    }
    index = {lab: i for i, lab in enumerate(uniq)}
    inv = np.array([index[lab] for lab in test_labels], dtype=np.int64)
    return Samples(X_train, list(train_labels), np.asarray(train_run), X_test, uniq, counts,
                   cols[finite], info, test_halves=half_averages(X_test_blocks, inv, len(uniq)))
