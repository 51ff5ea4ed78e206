"""Step 5-6 of one subject for decoding: each ROI's layers decoded shard by shard into work
files (:func:`decode_roi`, :func:`decode_layer`), then merged into the ROI's output
(:func:`assemble_roi`) with its sidecar (:func:`write_roi_sidecar`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np

from bids_decode import decoding, evaluation
from bids_decode.config import RunConfig
from bids_decode.errors import DataError
from bids_decode.features import FeatureFile, FeatureStore, TestTargets
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.work_files import (
    read_layer,
    shard_work_files,
    work_file_complete,
    work_file_path,
)
from bids_decode.participant.rois import RoiData
from bids_decode.utils.files import atomic_path, check_free_space, write_json
from bids_decode.utils.grid import UNIT_BLOCK, shard_range
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)


def chunk_units(config: RunConfig, n_rows: int, n_images: int) -> int:
    """Units per chunk read from the features file: a quarter of ``--mem``, on the unit grid."""
    per_unit = 8 * (n_images + 4 * n_rows)
    units = int(max(UNIT_BLOCK, min(1 << 20, config.mem_gb * 2**30 * 0.25 / per_unit)))
    return units // UNIT_BLOCK * UNIT_BLOCK


def _chunks(ff: FeatureStore, layer: str, train_rows, targets: TestTargets, chunk: int,
            unit_range):
    """Yield (start, stop, Y_train, Y_test) unit chunks; test targets averaged per label
    (:meth:`FeatureStore.iter_train_test_chunks`)."""
    yield from ff.iter_train_test_chunks(layer, train_rows, targets, chunk, unit_range)


def layer_metrics(config: RunConfig, lo: int, hi: int, n_test: int, *, halves: bool,
                  **settings) -> list[evaluation.Metric]:
    """The metrics of units ``lo:hi`` of a layer: one of each of :data:`outputs.METRICS`.

    ``settings`` (device, n_jobs, mem_bytes) go to the permutation kernel.
    """
    return [m.build(lo, hi, n_images=n_test, config=config, halves=halves, **settings)
            for m in outputs.METRICS]


def decode_layer(config: RunConfig, ff: FeatureStore, layer: str, roi: RoiData,
                 design, train_rows, targets, work_file: Path) -> None:
    """Decode one shard of one layer from one ROI into a work file (atomically)."""
    n_units = ff.n_units(layer)
    lo, hi = shard_range(n_units, config.unit_shard)
    n_test = len(targets[1])
    rows_per_sample = len(train_rows) + sum(len(g) for g in targets[1])
    chunk = chunk_units(config, rows_per_sample, len(ff.names))
    X_pred = roi.X_test if roi.X_test_halves is None else np.vstack([roi.X_test,
                                                                       roi.X_test_halves])
    metrics = layer_metrics(
        config, lo, hi, n_test, halves=roi.X_test_halves is not None, device=config.device,
        n_jobs=config.nprocs or None, mem_bytes=int(min(256 * 2**20, config.mem_gb * 2**30 * 0.1)))
    check_free_space(work_file.parent, (n_test + 2) * (hi - lo) * 4,
                     f"the work file {work_file.name}")
    n_chunks = max(1, -(-(hi - lo) // chunk))
    with atomic_path(work_file) as tmp, h5py.File(tmp, "w") as w:
        # one image row per HDF5 chunk, as wide as a unit chunk: each write below covers
        # whole chunks, and assemble_roi's image-by-image read touches each chunk once
        # (chunks of all images re-read every chunk once per image: 10x slower at 300k units)
        dec = w.create_dataset("decoded", (n_test, hi - lo), dtype="f4",
                               chunks=(1, min(hi - lo, chunk)) if hi > lo else None)
        bar = progress_bar(total=n_chunks, desc=f"{roi.name}/{layer}", unit="chunk")
        for s, e, Ytr, Yte in _chunks(ff, layer, train_rows, targets, chunk, (lo, hi)):
            check_finite(ff, layer, s, e, Ytr, Yte)
            scale = decoding.UnitScale.of(Ytr)
            # the half averages' rows ride under X_test: the same decoders predict them
            P_all = decoding.predict_chunk(
                design, scale.apply(Ytr), X_pred, config.n_voxels, n_jobs=config.nprocs or None,
                mem_bytes=int(config.mem_gb * 2**30 * 0.5)).astype(np.float64)
            P_all[:, scale.const] = 0.0
            P = P_all[:n_test]
            Zte = scale.apply(Yte, zero_constant=False)
            halves = P_all[n_test:].reshape(2, n_test, e - s) if len(P_all) > n_test else None
            for m in metrics:
                m.update(s, e, P, Zte, constant=scale.const, halves=halves)
            dec[:, s - lo:e - lo] = scale.restore(P).astype(np.float32)
            bar.update(1)
        bar.close()
        for m in metrics:
            m.save(w)
        w.attrs.update({"lo": lo, "hi": hi, "complete": True})


def check_finite(ff: FeatureStore, layer: str, s: int, e: int, Ytr, Yte) -> None:
    if not (np.isfinite(Ytr).all() and np.isfinite(Yte).all()):
        raise DataError(
            f"Layer '{layer}' of the features file {ff.path} has NaN or infinite values "
            f"(units {s}..{e - 1} of the stimuli used). Recompute the features, or "
            "leave the layer out with --layers."
        )


def assemble_roi(config: RunConfig, subject: str, ff: FeatureStore, roi: RoiData,
                 layers: list[str], shard_files: dict, test_labels: list[str],
                 n_train: int) -> list[dict]:
    """Merge the work files of one ROI into its output HDF5; return summary rows."""
    out = outputs.decoding_h5(config.output_dir, subject, config.task, roi.name,
                              network=config.network)
    n_test = len(test_labels)
    size = sum((n_test + 11) * ff.n_units(layer) * 4 for layer in layers)
    attrs = {"roi": roi.name, "subject": subject, "task": config.task,
             "n_voxels_roi": roi.n_voxels,
             "n_voxels_selected": decoding.n_selected(config.n_voxels, roi.n_voxels),
             "alpha": config.alpha, "features_file": str(ff.path), "network": config.network}
    rows = []
    with outputs.decoding_writer(out, test_labels, attrs, size) as h5:
        for layer in layers:
            shape = ff.unit_shape(layer)
            result = _assemble_layer(config, h5, layer, shape, shard_files[layer], n_test)
            outputs.write_unit_sample(h5[layer], ff, layer)  # --units-per-layer
            rows.append({
                "roi": roi.name, "layer": layer, "n_units": int(np.prod(shape)),
                "n_voxels": roi.n_voxels, "n_voxels_selected": attrs["n_voxels_selected"],
                "n_train_samples": n_train, "n_test_images": n_test, **result.columns,
            })
    return rows


def _assemble_layer(config: RunConfig, h5, layer: str, shape: tuple[int, ...],
                    work_files: list[Path], n_test: int) -> evaluation.Result:
    """Merge one layer's work files: decoded features image by image, then the metrics."""
    n_units = int(np.prod(shape))
    metrics = layer_metrics(config, 0, n_units, n_test, halves=True)
    g, dec = outputs.new_layer(h5, layer, n_test, shape)
    read_layer(work_files, metrics, dec)
    result = evaluation.finalize_all(metrics)
    outputs.write_layer(g, shape, result)
    return result


