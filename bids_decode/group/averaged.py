"""Group level, step 4: the Averaged subject.

The subjects' decoded features are averaged and scored like one subject, by the metrics of
the participant level (:mod:`bids_decode.evaluation.metrics`), and written by the same writer
(:func:`bids_decode.outputs.schema.decoding_writer`) into ``OUTPUT_DIR/group/sub-Averaged/``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from bids_decode import decoding, evaluation
from bids_decode.config import quoted, sidecar_entries
from bids_decode.features import FeatureStore
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.schema import AVERAGED
from bids_decode.utils.files import write_json


@dataclass
class TrueLayer:
    """True test features of one layer, z-scored, with what every ROI's scoring reuses.

    Attributes
    ----------
    z : ndarray of shape (n_test, n_units), float32
        True values of the test images (group test-image order), z-scored with the mean and
        SD (ddof=1) over the reference images; 0 for constant units.
    scale : decoding.UnitScale
        The reference statistics (constant units are scored NaN, as in the participant level).
    """

    z: np.ndarray
    scale: decoding.UnitScale


def averaged_dir(output_dir: Path) -> Path:
    """Where the Averaged subject lives: ``OUTPUT_DIR/group/`` (kept out of the sub-* globs
    of tools and of the BIDS validator, which ignores ``group/``)."""
    return outputs.group_dir(output_dir)


def reference_rows(ff: FeatureStore, test_rows: np.ndarray) -> tuple[np.ndarray, str]:
    """Rows whose statistics z-score the features: every image that is not a test image.

    The participant level z-scores with its training samples; the group level does not know
    them and uses the features file's non-test images instead (the training images, when the
    file holds the stimulus set of the experiment). Falls back to the test images when the file
    holds nothing else.
    """
    ref = np.setdiff1d(np.arange(len(ff.names)), test_rows)
    if ref.size >= 2:
        return ref, f"the {ref.size} non-test images of the features file"
    return np.unique(test_rows), "the test images (the features file holds no other images)"




def read_true_layer(ff: FeatureStore, layer: str, test_rows: np.ndarray, ref_rows: np.ndarray,
                    mem_gb: float) -> TrueLayer:
    """Stream one layer of the features file into a :class:`TrueLayer`."""
    n_units = ff.n_units(layer)
    n_img, n_test = len(ff.names), len(test_rows)
    chunk = int(max(256, min(1 << 22, mem_gb * 2**30 * 0.2 / (8 * n_img))))
    z = np.empty((n_test, n_units), dtype=np.float32)
    scale = decoding.UnitScale(np.empty(n_units), np.empty(n_units),
                                 np.empty(n_units, dtype=bool))
    for s, e, Y in ff.iter_unit_chunks(layer, np.arange(n_img), chunk):
        part = decoding.UnitScale.of(Y[ref_rows])
        scale.mean[s:e], scale.sd[s:e], scale.const[s:e] = part.mean, part.sd, part.const
        z[:, s:e] = part.apply(Y[test_rows])
    return TrueLayer(z, scale)


def _slice_step(shape: tuple[int, ...], max_units: int) -> tuple[int, int]:
    """(units per index of the first unit axis, indices per chunk)."""
    per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return per, max(1, max_units // per)


def average_layer(sources: list[tuple[h5py.Dataset, np.ndarray]], truth: TrueLayer,
                  out, mem_gb: float) -> list[evaluation.Metric]:
    """Average the subjects' decoded features of one layer, write them, score them.

    The metrics are those of the participant level (profile correlation, pattern correlation
    and identification), with the true side z-scored once per layer in ``truth``.

    Parameters
    ----------
    sources : list of (dataset of shape (n_test, *unit_shape), row order)
        Each subject's ``/<layer>/decoded`` and the index of each group test image in it.
    truth : TrueLayer
    out : h5py.Dataset or ndarray of shape (n_test, *unit_shape)
        Receives the averaged decoded features (features' own units).
    mem_gb : float
        Memory budget; about a fifth of it is used per chunk of units.

    Returns
    -------
    list of Metric
        :class:`~bids_decode.evaluation.metrics.ProfileCorrelation` (float64; ``values`` of shape
        (n_units,)) and :class:`~bids_decode.evaluation.metrics.PatternIdentification`, updated.
    """
    shape = tuple(out.shape[1:])
    n_test = out.shape[0]
    n_units = int(np.prod(shape))
    per, step = _slice_step(shape, int(max(1, mem_gb * 2**30 * 0.2 / (8 * n_test * 4))))
    metrics = [evaluation.ProfileCorrelation(0, n_units, np.float64),
               evaluation.PatternIdentification(0, n_units, n_test)]
    identity = [np.array_equal(order, np.arange(n_test)) for _, order in sources]
    for a in range(0, shape[0], step):
        b = min(shape[0], a + step)
        s, e = a * per, b * per
        zd = np.zeros((n_test, e - s))
        for (ds, order), same in zip(sources, identity):
            slab = ds[:, a:b].reshape(n_test, -1)
            zd += slab if same else slab[order]
        zd /= len(sources)
        out[:, a:b] = zd.reshape((n_test, b - a, *shape[1:])).astype(np.float32)
        scale = truth.scale.slice(s, e)
        zt = truth.z[:, s:e].astype(np.float64)
        for m in metrics:
            m.update(s, e, scale.apply(zd), zt, constant=scale.const)
    return metrics


def row_order(names: list[str], subject_names: list[str]) -> np.ndarray:
    """Index in ``subject_names`` of each of ``names``."""
    index = {n: i for i, n in enumerate(subject_names)}
    return np.array([index[n] for n in names], dtype=np.int64)


def open_averaged(stack: contextlib.ExitStack, out_dir: Path, task: str, plan,
                  ref_desc: str) -> dict[str, h5py.File]:
    """One output per ROI for the Averaged subject, renamed when the stack closes."""
    files = {}
    for roi in plan.rois:
        side = plan.subjects[0].sidecars[roi]
        attrs = {"roi": roi, "subject": AVERAGED, "task": task, "network": plan.network,
                 "alpha": quoted({}, side, "alpha", float("nan")),
                 "features_file": str(plan.features_file),
                 "subjects": np.array([s.label for s in plan.subjects], dtype=object),
                 "zscore_reference": ref_desc}
        path = outputs.decoding_h5(averaged_dir(out_dir), AVERAGED, task, roi,
                                   network=plan.network)
        files[roi] = stack.enter_context(outputs.decoding_writer(path, plan.test_names, attrs))
    return files


def average_roi_layer(handles, plan, roi: str, layer: str, truth: TrueLayer, orders: dict,
                      h5: h5py.File, mem_gb: float) -> dict:
    """Average, write and score one (ROI, layer); its summary columns and ``accuracy``."""
    shape = plan.shapes[layer]
    g, dec = outputs.new_layer(h5, layer, len(plan.test_names), shape)
    sources = [(handles[s.label, roi][layer]["decoded"], orders[s.label]) for s in plan.subjects]
    metrics = average_layer(sources, truth, dec, mem_gb)
    result = evaluation.finalize_all(metrics)
    outputs.write_layer(g, shape, result)
    return {"n_units": int(np.prod(shape)), **result.columns, "accuracy": metrics[0].values}


def finish_averaged(out_dir: Path, task: str, plan, averaged: dict, ref_desc: str) -> None:
    """Summary TSV and sidecars of the Averaged subject (its HDF5 files close with the stack).

    Parameters
    ----------
    averaged : dict (roi, layer) -> summary columns of :func:`average_roi_layer`
    """
    rows = []
    for roi in plan.rois:
        for layer in plan.layers:
            av = averaged[roi, layer]
            rows.append({"roi": roi, "layer": layer, "n_test_images": len(plan.test_names),
                         **{k: v for k, v in av.items() if k in outputs.SUBJECT_SUMMARY.columns}})
        side = plan.subjects[0].sidecars[roi]
        write_json(outputs.roi_sidecar(averaged_dir(out_dir), AVERAGED, task, roi,
                                       network=plan.network), {
            "Description": "Decoded features averaged over subjects, scored like one subject "
                           "(bids_decode group level).",
            "ROI": roi, "Subjects": [s.label for s in plan.subjects],
            "SourceFiles": [str(s.h5[roi].relative_to(out_dir)) for s in plan.subjects],
            "FeaturesFile": str(plan.features_file),
            "FeaturesAttributes": side.get("FeaturesAttributes", {}),
            "Layers": plan.layers, **sidecar_entries(side, "alpha", "network"),
            "ZScoreReference": f"Pattern correlation and identification z-score true and "
                               f"decoded features with the mean and SD over {ref_desc}."})
    outputs.SUBJECT_SUMMARY.write(outputs.summary_tsv(averaged_dir(out_dir), AVERAGED, task,
                                                      network=plan.network), rows)


class AveragedSubject:
    """The Averaged subject of a group run, filled (ROI, layer) by (ROI, layer).

    Open it inside an ExitStack: the features file and the outputs close (and the outputs are
    renamed into place) with the stack.

    Parameters
    ----------
    stack : contextlib.ExitStack
    ff : FeatureStore
        The true features; its test targets must be single images.
    out_dir : Path
    task : str
    plan : GroupPlan
    mem_gb : float
    """

    def __init__(self, stack: contextlib.ExitStack, ff: FeatureStore, out_dir: Path, task: str,
                 plan, test_rows: np.ndarray, mem_gb: float):
        self.ff, self.out_dir, self.task, self.plan, self.mem_gb = ff, out_dir, task, plan, mem_gb
        self.test_rows = test_rows
        self.ref_rows, self.ref_desc = reference_rows(ff, self.test_rows)
        self.files = open_averaged(stack, out_dir, task, plan, self.ref_desc)
        self.orders = {s.label: row_order(plan.test_names, s.test_names)
                       for s in plan.subjects}
        self.columns: dict[tuple[str, str], dict] = {}
        self.truth: TrueLayer | None = None

    def read_layer(self, layer: str) -> None:
        """Read the true features of ``layer`` (once for all ROIs)."""
        self.truth = read_true_layer(self.ff, layer, self.test_rows, self.ref_rows, self.mem_gb)

    def score(self, handles, roi: str, layer: str) -> dict:
        """Average, write and score (roi, layer) after :meth:`read_layer`; its columns
        (``accuracy``: the per-unit accuracies, float64)."""
        out = average_roi_layer(handles, self.plan, roi, layer, self.truth, self.orders,
                                self.files[roi], self.mem_gb)
        self.columns[roi, layer] = {k: v for k, v in out.items() if k != "accuracy"}
        return out

    def finish(self) -> None:
        """Summary table and sidecars (call before the stack closes)."""
        finish_averaged(self.out_dir, self.task, self.plan, self.columns, self.ref_desc)
