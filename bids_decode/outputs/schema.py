"""The output schema: every derivative file, its datasets and columns, one reader, one writer.

Files (``docs/outputs.md`` explains them for users)::

    sub-<L>_net-<N>.html                                        subject report
    sub-<L>/sub-<L>_task-<T>_net-<N>_config.json                run configuration (config.py)
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_decoding.tsv (+ .json)  SUBJECT_SUMMARY, ROI x layer
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_decoding.h5  LAYER_DATASETS per layer
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_decoding.json  ROI sidecar
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_qc.h5                 sample quality, for the report
    group/task-<T>_net-<N>_desc-<D>_<suffix>.tsv (+ .json)      GROUP_TABLES, per network
    group/task-<T>_desc-<D>_<suffix>.tsv (+ .json)              NETWORK_TABLES, across networks
    group/sub-Averaged/func/...                                 the Averaged subject
    group/report.html, group/net-<N>_report.html                group reports

``<N>`` is the network's label (:func:`network_label`): each network's files sit beside the
others', so a run with another network never replaces them.

The per-layer datasets and the summary columns of the metrics come from the metric classes
(:class:`~bids_decode.evaluation.metric.Metric` subclasses listed in :data:`METRICS`): a new score
adds its own. Every HDF5 output carries the root attribute ``bids_decode_format_version``.

JSON policy (:func:`read_json`): a missing file reads as ``{}`` (older or partial outputs);
a file that exists but cannot be parsed is a :class:`~bids_decode.errors.DataError` (exit 65)
naming the file and the fix (rerun the level that wrote it), never silently empty.
"""

# long: the one output schema: every file name, table and dataset is declared here, so a new
# output is one declaration in one place (its paths, reader and writer beside it)

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bids_decode.config import RunConfig
from bids_decode.errors import DataError, OutputError
from bids_decode.evaluation.bhscore import BH_ROIS
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
    "unit_index": Output("With --units-per-layer only: the flat (C-order) index, in the "
                         "layer's own unit shape (attribute unit_shape), of each decoded unit; "
                         "every other unit dataset then has shape (n_sampled,)"),
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

    def merge(self, path: Path, rows) -> Path:
        """Write ``rows`` into the table at ``path``: its rows of the same (roi, layer) are
        replaced, the others kept."""
        new = pd.DataFrame(rows, columns=self.names)
        if Path(path).is_file():
            old = Table.read(path)
            keys = set(zip(new["roi"], new["layer"]))
            old = old[[(r, la) not in keys for r, la in zip(old["roi"], old["layer"])]]
            new = pd.concat([old, new], ignore_index=True) if len(old) else new
        return self.write(path, new)


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


_NETWORKS = {
    "network": "Network (its name as recorded in the participant outputs)",
    "roi": _PAIR["roi"], "layer": _PAIR["layer"],
    "layer_index": "Position of the layer in the network's hierarchy order (0 = first)",
    "relative_depth": "layer_index / (number of layers - 1): 0 = first layer, 1 = last",
    "n_subjects": "Subjects in the network's group level",
    "profile_r_mean": "Mean over subjects of the subject's mean unit accuracy",
    "fraction_decodable_mean": "Mean over subjects of the fraction of units with q < 0.05",
    "r_mean": "Mean over subject pairs of the between-subject r of unit accuracies",
    "r_disattenuated_mean": "Mean over subject pairs of r_disattenuated (r corrected for the "
                            "subjects' split-half reliabilities)",
}
_BH_SUMMARY = {
    "network": _NETWORKS["network"],
    "subject": "Subject label, or 'pooled': the (subject, unit) pairs of every subject together",
    "bh_decoding": "Decoding-based brain hierarchy score: mean over the layer draws of the "
                   "Spearman r between layer position and preferred-ROI position of the kept "
                   "units (Nonaka et al. 2021)",
    "ci_low": "Lower end of bh_decoding's bootstrap 95% interval over units (percentile, 1000 "
              "resamples)",
    "ci_high": "Upper end of the same interval",
    "n_units_kept": "Sampled units (subject, unit pairs when pooled) whose best accuracy is "
                    "significant",
    "test": "Which units and voxels count: permutation (the best ROI's, or best layer's, "
            "permutation p, Bonferroni over the ROIs, or layers, compared, < 0.05) or paper "
            "(KamitaniLab/BHscore's parametric test as coded)",
    "bh_encoding": "Encoding-based brain hierarchy score: Spearman r between ROI position and "
                   "best-layer position of the kept voxels (at most --bh-units drawn per "
                   "subject and ROI; all the score's layers compared); n/a without encoding "
                   "outputs of the 5 ROIs",
    "bh_encoding_ci_low": "Lower end of bh_encoding's bootstrap 95% interval over voxels "
                          "(percentile, 1000 resamples)",
    "bh_encoding_ci_high": "Upper end of the same interval",
    "n_voxels_kept": "Drawn voxels (subject, voxel pairs when pooled) whose best accuracy is "
                     "significant",
    "bh_score": "The brain hierarchy score as published: (bh_decoding + bh_encoding) / 2 (n/a "
                "without bh_encoding)",
}
_BH_LAYERS = {
    "network": _NETWORKS["network"], "subject": _BH_SUMMARY["subject"],
    "layer": _PAIR["layer"],
    "layer_index": "Position of the layer in the score's hierarchy order (0 = first)",
    "n_units": "Units of the layer in the score (sampled units, times subjects when pooled)",
    "n_units_kept": "Of them, units whose best accuracy is significant",
    "share_kept": "n_units_kept / n_units",
    **{f"share_{r}": f"Share of the kept units whose preferred ROI is {r}"
       for r in BH_ROIS},
}

