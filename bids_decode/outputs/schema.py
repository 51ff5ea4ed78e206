"""The output schema: every derivative file, its datasets and columns, one reader, one writer.

Files (``docs/outputs.md`` explains them for users)::

    sub-<L>/sub-<L>_task-<T>_config.json                  run configuration (config.py)
    sub-<L>/func/sub-<L>_task-<T>_decoding.tsv (+ .json)  SUBJECT_SUMMARY, one row per ROI x layer
    sub-<L>/func/sub-<L>_task-<T>_desc-<ROI>_decoding.h5  LAYER_DATASETS per layer group
    sub-<L>/func/sub-<L>_task-<T>_desc-<ROI>_decoding.json  ROI sidecar
    sub-<L>/func/sub-<L>_task-<T>_qc.h5                   sample quality, for the report
    group/task-<T>_desc-<D>_<suffix>.tsv (+ .json)        GROUP_TABLES
    group/sub-Averaged/func/...                           the Averaged subject, as a subject

The per-layer datasets and the summary columns of the metrics come from the metric classes
(:class:`~bids_decode.evaluation.metric.Metric` subclasses listed in :data:`METRICS`): a new score
adds its own. Every HDF5 output carries the root attribute ``bids_decode_format_version``.

JSON policy (:func:`read_json`): a missing file reads as ``{}`` (older or partial outputs);
a file that exists but cannot be parsed is a :class:`~bids_decode.errors.DataError` (exit 65)
naming the file and the fix (rerun the level that wrote it), never silently empty.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bids_decode.errors import DataError
from bids_decode.evaluation.metric import Output, Result
from bids_decode.evaluation.metrics import PatternIdentification, ProfileCorrelation
from bids_decode.evaluation.unit_statistics import UnitStatistics
from bids_decode.outputs.paths import bids_name, func_path, subject_dir
from bids_decode.utils.files import atomic_path, check_free_space, write_json, write_tsv

#: Version of the layout below, stored as the root attribute :data:`FORMAT_ATTR` of HDF5 outputs.
FORMAT_VERSION = 1
FORMAT_ATTR = "bids_decode_format_version"

#: The metrics whose datasets and summary columns the participant outputs hold, in order.
METRICS = (ProfileCorrelation, PatternIdentification, UnitStatistics)

#: Datasets of each layer group of ``*_desc-<ROI>_decoding.h5``.
LAYER_DATASETS: dict[str, Output] = {
    "decoded": Output("Decoded features of the test images, shape (n_images, *unit_shape)"),
    **{k: v for m in METRICS for k, v in m.DATASETS.items()},
}

AVERAGED = "Averaged"
GROUP_DIR = "group"


# ----------------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Table:
    """A TSV output and its JSON sidecar: columns in order, each with its description."""

    columns: dict[str, str]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def sidecar(self) -> dict:
        return {k: {"Description": v} for k, v in self.columns.items()}

    def write(self, path: Path, rows) -> Path:
        """Write ``rows`` (dicts or a DataFrame) as TSV and the sidecar beside it (atomic)."""
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=self.names)
        write_tsv(path, df[self.names])
        write_json(Path(path).with_suffix(".json"), self.sidecar)
        return Path(path)

    @staticmethod
    def read(path: Path) -> pd.DataFrame:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def _summary_columns() -> dict[str, str]:
    context = {
        "roi": "Region of interest", "layer": "DNN layer",
        "n_units": "Units in the layer", "n_voxels": "Voxels in the ROI",
        "n_voxels_selected": "Voxels used by each unit's decoder",
        "n_train_samples": "Training samples (blocks)",
        "n_test_images": "Test images (blocks averaged per image)",
    }
    described = {**context, **{k: v for m in METRICS for k, v in m.COLUMNS.items()}}
    order = ["roi", "layer", "n_units", "n_voxels", "n_voxels_selected", "n_constant_units",
             "profile_r_mean", "profile_r_median", "pattern_r_mean", "identification_accuracy",
             "n_train_samples", "n_test_images"]
    order += [k for k in described if k not in order]  # new metrics' columns come last
    return {k: described[k] for k in order}


#: ``sub-<L>_task-<T>_decoding.tsv``: one row per (ROI, layer).
SUBJECT_SUMMARY = Table(_summary_columns())

_PAIR = {
    "roi": "Region of interest", "layer": "DNN layer",
    "subject_a": "First subject of the pair (label without 'sub-')",
    "subject_b": "Second subject of the pair",
    "r": "Pearson r, over units, between the two subjects' unit accuracies (units whose "
         "accuracy is finite in both)",
    "spearman_r": "Spearman rank correlation of the same",
    "n_units": "Units entering the correlation",
    "reliability_a": "Reliability of subject_a's unit accuracies: the Spearman-Brown-corrected "
                     "Pearson r, over units, of the accuracies decoded from the odd and from "
                     "the even presentations of the test images",
    "reliability_b": "The same for subject_b",
    "r_disattenuated": "r / sqrt(reliability_a * reliability_b): the between-subject "
                       "correlation corrected for measurement noise (can exceed 1; NaN unless "
                       "both reliabilities are positive)",
}
_GROUP_SUMMARY = {
    "roi": _PAIR["roi"], "layer": _PAIR["layer"],
    "n_subjects": "Subjects in the group", "n_pairs": "Subject pairs",
    "n_units": "Units in the layer",
    "r_mean": "Mean over subject pairs of the between-subject Pearson r of unit accuracies",
    "r_min": "Smallest pair r", "r_max": "Largest pair r",
    "spearman_r_mean": "Mean over pairs of the Spearman r",
    "spearman_r_min": "Smallest pair Spearman r", "spearman_r_max": "Largest pair Spearman r",
    "top10_overlap_mean": "Mean over pairs of the fraction of one subject's top-10% units that "
                          "are top-10% in the other (chance 0.1)",
    "profile_r_mean": "Mean over subjects of the subject's mean unit accuracy",
    "profile_r_min": "Smallest subject mean unit accuracy",
    "profile_r_max": "Largest subject mean unit accuracy",
    "averaged_profile_r_mean": "Mean unit accuracy of the Averaged subject (decoded features "
                               "averaged over subjects)",
    "averaged_pattern_r_mean": "Mean pattern correlation of the Averaged subject",
    "averaged_identification_accuracy": "Mean pairwise identification accuracy of the "
                                        "Averaged subject",
    "r_disattenuated_mean": "Mean over pairs of r_disattenuated",
    "fraction_decodable_all": "Fraction of the layer's units whose q-value is below 0.05 in "
                              "every subject (NaN when a subject has no permutation statistics)",
}
_OVERLAP = {
    "roi": _PAIR["roi"], "layer": _PAIR["layer"],
    "subject_a": _PAIR["subject_a"], "subject_b": _PAIR["subject_b"],
    "top_percent": "k: the top k percent of units by accuracy",
    "n_units": "Units finite in both subjects",
    "n_top": "Units in each subject's top k% (round(k/100 * n_units), >= 1)",
    "n_shared": "Units in the top k% of both subjects",
    "overlap": "n_shared / n_top",
    "chance": "Expected overlap of random rankings (n_top / n_units)",
}

#: Group tables: (desc, suffix) of ``group/task-<T>_desc-<D>_<suffix>.tsv`` -> table.
GROUP_PAIRS = Table(_PAIR)
GROUP_SUMMARY = Table(_GROUP_SUMMARY)
GROUP_OVERLAP = Table(_OVERLAP)
GROUP_TABLES = {("crosssubject", "correlation"): GROUP_PAIRS,
                ("crosssubject", "summary"): GROUP_SUMMARY,
                ("rankconsistency", "overlap"): GROUP_OVERLAP}


# ------------------------------------------------------------------------------------ paths

def decoding_h5(output_dir: Path, subject: str, task: str, roi: str) -> Path:
    return func_path(output_dir, subject, task, desc=roi, suffix="decoding", ext=".h5")


def roi_sidecar(output_dir: Path, subject: str, task: str, roi: str) -> Path:
    return decoding_h5(output_dir, subject, task, roi).with_suffix(".json")


def summary_tsv(output_dir: Path, subject: str, task: str) -> Path:
    return func_path(output_dir, subject, task, suffix="decoding", ext=".tsv")


def qc_h5(output_dir: Path, subject: str, task: str) -> Path:
    return func_path(output_dir, subject, task, suffix="qc", ext=".h5")


def config_json(output_dir: Path, subject: str, task: str) -> Path:
    return subject_dir(output_dir, subject) / f"sub-{subject}_task-{task}_config.json"


def group_dir(output_dir: Path) -> Path:
    return Path(output_dir) / GROUP_DIR


def group_table(output_dir: Path, task: str, desc: str, suffix: str) -> Path:
    """``OUTPUT_DIR/group/task-<T>_desc-<D>_<suffix>.tsv``."""
    name = bids_name("x", task, desc=desc, suffix=suffix, ext=".tsv")
    return group_dir(output_dir) / name.split("_", 1)[1]


_H5_RE = re.compile(r"^sub-([A-Za-z0-9]+)_task-([A-Za-z0-9]+)_desc-([A-Za-z0-9]+)_decoding\.h5$")


# ----------------------------------------------------------------------------------- reader

def read_json(path: Path) -> dict:
    """A JSON output: ``{}`` when the file is missing; :class:`DataError` when it is damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"Cannot read {path} ({err}). It is damaged: rerun the level that wrote it (the "
            "participant level for sub-*/ files, the group level for group/ files) to rewrite "
            "it, or delete it."
        ) from err


