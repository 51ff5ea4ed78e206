"""Steps 5-6 of one subject for the encoding models (``--encoding``): each voxel of each ROI
predicted from each layer, the other direction of decoding.

Per ROI and layer, this job's voxel shard (``--unit-shard i/N``: the i-th of N voxel ranges
on the :data:`~bids_decode.encoding.VOXEL_BLOCK` grid) is fitted by
:func:`bids_decode.encoding.encode_voxels` from the layer's z-scored features, streamed in
unit chunks, and scored against the ROI's z-scored test responses with the decoders' metric
classes (per voxel instead of per unit) into a work file (:func:`encode_roi`; finished work
files are reused). The job that finds every shard finished merges them into the ROI's
``*_encoding.h5`` with each voxel's best layer (:func:`assemble_encoding`).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import h5py
import numpy as np

from bids_decode import decoding, evaluation
from bids_decode.config import RunConfig
from bids_decode.encoding import VOXEL_BLOCK, encode_voxels
from bids_decode.features import FeatureStore, TestTargets
from bids_decode.outputs import encoding as enc_outputs
from bids_decode.outputs.brain_maps import write_brain_maps
from bids_decode.outputs.work_files import (
    read_layer,
    shard_work_files,
    work_file_complete,
    work_file_path,
)
from bids_decode.participant.decode import check_finite, chunk_units, layer_metrics
from bids_decode.participant.rois import RoiData
from bids_decode.utils.files import atomic_path
from bids_decode.utils.grid import shard_range
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)

#: The metrics' datasets an encoding file keeps (the others need split halves).
KEPT = ("accuracy", "p_value", "q_value", "p_fwer")


def voxel_range(config: RunConfig, n_voxels: int) -> tuple[int, int]:
    """This job's voxels ``[lo, hi)`` of an ROI (``--unit-shard i/N`` on the voxel grid)."""
    return shard_range(n_voxels, config.unit_shard, VOXEL_BLOCK)