#: Tables across networks: (desc, suffix) of ``group/task-<T>_desc-<D>_<suffix>.tsv`` -> table.
NETWORKS_SUMMARY = Table(_NETWORKS)
BH_SUMMARY = Table(_BH_SUMMARY)
BH_LAYERS = Table(_BH_LAYERS)
NETWORK_TABLES = {("networks", "summary"): NETWORKS_SUMMARY,
                  ("bhscore", "summary"): BH_SUMMARY,
                  ("bhscore", "layers"): BH_LAYERS}


# ------------------------------------------------------------------------------------ paths

def network_label(network: str) -> str:
    """The ``net-<label>`` entity of a network name: its letters and digits.

    A file path (TorchScript) or ``package.module:function`` gives its last part
    (``/m/model.pt`` -> ``model``, ``pkg.nets:tiny`` -> ``tiny``); ``vit_b_16`` -> ``vitb16``.
    """
    name = str(network or "").strip()
    if "/" in name or name.endswith((".pt", ".pth", ".ts")):
        name = Path(name).stem
    name = name.rpartition(":")[2]
    label = re.sub(r"[^A-Za-z0-9]+", "", name)
    if not label:
        raise DataError(f"The network name {network!r} has no letter or digit to name its "
                        "outputs with: give the features file a 'network' attribute, or "
                        "--network NAME.")
    return label


def decoding_h5(output_dir: Path, subject: str, task: str, roi: str, *, network: str) -> Path:
    return func_path(output_dir, subject, task, net=network_label(network), desc=roi,
                     suffix="decoding", ext=".h5")


def roi_sidecar(output_dir: Path, subject: str, task: str, roi: str, *, network: str) -> Path:
    return decoding_h5(output_dir, subject, task, roi, network=network).with_suffix(".json")


def summary_tsv(output_dir: Path, subject: str, task: str, *, network: str) -> Path:
    return func_path(output_dir, subject, task, net=network_label(network), suffix="decoding",
                     ext=".tsv")


def qc_h5(output_dir: Path, subject: str, task: str, *, network: str) -> Path:
    return func_path(output_dir, subject, task, net=network_label(network), suffix="qc",
                     ext=".h5")


def config_json(output_dir: Path, subject: str, task: str, *, network: str) -> Path:
    name = bids_name(subject, task, net=network_label(network), suffix="config", ext=".json")
    return subject_dir(output_dir, subject) / name


def subject_report(output_dir: Path, subject: str, *, network: str) -> Path:
    """``OUTPUT_DIR/sub-<L>_net-<N>.html``."""
    return Path(output_dir) / f"sub-{subject}_net-{network_label(network)}.html"


def group_dir(output_dir: Path) -> Path:
    return Path(output_dir) / GROUP_DIR


def group_table(output_dir: Path, task: str, desc: str, suffix: str, *,
                network: str | None = None) -> Path:
    """``OUTPUT_DIR/group/task-<T>[_net-<N>]_desc-<D>_<suffix>.tsv`` (no ``net``: a table
    across networks)."""
    net = network_label(network) if network is not None else None
    name = bids_name("x", task, net=net, desc=desc, suffix=suffix, ext=".tsv")
    return group_dir(output_dir) / name.split("_", 1)[1]


def group_prefix(task: str, network: str | None = None) -> str:
    """``task-<T>[_net-<N>]``: the start of a group figure's name."""
    return f"task-{task}" + (f"_net-{network_label(network)}" if network is not None else "")


def group_report(output_dir: Path, network: str | None = None) -> Path:
    """``group/report.html`` (every network), or ``group/net-<N>_report.html`` (one)."""
    if network is None:
        return group_dir(output_dir) / "report.html"
    return group_dir(output_dir) / f"net-{network_label(network)}_report.html"


def claim_network(config: RunConfig, subject: str, named: str | None) -> RunConfig:
    """The run's configuration with its network: ``named`` (the features file's ``network``
    attribute), else ``--network``; refused when its ``net-<label>`` holds another network's
    outputs of this subject (:func:`check_network_free`)."""
    config = config.replace(network=named or config.network)
    check_network_free(config.output_dir, subject, config.task, config.network)
    return config