def find_decoding_files(output_dir: Path, task: str) -> dict[str, dict[str, Path]]:
    """``{subject: {roi: path}}`` of every ``*_desc-<ROI>_decoding.h5`` of ``task``."""
    per_sub: dict[str, dict[str, Path]] = {}
    for path in sorted(Path(output_dir).glob(f"sub-*/func/sub-*_task-{task}_desc-*_decoding.h5")):
        m = _H5_RE.match(path.name)
        if not m or m.group(2) != task or path.parent.parent.name != f"sub-{m.group(1)}":
            continue
        per_sub.setdefault(m.group(1), {})[m.group(3)] = path
    return per_sub


@dataclass
class SubjectOutputs:
    """The outputs of one subject (paths, JSON, summary; arrays are read later, per layer).

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    h5 : dict roi -> Path
        ROIs in the order of the run configuration, then of the summary, then by name.
    sidecars : dict roi -> dict
    config : dict
        The run configuration (``{}`` when missing).
    summary : DataFrame or None
        ``*_decoding.tsv`` (None when missing).
    layers, shapes, test_names
        Layer groups (in the sidecar's order), unit shapes and test stimulus names, from the
        first ROI's file.
    """

    subject: str
    task: str
    h5: dict[str, Path]
    sidecars: dict[str, dict]
    config: dict
    summary: pd.DataFrame | None
    qc: Path
    layers: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    test_names: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.subject

    @property
    def first_sidecar(self) -> dict:
        return next(iter(self.sidecars.values()), {})