def feature_chunks(config: RunConfig, ff: FeatureStore, layer: str, train_rows,
                   targets: TestTargets, n_rows: int, label: str = ""):
    """A callable giving a new stream of a layer's z-scored unit chunks (training statistics;
    constant units all zero): ``(start, stop, F_train, F_test)``, as
    :func:`~bids_decode.encoding.encode_voxels` reads it once per pass."""
    chunk = chunk_units(config, n_rows, len(ff.names))
    n_chunks, passes = max(1, -(-ff.n_units(layer) // chunk)), itertools.count(1)

    def chunks():
        # a bar per pass over the layer (the selection, then one per voxel group)
        with progress_bar(total=n_chunks, unit="chunk",
                          desc=f"{label} encoding, pass {next(passes)}") as bar:
            for s, e, Ftr, Fte in ff.iter_train_test_chunks(layer, train_rows, targets, chunk,
                                                            (0, ff.n_units(layer))):
                check_finite(ff, layer, s, e, Ftr, Fte)
                scale = decoding.UnitScale.of(Ftr)
                yield s, e, scale.apply(Ftr), scale.apply(Fte)
                bar.update(1)

    return chunks


def encode_layer(config: RunConfig, ff: FeatureStore, layer: str, roi: RoiData, train_rows,
                 targets: TestTargets, work_file: Path) -> None:
    """Fit and score this job's voxels of one ROI from one layer into a work file."""
    lo, hi = voxel_range(config, roi.n_voxels)
    n_test = len(targets[1])
    chunks = feature_chunks(config, ff, layer, train_rows, targets,
                            len(train_rows) + targets.n_rows, f"{roi.name}/{layer}")
    metrics = layer_metrics(config, lo, hi, n_test, halves=False, device=config.device,
                            n_jobs=config.nprocs or None,
                            mem_bytes=int(min(256 * 2**20, config.mem_gb * 2**30 * 0.1)))
    with atomic_path(work_file) as tmp, h5py.File(tmp, "w") as w:
        pred = np.empty((n_test, 0))
        if hi > lo:
            fit = encode_voxels(chunks, roi.X_train[:, lo:hi], n_units=config.encoding_n_units,
                                alpha=config.encoding_alpha, dtype=np.dtype(config.dtype),
                                device=config.device, n_jobs=config.nprocs or None,
                                mem_bytes=int(config.mem_gb * 2**30 * 0.5))
            pred = np.asarray(fit.pred, dtype=np.float64)
            true = np.asarray(roi.X_test[:, lo:hi], dtype=np.float64)
            for m in metrics:
                m.update(lo, hi, pred, true, constant=np.zeros(hi - lo, bool))
        w.create_dataset("decoded", data=pred.astype(np.float32))
        for m in metrics:
            m.save(w)
        w.attrs.update({"lo": lo, "hi": hi, "complete": True})


def encode_roi(config: RunConfig, subject: str, ff: FeatureStore, roi: RoiData,
               layers: list[str], train_rows, targets: TestTargets) -> dict[str, list[Path]]:
    """Encode this job's voxel shard of one ROI from every layer into work files (finished
    ones reused); return each layer's work files of every shard."""
    shard_files = {}
    for layer in layers:
        wf = work_file_path(config, subject, roi, layer, config.unit_shard, ff.path,
                            encoding=True)
        if work_file_complete(wf):
            LOGGER.info("sub-%s %s/%s: reusing %s", subject, roi.name, layer, wf.name)
        else:
            t1 = time.time()
            encode_layer(config, ff, layer, roi, train_rows, targets, wf)
            LOGGER.info("sub-%s %s/%s: %d voxels encoded from %d units in %.1f s", subject,
                        roi.name, layer, np.subtract(*voxel_range(config, roi.n_voxels)[::-1]),
                        ff.n_units(layer), time.time() - t1)
        shard_files[layer] = shard_work_files(config, subject, roi, layer, ff.path,
                                              encoding=True)
    return shard_files


def assemble_encoding(config: RunConfig, subject: str, ff: FeatureStore, roi: RoiData,
                      layers: list[str], shard_files: dict, test_labels: list[str],
                      n_train: int, grid: tuple) -> list[dict]:
    """Merge one ROI's encoding work files into its ``*_encoding.h5``; return summary rows.

    ``grid``: ``(grid_shape, grid_affine)`` of the masks (``roi.voxel_index`` indexes it).
    """
    out = enc_outputs.encoding_h5(config.output_dir, subject, config.task, roi.name,
                                  network=config.network)
    k = {la: decoding.n_selected(config.encoding_n_units, ff.n_units(la)) for la in layers}
    attrs = {"roi": roi.name, "subject": subject, "task": config.task,
             "network": config.network, "alpha": config.encoding_alpha,
             "n_units_selected": config.encoding_n_units, "features_file": str(ff.path)}
    shape, affine = grid
    rows = []
    with enc_outputs.encoding_writer(out, voxel_index=roi.voxel_index, grid_shape=shape,
                                     grid_affine=affine, test_names=test_labels, attrs=attrs,
                                     n_layers=len(layers)) as h5:
        for layer in layers:
            metrics = layer_metrics(config, 0, roi.n_voxels, len(test_labels), halves=False)
            predicted = np.empty((len(test_labels), roi.n_voxels), dtype=np.float32)
            read_layer(shard_files[layer], metrics, predicted)
            result = evaluation.finalize_all(metrics)
            data = {name: result.datasets[name] for name in KEPT if name in result.datasets}
            for name in KEPT:
                data.setdefault(name, np.full(roi.n_voxels, np.nan))
            enc_outputs.write_encoding_layer(h5, layer, {**data, "predicted": predicted},
                                             {"n_units": ff.n_units(layer),
                                              "n_units_selected": k[layer]})
            rows.append(_summary_row(roi, layer, layers, data, k[layer], ff.n_units(layer),
                                     n_train, len(test_labels)))
        enc_outputs.write_best_layers(h5, layers)
        best = h5["best_layer"][()]
    for i, row in enumerate(rows):
        row["n_best"] = int(np.sum(best == i))
    return rows


def _summary_row(roi: RoiData, layer: str, layers: list[str], data: dict, k: int,
                 n_units: int, n_train: int, n_test: int) -> dict:
    acc, q = np.asarray(data["accuracy"], float), np.asarray(data["q_value"], float)
    n_sig = int(np.sum(q < 0.05)) if np.isfinite(q).any() else float("nan")
    return {
        "roi": roi.name, "layer": layer,
        "relative_depth": float(enc_outputs.relative_depth(layers.index(layer), len(layers))),
        "n_units": n_units, "n_units_selected": k, "n_voxels": roi.n_voxels,
        "accuracy_mean": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "accuracy_median": (float(np.nanmedian(acc)) if np.isfinite(acc).any()
                            else float("nan")),
        "n_significant": n_sig,
        "fraction_significant": n_sig / roi.n_voxels if roi.n_voxels else float("nan"),
        "n_train_samples": n_train, "n_test_images": n_test,
    }


def write_encoding(config: RunConfig, subject: str, ff: FeatureStore, roi: RoiData,
                   layers: list[str], shard_files: dict, samples, grid: tuple) -> None:
    """Step 6 of the encoding models of one ROI: its ``*_encoding.h5``, summary rows and brain
    maps (:func:`~bids_decode.outputs.brain_maps.write_brain_maps`).

    ``grid``: ``(shape, affine)`` of the masks (affine None: not an image grid, e.g. BData
    columns; the identity is recorded).
    """
    shape, affine = grid
    affine = np.eye(4) if affine is None else affine
    rows = assemble_encoding(config, subject, ff, roi, layers, shard_files,
                             samples.test_labels, samples.X_train.shape[0], (shape, affine))
    enc_outputs.write_encoding_summary(config.output_dir, subject, config.task, rows,
                                       network=config.network)
    write_brain_maps(enc_outputs.encoding_h5(config.output_dir, subject, config.task, roi.name,
                                             network=config.network), bh_test=config.bh_test)