def check_network_free(output_dir: Path, subject: str, task: str, network: str) -> None:
    """Refuse a run whose ``net-<label>`` holds another network's outputs of this subject
    (two names with the same letters and digits, e.g. ``vit_b_16`` and ``vitb16``)."""
    path = config_json(output_dir, subject, task, network=network)
    other = read_json(path).get("network")
    if other is not None and str(other) != str(network):
        raise OutputError(
            f"{path} holds the outputs of network '{other}', and this run's network "
            f"'{network}' has the same label net-{network_label(network)}; running it would "
            "replace them. Name this network differently (the features file's 'network' "
            "attribute, or --network for features computed from --stimuli-dir), or use "
            "another OUTPUT_DIR."
        )


_H5_RE = re.compile(r"^sub-([A-Za-z0-9]+)_task-([A-Za-z0-9]+)_net-([A-Za-z0-9]+)"
                    r"_desc-([A-Za-z0-9]+)_(decoding|encoding)\.h5$")


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


def find_networks(output_dir: Path, task: str, suffix: str = "decoding"
                  ) -> dict[str, dict[str, dict[str, Path]]]:
    """``{network label: {subject: {roi: path}}}`` of every ``*_<suffix>.h5`` of ``task``
    (``suffix``: ``decoding``, or ``encoding`` for the encoding models' files)."""
    found: dict[str, dict[str, dict[str, Path]]] = {}
    pattern = f"sub-*/func/sub-*_task-{task}_net-*_desc-*_{suffix}.h5"
    for path in sorted(Path(output_dir).glob(pattern)):
        m = _H5_RE.match(path.name)
        if (not m or m.group(2) != task or m.group(5) != suffix
                or path.parent.parent.name != f"sub-{m.group(1)}"):
            continue
        found.setdefault(m.group(3), {}).setdefault(m.group(1), {})[m.group(4)] = path
    return found


def find_decoding_files(output_dir: Path, task: str, *,
                        network: str) -> dict[str, dict[str, Path]]:
    """``{subject: {roi: path}}`` of every ``*_net-<N>_desc-<ROI>_decoding.h5`` of ``task``."""
    return find_networks(output_dir, task).get(network_label(network), {})


def network_name(output_dir: Path, task: str, label: str) -> str:
    """The network name recorded in the outputs of a ``net-<label>`` (its first sidecar's
    ``Network``; the label itself where none records it)."""
    for rois in find_networks(output_dir, task).get(label, {}).values():
        for path in rois.values():
            name = read_json(path.with_suffix(".json")).get("Network")
            if name:
                return str(name)
    return label


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
    network: str
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
                 h5: dict[str, Path] | None = None, *, network: str) -> SubjectOutputs:
    """THE reader of a subject's outputs (participant level, Averaged subject, reports).

    Parameters
    ----------
    output_dir : Path
        OUTPUT_DIR (``OUTPUT_DIR/group`` for the Averaged subject).
    subject, task : str
    h5 : dict roi -> Path, optional
        The subject's decoding files when already found (:func:`find_decoding_files`).
    network : str
        The network (name or ``net-`` label) whose outputs to read.
    """
    if h5 is None:
        h5 = find_decoding_files(output_dir, task, network=network).get(subject, {})
    config = read_json(config_json(output_dir, subject, task, network=network))
    tsv = summary_tsv(output_dir, subject, task, network=network)
    summary = Table.read(tsv) if tsv.is_file() else None
    rois = _roi_order(config, summary, h5)
    sub = SubjectOutputs(subject, task, network, {r: h5[r] for r in rois},
                         {r: read_json(h5[r].with_suffix(".json")) for r in rois}, config,
                         summary, qc_h5(output_dir, subject, task, network=network))
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


def write_subject_summary(output_dir: Path, subject: str, task: str, rows: list[dict], *,
                          network: str) -> Path:
    """Merge ``rows`` into ``sub-<L>_task-<T>_net-<N>_decoding.tsv`` (:data:`SUBJECT_SUMMARY`):
    the rows of the same (roi, layer) are replaced, the others kept."""
    path = summary_tsv(output_dir, subject, task, network=network)
    return SUBJECT_SUMMARY.merge(path, rows)


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


def write_unit_sample(group: h5py.Group, store, layer: str) -> None:
    """Record a layer's unit sample (``--units-per-layer``: ``store`` is a
    :class:`~bids_decode.features.units.UnitSample`; nothing for a store of every unit):
    ``unit_index`` and attributes ``unit_shape`` (the layer's own shape) and ``unit_seed``."""
    if not hasattr(store, "index"):
        return
    group.create_dataset("unit_index", data=np.asarray(store.index[layer], dtype=np.int64))
    group.attrs.update({"unit_shape": np.asarray(store.full_shape(layer), dtype=np.int64),
                        "unit_seed": int(store.seed)})