def _roi_order(config: dict, summary: pd.DataFrame | None, found) -> list[str]:
    named = [str(r).partition("=")[0] for r in config.get("roi", [])]
    if summary is not None:
        named += [r for r in dict.fromkeys(summary["roi"].astype(str)) if r not in named]
    return [r for r in named if r in found] + sorted(set(found) - set(named))


def read_subject(output_dir: Path, subject: str, task: str,
                 h5: dict[str, Path] | None = None) -> SubjectOutputs:
    """THE reader of a subject's outputs (participant level, Averaged subject, reports).

    Parameters
    ----------
    output_dir : Path
        OUTPUT_DIR (``OUTPUT_DIR/group`` for the Averaged subject).
    subject, task : str
    h5 : dict roi -> Path, optional
        The subject's decoding files when already found (:func:`find_decoding_files`).
    """
    if h5 is None:
        h5 = find_decoding_files(output_dir, task).get(subject, {})
    config = read_json(config_json(output_dir, subject, task))
    tsv = summary_tsv(output_dir, subject, task)
    summary = Table.read(tsv) if tsv.is_file() else None
    rois = _roi_order(config, summary, h5)
    sub = SubjectOutputs(subject, task, {r: h5[r] for r in rois},
                         {r: read_json(h5[r].with_suffix(".json")) for r in rois}, config,
                         summary, qc_h5(output_dir, subject, task))
    if sub.h5:
        _read_layout(sub)
    elif summary is not None:
        sub.layers = list(dict.fromkeys(summary["layer"].astype(str)))
    return sub


