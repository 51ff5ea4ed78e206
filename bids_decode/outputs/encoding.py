"""The encoding outputs: per-voxel accuracies of each layer, each voxel's best layer.

Files (``docs/outputs.md`` explains them for users)::

    sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_encoding.h5   ENCODING_DATASETS
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_encoding.tsv (+ .json)   ENCODING_SUMMARY, ROI x layer

Every array of an encoding file has the ROI's voxels on its last axis, in the order of
``voxel_index``: the flat (C-order) index of each voxel in the grid of the ROI masks
(``grid_shape``, ``grid_affine``), so a brain map is one assignment into that grid.
:func:`encoding_writer` writes a file, :func:`read_encoding` reads one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from bids_decode.errors import DataError
from bids_decode.outputs.paths import func_path
from bids_decode.outputs.schema import FORMAT_ATTR, Table, find_networks, network_label, stamp
from bids_decode.utils.files import atomic_path, check_free_space

LOGGER = logging.getLogger(__name__)

#: Root datasets of ``*_desc-<ROI>_encoding.h5`` (name -> description).
ROOT_DATASETS = {
    "voxel_index": "Flat (C-order) index of each voxel in the grid of the ROI masks "
                   "(attribute grid_shape, dataset grid_affine); the last axis of every "
                   "other array",
    "grid_affine": "Voxel-to-world affine (4, 4) of the masks' grid",
    "stimulus_name": "Test images, the first axis of each layer's 'predicted'",
    "best_layer": "Index into the attribute 'layers' of the layer that predicts the voxel best "
                  "(-1: no layer has a finite accuracy)",
    "best_depth": "best_layer / (number of layers - 1): 0 = first layer, 1 = last (NaN for -1)",
    "best_accuracy": "Accuracy of the best layer",
    "best_p_value": "Permutation p-value of the best layer's accuracy (NaN without "
                    "permutations)",
}
#: Datasets of each layer group (name -> description).
ENCODING_DATASETS = {
    "accuracy": "Pearson r over the test images between the predicted and the measured "
                "response (test blocks averaged per image, z-scored with training statistics)",
    "p_value": "One-sided permutation p-value of the accuracy (H0: r <= 0); NaN without "
               "permutations",
    "q_value": "Benjamini-Hochberg q-value over the ROI's voxels",
    "p_fwer": "Max-statistic (Westfall-Young) family-wise adjusted p-value over the voxels",
    "predicted": "Predicted responses to the test images, shape (n_images, n_voxels), in the "
                 "z-scored units of the training samples",
}

#: ``sub-<L>_task-<T>_net-<N>_encoding.tsv``: one row per (ROI, layer).
ENCODING_SUMMARY = Table({
    "roi": "Region of interest",
    "layer": "DNN layer",
    "relative_depth": "Position of the layer among the encoded layers, 0 (first) to 1 (last)",
    "n_units": "Units in the layer",
    "n_units_selected": "Units used by each voxel's model",
    "n_voxels": "Voxels in the ROI",
    "accuracy_mean": "Mean over voxels of the encoding accuracy (Pearson r over test images)",
    "accuracy_median": "Median of the same",
    "n_significant": "Voxels whose Benjamini-Hochberg q-value is below 0.05 (n/a without "
                     "permutations)",
    "fraction_significant": "n_significant / n_voxels",
    "n_best": "Voxels whose best layer is this one",
    "n_train_samples": "Training samples (blocks)",
    "n_test_images": "Test images (blocks averaged per image)",
})


def encoding_h5(output_dir: Path, subject: str, task: str, roi: str, *, network: str) -> Path:
    return func_path(output_dir, subject, task, net=network_label(network), desc=roi,
                     suffix="encoding", ext=".h5")


def encoding_tsv(output_dir: Path, subject: str, task: str, *, network: str) -> Path:
    return func_path(output_dir, subject, task, net=network_label(network), suffix="encoding",
                     ext=".tsv")


def best_layers(accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's best layer and its accuracy (NaN accuracies never win).

    Parameters
    ----------
    accuracy : ndarray of shape (n_layers, n_voxels)

    Returns
    -------
    best : ndarray of shape (n_voxels,), int16
        Layer index, -1 where no layer is finite (ties: the earlier layer).
    best_accuracy : ndarray of shape (n_voxels,), float32
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    finite = np.isfinite(acc)
    best = np.argmax(np.where(finite, acc, -np.inf), axis=0).astype(np.int16)
    best[~finite.any(axis=0)] = -1
    value = np.take_along_axis(acc, np.maximum(best, 0)[None].astype(np.int64), 0)[0]
    return best, np.where(best >= 0, value, np.nan).astype(np.float32)


def relative_depth(index, n_layers: int):
    """``index / (n_layers - 1)`` (0 for a single layer; NaN where ``index`` is -1)."""
    index = np.asarray(index, dtype=np.float64)
    depth = index / max(1, n_layers - 1)
    return np.where(index >= 0, depth, np.nan)


@contextlib.contextmanager
def encoding_writer(path: Path, *, voxel_index, grid_shape, grid_affine, test_names,
                    attrs: dict, n_layers: int):
    """THE writer of ``*_desc-<ROI>_encoding.h5``: yields the open file, renamed when done.

    The root datasets of the voxels and images are written first; the caller adds one group
    per layer with :func:`write_encoding_layer` and then calls :func:`write_best_layers`.
    """
    n_vox, n_test = len(voxel_index), len(test_names)
    check_free_space(Path(path).parent, 4 * n_vox * (n_layers * (n_test + 4) + 8),
                     Path(path).name)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("voxel_index", data=np.asarray(voxel_index, dtype=np.int64))
        h5.create_dataset("grid_affine", data=np.asarray(grid_affine, dtype=np.float64))
        h5.create_dataset("stimulus_name", data=np.array(list(test_names), dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.attrs.update({**attrs, "grid_shape": np.asarray(grid_shape, dtype=np.int64),
                         "n_voxels": n_vox, "n_test_images": n_test})
        stamp(h5)
        yield h5


def write_encoding_layer(h5: h5py.File, layer: str, datasets: dict, attrs: dict) -> None:
    """One layer group: :data:`ENCODING_DATASETS` (voxels last) and its attributes."""
    unknown = set(datasets) - set(ENCODING_DATASETS)
    if unknown:
        raise ValueError(f"undeclared encoding datasets {sorted(unknown)}")
    g = h5.create_group(layer)
    for name, arr in datasets.items():
        dtype = np.float64 if name in ("p_value", "q_value", "p_fwer") else np.float32
        g.create_dataset(name, data=np.asarray(arr, dtype=dtype))
    g.attrs.update(attrs)


def write_best_layers(h5: h5py.File, layers: list[str]) -> None:
    """The root ``best_*`` datasets from the layer groups, and the ``layers`` attribute."""
    acc = np.stack([h5[la]["accuracy"][()] for la in layers])
    p = np.stack([h5[la]["p_value"][()] for la in layers])
    best, best_acc = best_layers(acc)
    best_p = np.take_along_axis(p, np.maximum(best, 0)[None].astype(np.int64), 0)[0]
    h5.create_dataset("best_layer", data=best)
    h5.create_dataset("best_depth", data=relative_depth(best, len(layers)).astype(np.float32))
    h5.create_dataset("best_accuracy", data=best_acc)
    h5.create_dataset("best_p_value", data=np.where(best >= 0, best_p, np.nan))
    h5.attrs["layers"] = np.array(layers, dtype=object)


@dataclass
class EncodingOutputs:
    """One ``*_desc-<ROI>_encoding.h5``, read.

    Attributes
    ----------
    path : Path
    layers : list of str
    accuracy, p_value : ndarray of shape (n_layers, n_voxels)
    voxel_index : ndarray of shape (n_voxels,), int64
    grid_shape : tuple of int
    grid_affine : ndarray of shape (4, 4)
    best_layer : ndarray of shape (n_voxels,), int16
    best_depth, best_accuracy, best_p_value : ndarray of shape (n_voxels,)
    attrs : dict
    """

    path: Path
    layers: list[str]
    accuracy: np.ndarray
    p_value: np.ndarray
    voxel_index: np.ndarray
    grid_shape: tuple[int, ...]
    grid_affine: np.ndarray
    best_layer: np.ndarray
    best_depth: np.ndarray
    best_accuracy: np.ndarray
    best_p_value: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def roi(self) -> str:
        return str(self.attrs.get("roi", ""))

    def volume(self, values, fill=np.nan) -> np.ndarray:
        """Per-voxel ``values`` (n_voxels,) placed into the masks' grid (``fill`` elsewhere)."""
        vol = np.full(int(np.prod(self.grid_shape)), fill, dtype=np.float32)
        vol[self.voxel_index] = values
        return vol.reshape(self.grid_shape)