def decode_roi(config: RunConfig, subject: str, ff: FeatureStore, roi: RoiData,
               layers: list[str], train_rows, targets: TestTargets) -> dict[str, list[Path]]:
    """Decode this job's unit shard of every layer from one ROI into work files.

    Finished work files are reused (a rerun resumes). Returns each layer's work files of
    every shard, this job's and the others' (which may not exist yet).
    """
    design = decoding.prepare_design(roi.X_train, config.alpha, dtype=np.dtype(config.dtype),
                                     device=config.device)
    shard_files = {}
    for layer in layers:
        wf = work_file_path(config, subject, roi, layer, config.unit_shard, ff.path)
        if work_file_complete(wf):
            LOGGER.info("sub-%s %s/%s: reusing %s", subject, roi.name, layer, wf.name)
        else:
            t1 = time.time()
            decode_layer(config, ff, layer, roi, design, train_rows, targets, wf)
            LOGGER.info("sub-%s %s/%s: %d units decoded in %.1f s", subject, roi.name, layer,
                        ff.n_units(layer), time.time() - t1)
        shard_files[layer] = shard_work_files(config, subject, roi, layer, ff.path)
    return shard_files


def write_roi_sidecar(config: RunConfig, subject, roi: RoiData, ff: FeatureFile, samples,
                      tr: float) -> None:
    path = outputs.roi_sidecar(config.output_dir, subject, config.task, roi.name,
                               network=config.network)
    write_json(path, {
        "Description": "Per-unit decoding accuracy, ranks and decoded features "
                       "(voxel-selecting ridge regression).",
        "ROI": roi.name,
        "MaskFiles": roi.files,
        "NumberOfVoxels": roi.n_voxels,
        "VoxelsSelectedPerUnit": decoding.n_selected(config.n_voxels, roi.n_voxels),
        "RepetitionTime": tr,
        "FeaturesFile": str(ff.path),
        "FeaturesAttributes": {k: str(v) for k, v in ff.attrs.items()},
        "Layers": list(ff.check_layers(config.layers)),
        "Samples": samples.info,
        **config.sidecar_params(),  # Alpha, HaemodynamicShift, ...: declared in config.py
    })
