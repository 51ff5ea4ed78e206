"""One subject, as numbered steps (:func:`run_participant`, :func:`_run`):

1-3. inputs: the BOLD source's runs, ROI masks and samples (:mod:`bids_decode.inputs.sources`);
4. features: the features file (:func:`_features_path`) and the run's memory plan
   (:func:`log_run_plan`);
5. decoding, per ROI (:func:`prepare_roi`) and layer: this job's unit shard into a work file
   (:func:`decode_roi`, :func:`decode_layer`; finished work files are reused);
6. evaluation and outputs, once every shard is finished: the work files merged into the ROI's
   output (:func:`assemble_roi`), its sidecar, the summary table, the run configuration;
7. the QC file and the subject's report (from the outputs only).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock

from bids_decode import decoding, evaluation, resources
from bids_decode.config import RunConfig
from bids_decode.errors import DataError, MissingInputError
from bids_decode.features import FeatureFile, FeatureStore, TestTargets
from bids_decode.features.h5file import network_attribute
from bids_decode.features.stimuli import discover_images
from bids_decode.features.units import UnitSample
from bids_decode.inputs.samples import SubjectInputs
from bids_decode.inputs.sources import BoldSource
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.provenance import provenance
from bids_decode.outputs.qc import write_qc
from bids_decode.outputs.work_files import (
    read_layer,
    shard_work_files,
    work_file_complete,
    work_file_path,
)
from bids_decode.reports import write_subject_report
from bids_decode.utils.files import (
    atomic_path,
    check_free_space,
    ensure_dir,
    lock,
    safe_name,
    write_json,
)
from bids_decode.utils.grid import UNIT_BLOCK, shard_range
from bids_decode.utils.logs import WarningCollector
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)


@dataclass
class RoiData:
    """z-scored samples of one ROI (training statistics only)."""

    name: str
    X_train: np.ndarray  # (n_train, n_vox)
    X_test: np.ndarray  # (n_test, n_vox)
    n_voxels: int
    files: list[str]
    digest: str
    X_test_halves: np.ndarray | None = None  # (2 * n_test, n_vox): odd, then even presentations


def zscore_train(X_train, X_test):
    """z-score columns with the training mean and std (constant columns -> 0)."""
    mu = X_train.mean(axis=0, dtype=np.float64)
    sd = X_train.std(axis=0, ddof=1, dtype=np.float64)
    sd[sd < 1e-8] = np.inf
    return ((X_train - mu) / sd).astype(np.float32), ((X_test - mu) / sd).astype(np.float32)


def stimulus_folder(config: RunConfig) -> Path:
    """The images features are extracted from without --features (default BIDS_DIR/stimuli)."""
    return Path(config.stimuli_dir or Path(config.bids_dir) / "stimuli")


def feature_files(config: RunConfig) -> list[Path]:
    """The files step 4 reads (``--list-inputs``, the annex check): ``--features``, else the
    stimulus images (and the ``--weights`` file) the features are extracted from."""
    if config.features:
        return [Path(config.features)]
    stimuli, files = stimulus_folder(config), []
    if stimuli.is_dir():
        files = discover_images(stimuli)[0]
    if config.weights and config.weights != "random":
        files.append(Path(config.weights))
    return files


def _features_path(config: RunConfig) -> Path:
    """The features file: --features, or extracted once from every stimulus image.

    Extraction covers every image of the stimulus folder, so all subjects (and parallel
    jobs, serialised by a lock) share one file in the work folder.
    """
    if config.features:
        return Path(config.features)
    from bids_decode.features.extract import extract_features  # (torch: only to extract)

    stimuli = stimulus_folder(config)
    if not stimuli.is_dir():
        raise MissingInputError(
            f"No --features file was given and the stimulus folder {stimuli} does not exist. "
            "Give precomputed features with --features FILE, or the images with --stimuli-dir."
        )
    paths, names = discover_images(stimuli)
    folder = ensure_dir(config.work_path / "features")
    out = folder / f"{safe_name(config.network)}_{safe_name(str(config.weights or 'cache'))}.h5"
    with FileLock(str(out) + ".lock", timeout=-1):
        return extract_features(
            paths, names, out, network=config.network, layers=list(config.layers) or None,
            weights=config.weights, device=config.device, preprocessing=config.preprocessing,
        )


def _chunk_units(config: RunConfig, n_rows: int, n_images: int) -> int:
    """Units per chunk read from the features file: a quarter of ``--mem``, on the unit grid."""
    per_unit = 8 * (n_images + 4 * n_rows)
    units = int(max(UNIT_BLOCK, min(1 << 20, config.mem_gb * 2**30 * 0.25 / per_unit)))
    return units // UNIT_BLOCK * UNIT_BLOCK


def log_run_plan(config: RunConfig, subject: str, ff: FeatureFile, layers: list[str],
                 n_train: int, n_rows: int, n_voxels: int) -> dict:
    """Log the memory plan of one subject's run (:func:`resources.memory_plan`); return it
    (bytes). ``ff`` is the open features file; ``n_train`` the training samples; ``n_rows``
    the feature rows read per unit (training samples + test blocks); ``n_voxels`` the voxels
    of the ROI union (an upper bound of every ROI's)."""
    widths = [np.subtract(*shard_range(ff.n_units(la), config.unit_shard)[::-1])
              for la in layers]
    plan = resources.memory_plan(
        n_train=n_train, n_rows=n_rows, n_images=len(ff.names), n_voxels=n_voxels,
        k=decoding.n_selected(config.n_voxels, n_voxels), n_units=int(max(widths, default=1)),
        chunk_units=_chunk_units(config, n_rows, len(ff.names)),
        nprocs=config.nprocs or resources.affinity_cpus(), mem_gb=config.mem_gb,
        itemsize=np.dtype(config.dtype).itemsize)
    resources.log_memory_plan(f"sub-{subject}", plan,
                              config.extra.get("resources", {}).get("allocated_gb"))
    return plan


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
    chunk = _chunk_units(config, rows_per_sample, len(ff.names))
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
            _check_finite(ff, layer, s, e, Ytr, Yte)
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


def _check_finite(ff: FeatureStore, layer: str, s: int, e: int, Ytr, Yte) -> None:
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


def prepare_roi(name: str, mask: np.ndarray, samples, files: list[Path]) -> RoiData:
    flat = np.flatnonzero(mask.ravel())
    cols = np.flatnonzero(np.isin(samples.voxels, flat))
    if cols.size == 0:
        raise DataError(
            f"ROI {name} has no usable voxels after intersecting its mask with the BOLD data "
            f"(mask files: {[str(f) for f in files][:2]}...). Check the masks' grid or choose "
            "other ROIs with --roi."
        )
    X_train, X_test = zscore_train(samples.X_train[:, cols], samples.X_test[:, cols])
    halves = None
    if samples.test_halves is not None:
        H = samples.test_halves[:, :, cols].reshape(-1, cols.size)
        halves = zscore_train(samples.X_train[:, cols], H)[1]
    digest = hashlib.sha1(samples.voxels[cols].tobytes()).hexdigest()[:12]
    return RoiData(name, X_train, X_test, int(cols.size), [str(f) for f in files], digest,
                   halves)


def run_participant(config: RunConfig, subject: str,
                    source: BoldSource | None = None) -> dict:
    """Decode every requested layer from every requested ROI of one subject (see _run).

    ``source``: the run's :class:`BoldSource` where the caller has parsed it already (the
    command line does, for its input checks), else parsed here (``auto`` resolved).
    """
    if source is None:
        source = BoldSource.of(config)
    config = config.replace(bold_source=source.option)  # 'auto' -> what was used, recorded
    collector = WarningCollector()
    logging.getLogger("bids_decode").addHandler(collector)
    try:
        return _run(config, subject, source, collector)
    finally:
        logging.getLogger("bids_decode").removeHandler(collector)


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


def _run(config: RunConfig, subject: str, source: BoldSource,
         collector: WarningCollector) -> dict:
    """Decode every requested layer from every requested ROI of one subject.

    Returns
    -------
    dict
        ``{"subject", "rows", "info", "complete"}``; ``complete`` is False when other unit
        shards are still missing.
    """
    t0 = time.time()
    config = outputs.claim_network(config, subject, network_attribute(config.features))
    # 1-3. layout, ROIs and samples, as the source's kind gives them (inputs.BOLD_SOURCES)
    inputs: SubjectInputs = source.subject_inputs(config, subject)
    samples, tr = inputs.samples, inputs.tr
    LOGGER.info("sub-%s: %d training samples, %d test images (%d blocks), %d repeat blocks "
                "left out", subject, samples.X_train.shape[0], len(samples.test_labels),
                samples.info["n_test_blocks"], samples.info["n_repeats_dropped"])
    # 4. features
    with FeatureFile(_features_path(config)) as file:  # --units-per-layer: sampled units
        ff = UnitSample.over(file, config.units_per_layer, config.unit_seed)
        layers = ff.check_layers(config.layers)
        train_rows = ff.rows_for(samples.train_labels, what="training stimuli")
        targets = ff.targets(samples.test_labels)
        log_run_plan(config, subject, ff, layers, len(train_rows),
                     len(train_rows) + targets.n_rows, samples.X_train.shape[1])
        rows, complete = [], True
        # 5. decoding, ROI by ROI, layer by layer (resumable: finished work files are reused)
        for name, mask in inputs.masks.items():
            roi = prepare_roi(name, mask, samples, inputs.files[name])
            shard_files = decode_roi(config, subject, ff, roi, layers, train_rows, targets)
            if not all(work_file_complete(f) for fs in shard_files.values() for f in fs):
                complete = False
                LOGGER.info("sub-%s %s: shard %d/%d done; outputs are written by the job that "
                            "finishes the last shard", subject, roi.name, *config.unit_shard)
                continue
            # 6. evaluation + derivatives
            with lock(config.output_dir, f"sub-{subject}"):
                roi_rows = assemble_roi(config, subject, ff, roi, layers, shard_files,
                                        samples.test_labels, samples.X_train.shape[0])
                write_roi_sidecar(config, subject, roi, ff, samples, tr)
                outputs.write_subject_summary(config.output_dir, subject, config.task, roi_rows,
                                              network=config.network)
            rows.extend(roi_rows)
    write_run_config(config, subject, samples.info)
    if complete:
        if inputs.qc is not None:
            write_qc(config, subject, inputs, collector.messages)
        # 7. the subject's visual report (from the outputs only)
        html = write_subject_report(Path(config.output_dir), subject, config.task,
                                    network=config.network)
        LOGGER.info("sub-%s: report %s", subject, html)
    LOGGER.info("sub-%s: done in %.1f s", subject, time.time() - t0)
    return {"subject": subject, "rows": rows, "info": samples.info, "complete": complete}


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


def write_run_config(config: RunConfig, subject: str, info: dict) -> Path:
    path = outputs.config_json(config.output_dir, subject, config.task, network=config.network)
    d = config.replace(participant_label=(subject,)).to_dict()
    d["provenance"] = provenance() | {"samples": info, "resources": resources.record(config),
                                      "validation": config.extra.get("validation")}
    write_json(path, d)
    return path