def read_encoding(path: Path) -> EncodingOutputs:
    """Read an encoding file (:func:`encoding_writer`'s); a damaged one is a DataError."""
    try:
        with h5py.File(path, "r") as h5:
            layers = [str(x) for x in h5.attrs["layers"]]
            return EncodingOutputs(
                path=Path(path), layers=layers,
                accuracy=np.stack([h5[la]["accuracy"][()] for la in layers]),
                p_value=np.stack([h5[la]["p_value"][()] for la in layers]),
                voxel_index=h5["voxel_index"][()],
                grid_shape=tuple(int(x) for x in h5.attrs["grid_shape"]),
                grid_affine=h5["grid_affine"][()],
                best_layer=h5["best_layer"][()], best_depth=h5["best_depth"][()],
                best_accuracy=h5["best_accuracy"][()], best_p_value=h5["best_p_value"][()],
                attrs={k: (v if not isinstance(v, bytes) else v.decode())
                       for k, v in h5.attrs.items() if k not in ("layers", FORMAT_ATTR)})
    except (OSError, KeyError) as exc:
        raise DataError(
            f"The encoding output {path} cannot be read ({exc}). It is damaged or from another "
            "version: rerun the participant level with --encoding for this subject.") from exc


def find_encoding_files(output_dir: Path, task: str, network: str) -> dict[str, dict[str, Path]]:
    """``{subject: {roi: path}}`` of a network's encoding files (:func:`find_networks`)."""
    return find_networks(output_dir, task, "encoding").get(network_label(network), {})


def write_encoding_summary(output_dir: Path, subject: str, task: str, rows: list[dict], *,
                           network: str) -> Path:
    """Merge ``rows`` into the subject's encoding table (the same (roi, layer) replaced)."""
    path = encoding_tsv(output_dir, subject, task, network=network)
    return ENCODING_SUMMARY.merge(path, rows)