def as_str(v) -> str:
    """An HDF5 string (bytes or str) as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def _read_layout(sub: SubjectOutputs) -> None:
    """Fill layers, unit shapes and test stimulus names from the first ROI file."""
    first = next(iter(sub.h5.values()))
    try:
        with h5py.File(first, "r") as f:
            names = [k for k in f if isinstance(f[k], h5py.Group)]
            order = [la for la in sub.first_sidecar.get("Layers", []) if la in names]
            sub.layers = order + sorted(set(names) - set(order))
            sub.shapes = {la: tuple(f[la]["accuracy"].shape) for la in sub.layers}
            sub.test_names = [as_str(v) for v in f["stimulus_name"][()]]
    except (OSError, KeyError) as err:
        raise DataError(
            f"The output {first} cannot be read ({err}). It is damaged or not a bids_decode "
            f"output: rerun the participant level of sub-{sub.subject}."
        ) from err


# ----------------------------------------------------------------------------------- writer

def stamp(h5: h5py.File) -> None:
    """Mark an HDF5 output with the format version."""
    h5.attrs[FORMAT_ATTR] = FORMAT_VERSION


@contextlib.contextmanager
def decoding_writer(path: Path, test_names, attrs: dict, size_bytes: int | None = None):
    """THE writer of ``*_desc-<ROI>_decoding.h5``: yields the open file, renamed when done.

    Parameters
    ----------
    path : Path
    test_names : sequence of str
        Test stimuli, the first axis of every ``decoded`` and image dataset.
    attrs : dict
        Root attributes (roi, subject, task, ...); the format version is added.
    size_bytes : int, optional
        Expected size; the free space is checked first.
    """
    if size_bytes is not None:
        check_free_space(Path(path).parent, size_bytes, Path(path).name)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("stimulus_name", data=np.array(list(test_names), dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.attrs.update(attrs)
        stamp(h5)
        yield h5


def write_subject_summary(output_dir: Path, subject: str, task: str, rows: list[dict]) -> Path:
    """Merge ``rows`` into ``sub-<L>_task-<T>_decoding.tsv`` (:data:`SUBJECT_SUMMARY`): the
    rows of the same (roi, layer) are replaced, the others kept."""
    path = summary_tsv(output_dir, subject, task)
    new = pd.DataFrame(rows, columns=SUBJECT_SUMMARY.names)
    if path.is_file():
        old = Table.read(path)
        keys = set(zip(new["roi"], new["layer"]))
        old = old[[(r, lay) not in keys for r, lay in zip(old["roi"], old["layer"])]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    return SUBJECT_SUMMARY.write(path, new)


def new_layer(h5: h5py.File, layer: str, n_images: int, shape: tuple[int, ...]):
    """Create the layer group and its ``decoded`` dataset; return both."""
    g = h5.create_group(layer)
    return g, g.create_dataset("decoded", (n_images, *shape), dtype="f4", chunks=True)


def write_layer(group: h5py.Group, shape: tuple[int, ...], result: Result) -> None:
    """Store the metrics' datasets (unit datasets in the unit shape) and attributes."""
    for name, arr in result.datasets.items():
        if LAYER_DATASETS[name].per == "unit":
            arr = arr.reshape(*arr.shape[:-1], *shape)
        group.create_dataset(name, data=arr)
    group.attrs.update({"n_units": int(np.prod(shape)), **result.attrs})
