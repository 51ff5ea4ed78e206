"""One subject, as numbered steps (:func:`run_participant`, :func:`_run`):

1-3. inputs: the BOLD source's runs, ROI masks and samples (:mod:`bids_decode.inputs.sources`);
4. features: the features file (:func:`_features_path`) and the run's memory plan
   (:func:`log_run_plan`);
5. decoding, per ROI (:func:`prepare_roi`) and layer: this job's unit shard into a work file
   (:mod:`.decode`: :func:`decode_roi`, :func:`decode_layer`; finished work files are reused);
   with ``--encoding`` also the encoding models of this job's voxel shard (:mod:`.encode`);
6. evaluation and outputs, once every shard is finished: the work files merged into the ROI's
   output (:func:`assemble_roi`), its sidecar, the summary table, the run configuration;
7. the QC file and the subject's report (from the outputs only).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from filelock import FileLock

from bids_decode import decoding, resources
from bids_decode.config import RunConfig
from bids_decode.errors import MissingInputError
from bids_decode.features import FeatureFile
from bids_decode.features.h5file import network_attribute
from bids_decode.features.stimuli import discover_images
from bids_decode.features.units import UnitSample
from bids_decode.inputs.samples import SubjectInputs
from bids_decode.inputs.sources import BoldSource
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.provenance import provenance
from bids_decode.outputs.qc import write_qc
from bids_decode.outputs.work_files import work_file_complete
from bids_decode.participant.decode import (
    _chunks,
    assemble_roi,
    chunk_units,
    decode_roi,
    layer_metrics,
    write_roi_sidecar,
)
from bids_decode.participant.encode import encode_roi, write_encoding
from bids_decode.participant.rois import RoiData, prepare_roi, zscore_train
from bids_decode.reports import write_subject_report
from bids_decode.utils.files import ensure_dir, lock, safe_name, write_json
from bids_decode.utils.grid import shard_range
from bids_decode.utils.logs import WarningCollector

LOGGER = logging.getLogger(__name__)

#: The public names, those of the submodules included (tests and tools import them here).
__all__ = ["RoiData", "_chunks", "assemble_roi", "decode_roi", "feature_files", "layer_metrics",
           "prepare_roi", "run_participant", "write_roi_sidecar", "write_run_config",
           "zscore_train"]


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
        chunk_units=chunk_units(config, n_rows, len(ff.names)),
        nprocs=config.nprocs or resources.affinity_cpus(), mem_gb=config.mem_gb,
        itemsize=np.dtype(config.dtype).itemsize)
    resources.log_memory_plan(f"sub-{subject}", plan,
                              config.extra.get("resources", {}).get("allocated_gb"))
    return plan


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
            # --encoding: the other direction, from every unit of each layer (the file, not
            # the --units-per-layer sample, as the lab's encoding models)
            enc_files = (encode_roi(config, subject, file, roi, layers, train_rows, targets)
                         if config.encoding else {})
            if not all(work_file_complete(f) for fs in [*shard_files.values(),
                                                        *enc_files.values()] for f in fs):
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
                if config.encoding:
                    write_encoding(config, subject, file, roi, layers, enc_files, samples,
                                   (mask.shape, inputs.affine))
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


def write_run_config(config: RunConfig, subject: str, info: dict) -> Path:
    path = outputs.config_json(config.output_dir, subject, config.task, network=config.network)
    d = config.replace(participant_label=(subject,)).to_dict()
    d["provenance"] = provenance() | {"samples": info, "resources": resources.record(config),
                                      "validation": config.extra.get("validation")}
    write_json(path, d)
    return path
