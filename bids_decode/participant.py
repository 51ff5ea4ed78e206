"""One subject: layout -> samples -> features -> decoding -> evaluation -> derivatives."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import decoding, derivatives, evaluation, resources, statistics
from .bold_sources import align_runs, resolve_bold_source
from .config import RunConfig
from .errors import DataError, MissingInputError, UsageError
from .featurefile import FeatureFile
from .grid import UNIT_BLOCK, shard_range
from .layout import BoldSource, check_trs, find_runs, make_layout
from .progress import progress_bar
from .rois import RoiSpec, load_roi, mask_files, read_atlas_labels
from .samples import EventSpec, build_samples, load_run_timeseries, read_blocks

LOGGER = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "roi", "layer", "n_units", "n_voxels", "n_voxels_selected", "n_constant_units",
    "profile_r_mean", "profile_r_median", "pattern_r_mean", "identification_accuracy",
    "n_train_samples", "n_test_images", "n_decodable", "fraction_decodable",
    "reliability_mean", "accuracy_ceiling_mean",
]


#: Version of the work files' layout (pattern sums as exact integer limbs since 2).
WORK_FORMAT = 2


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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", name) or "x"


def zscore_train(X_train, X_test):
    """z-score columns with the training mean and std (constant columns -> 0)."""
    mu = X_train.mean(axis=0, dtype=np.float64)
    sd = X_train.std(axis=0, ddof=1, dtype=np.float64)
    sd[sd < 1e-8] = np.inf
    return ((X_train - mu) / sd).astype(np.float32), ((X_test - mu) / sd).astype(np.float32)


def _features_path(config: RunConfig) -> Path:
    """The features file: --features, or extracted once from every stimulus image.

    Extraction covers every image of the stimulus folder, so all subjects (and parallel
    jobs, serialised by a lock) share one file in the work folder.
    """
    if config.features:
        return Path(config.features)
    from filelock import FileLock

    from . import features as feat

    stimuli = Path(config.stimuli_dir or Path(config.bids_dir) / "stimuli")
    if not stimuli.is_dir():
        raise MissingInputError(
            f"No --features file was given and the stimulus folder {stimuli} does not exist. "
            "Give precomputed features with --features FILE, or the images with --stimuli-dir."
        )
    paths, names = feat.discover_images(stimuli)
    folder = derivatives.ensure_dir(config.work_path / "features")
    out = folder / f"{_safe(config.network)}_{_safe(str(config.weights or 'cache'))}.h5"
    with FileLock(str(out) + ".lock", timeout=-1):
        return feat.extract_features(
            paths, names, out, network=config.network, layers=list(config.layers) or None,
            weights=config.weights, device=config.device, preprocessing=config.preprocessing,
        )


def _chunk_units(config: RunConfig, n_rows: int, n_images: int) -> int:
    """Units per chunk read from the features file: a quarter of ``--mem``, on the unit grid."""
    per_unit = 8 * (n_images + 4 * n_rows)
    units = int(max(UNIT_BLOCK, min(1 << 20, config.mem_gb * 2**30 * 0.25 / per_unit)))
    return units // UNIT_BLOCK * UNIT_BLOCK


def _chunks(ff: FeatureFile, layer: str, train_rows, targets, chunk: int, unit_range):
    """Yield (start, stop, Y_train, Y_test) unit chunks; test targets averaged per label."""
    group, test_groups = targets
    n_train = len(train_rows)
    sizes = np.array([len(g) for g in test_groups])
    if group == "layers":
        rows = np.concatenate([train_rows, *test_groups])
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        for s, e, Y in ff.iter_unit_chunks(layer, rows, chunk, unit_range):
            # per unit, a contiguous sum over each label's rows (the same bits in any chunk)
            Yt = np.ascontiguousarray(Y[n_train:].T)
            Yte = np.add.reduceat(Yt, starts, axis=1).T
            yield s, e, Y[:n_train], Yte / sizes[:, None]
        return
    cat_rows = np.concatenate(test_groups)
    for (s, e, Ytr), (_, _, Yte) in zip(
            ff.iter_unit_chunks(layer, train_rows, chunk, unit_range),
            ff.iter_unit_chunks(layer, cat_rows, chunk, unit_range, group=group)):
        yield s, e, Ytr, Yte


def decode_layer(config: RunConfig, ff: FeatureFile, layer: str, roi: RoiData,
                 design, train_rows, targets, work_file: Path) -> None:
    """Decode one shard of one layer from one ROI into a work file (atomically)."""
    n_units = ff.n_units(layer)
    lo, hi = shard_range(n_units, config.unit_shard)
    n_test = len(targets[1])
    rows_per_sample = len(train_rows) + sum(len(g) for g in targets[1])
    acc = np.full(hi - lo, np.nan, dtype=np.float32)
    pattern = evaluation.PatternAccumulator(n_test)
    n_const = 0
    chunk = _chunk_units(config, rows_per_sample, len(ff.names))
    X_pred = roi.X_test if roi.X_test_halves is None else np.vstack([roi.X_test,
                                                                       roi.X_test_halves])
    stats = statistics.ShardStatistics(
        hi - lo, n_test, n_permutations=config.n_permutations, seed=config.permutation_seed,
        halves=roi.X_test_halves is not None, device=config.device, n_jobs=config.nprocs or None,
        mem_bytes=int(min(256 * 2**20, config.mem_gb * 2**30 * 0.1)))
    derivatives.check_free_space(work_file.parent, (n_test + 2) * (hi - lo) * 4,
                                 f"the work file {work_file.name}")
    n_chunks = max(1, -(-(hi - lo) // chunk))
    with derivatives.atomic_path(work_file) as tmp, h5py.File(tmp, "w") as w:
        # one image row per HDF5 chunk, as wide as a unit chunk: each write below covers
        # whole chunks, and assemble_roi's image-by-image read touches each chunk once
        # (chunks of all images re-read every chunk once per image: 10x slower at 300k units)
        dec = w.create_dataset("decoded", (n_test, hi - lo), dtype="f4",
                               chunks=(1, min(hi - lo, chunk)) if hi > lo else None)
        bar = progress_bar(total=n_chunks, desc=f"{roi.name}/{layer}", unit="chunk")
        for s, e, Ytr, Yte in _chunks(ff, layer, train_rows, targets, chunk, (lo, hi)):
            if not (np.isfinite(Ytr).all() and np.isfinite(Yte).all()):
                raise DataError(
                    f"Layer '{layer}' of the features file {ff.path} has NaN or infinite values "
                    f"(units {s}..{e - 1} of the stimuli used). Recompute the features, or "
                    "leave the layer out with --layers."
                )
            mu, sd, const = evaluation.unit_stats(Ytr)
            Ztr = (Ytr - mu) / sd
            Zte = (Yte - mu) / sd
            Ztr[:, const] = 0.0
            # the half averages' rows ride under X_test: the same decoders predict them
            P_all = decoding.predict_chunk(
                design, Ztr, X_pred, config.n_voxels, n_jobs=config.nprocs or None,
                mem_bytes=int(config.mem_gb * 2**30 * 0.5)).astype(np.float64)
            P_all[:, const] = 0.0
            P = P_all[:n_test]
            stats.update(s - lo, e - lo, P, Zte,
                         P_all[n_test:].reshape(2, n_test, e - s) if len(P_all) > n_test
                         else None)
            acc[s - lo:e - lo] = evaluation.profile_correlation(P, Zte)
            dec[:, s - lo:e - lo] = (P * sd + mu).astype(np.float32)
            pattern.update(P, Zte)
            n_const += int(const.sum())
            bar.update(1)
        bar.close()
        w.create_dataset("accuracy", data=acc)
        stats.write(w)
        g = w.create_group("pattern")
        for k, v in pattern.state().items():
            g.create_dataset(k, data=v)
        w.attrs.update({"lo": lo, "hi": hi, "n_constant_units": n_const, "complete": True})


def _work_file(config: RunConfig, subject: str, roi: RoiData, layer: str, shard, ff) -> Path:
    key = json.dumps({
        "format": WORK_FORMAT, "params": config.decoding_fingerprint(), "roi": roi.digest,
        "layer": layer,
        "features": [str(ff.path.resolve()), ff.path.stat().st_size, ff.path.stat().st_mtime_ns],
    }, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    name = f"roi-{roi.name}_layer-{_safe(layer)}_shard-{shard[0]}of{shard[1]}_{digest}.h5"
    return config.work_path / f"sub-{subject}" / f"task-{config.task}" / name


def _complete(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except OSError:
        return False


def assemble_roi(config: RunConfig, subject: str, ff: FeatureFile, roi: RoiData,
                 layers: list[str], shard_files: dict, test_labels: list[str],
                 n_train: int) -> list[dict]:
    """Merge the work files of one ROI into its output HDF5; return summary rows."""
    out = derivatives.func_path(config.output_dir, subject, config.task, desc=roi.name,
                                suffix="decoding", ext=".h5")
    n_test = len(test_labels)
    rows = []
    size = sum((n_test + 11) * ff.n_units(layer) * 4 for layer in layers)
    derivatives.check_free_space(out.parent, size, out.name)
    with derivatives.atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("stimulus_name", data=np.array(test_labels, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.attrs.update({
            "roi": roi.name, "subject": subject, "task": config.task,
            "n_voxels_roi": roi.n_voxels, "n_voxels_selected": n_selected(config, roi.n_voxels),
            "alpha": config.alpha, "features_file": str(ff.path),
        })
        for layer in layers:
            shape = ff.unit_shape(layer)
            n_units = int(np.prod(shape))
            acc = np.empty(n_units, dtype=np.float32)
            pattern = evaluation.PatternAccumulator(n_test)
            n_const = 0
            stats = statistics.LayerStatistics(n_units, config.n_permutations,
                                               config.permutation_seed)
            handles = [h5py.File(wf, "r") for wf in shard_files[layer]]
            try:
                for w in handles:
                    lo, hi = int(w.attrs["lo"]), int(w.attrs["hi"])
                    acc[lo:hi] = w["accuracy"][()]
                    pattern.merge(evaluation.PatternAccumulator.from_state(
                        {k: w["pattern"][k][()] for k in evaluation.PatternAccumulator.FIELDS}))
                    n_const += int(w.attrs["n_constant_units"])
                    stats.read(w, lo, hi)
                g = h5.create_group(layer)
                dec = g.create_dataset("decoded", (n_test, *shape), dtype="f4", chunks=True)
                flat = np.empty(n_units, dtype=np.float32)
                for i in range(n_test):  # one image at a time: memory ~ one layer row
                    for w in handles:
                        flat[int(w.attrs["lo"]):int(w.attrs["hi"])] = w["decoded"][i, :]
                    dec[i] = flat.reshape(shape)
            finally:
                for w in handles:
                    w.close()
            corr = pattern.correlation_matrix()
            pattern_r = evaluation.pattern_correlation(corr)
            ident = evaluation.pairwise_identification(corr)
            g.create_dataset("accuracy", data=acc.reshape(shape))
            g.create_dataset("rank", data=evaluation.rank_units(acc).reshape(shape))
            g.create_dataset("pattern_r", data=pattern_r)
            g.create_dataset("identification", data=ident)
            unit_stats, stats_row = stats.results(acc)
            for name, arr in unit_stats.items():
                g.create_dataset(name, data=arr.reshape(*arr.shape[:-1], *shape))
            g.attrs.update(stats.attrs)
            row = {
                "roi": roi.name, "layer": layer, "n_units": n_units, "n_voxels": roi.n_voxels,
                "n_voxels_selected": n_selected(config, roi.n_voxels),
                "n_constant_units": n_const,
                "profile_r_mean": _nanstat(np.nanmean, acc),
                "profile_r_median": _nanstat(np.nanmedian, acc),
                "pattern_r_mean": _nanstat(np.nanmean, pattern_r),
                "identification_accuracy": _nanstat(np.nanmean, ident),
                "n_train_samples": n_train, "n_test_images": n_test, **stats_row,
            }
            g.attrs.update({k: row[k] for k in (
                "n_units", "n_constant_units", "profile_r_mean", "pattern_r_mean",
                "identification_accuracy")})
            rows.append(row)
    return rows


def _nanstat(fn, a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(fn(a)) if np.isfinite(a).any() else float("nan")


def n_selected(config: RunConfig, n_voxels_roi: int) -> int:
    """Voxels each unit's decoder uses in an ROI of ``n_voxels_roi`` voxels."""
    if config.n_voxels == 0 or config.n_voxels >= n_voxels_roi:
        return n_voxels_roi
    return config.n_voxels


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


def write_summary(config: RunConfig, subject: str, rows: list[dict]) -> Path:
    """Merge rows into ``sub-<L>_task-<T>_decoding.tsv`` (replacing the same roi/layer)."""
    path = derivatives.func_path(config.output_dir, subject, config.task, suffix="decoding",
                                 ext=".tsv")
    new = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if path.is_file():
        old = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
        keys = set(zip(new["roi"], new["layer"]))
        old = old[[(r, lay) not in keys for r, lay in zip(old["roi"], old["layer"])]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    derivatives.write_tsv(path, new[SUMMARY_COLUMNS])
    derivatives.write_json(path.with_suffix(".json"), SUMMARY_SIDECAR)
    return path


SUMMARY_SIDECAR = {
    **derivatives.COMMON_COLUMNS,
    "n_units": {"Description": "Units in the layer"},
    "n_voxels": {"Description": "Voxels in the ROI"},
    "n_voxels_selected": {"Description": "Voxels used by each unit's decoder"},
    "n_constant_units": {"Description": "Units constant over the training images (NaN accuracy)"},
    "profile_r_mean": {"Description": "Mean over units of the Pearson r between decoded and "
                                      "true values over test images (NaN units ignored)"},
    "profile_r_median": {"Description": "Median of the same"},
    "pattern_r_mean": {"Description": "Mean over test images of the Pearson r between decoded "
                                      "and true patterns (z-scored with training statistics)"},
    "identification_accuracy": {"Description": "Mean pairwise identification accuracy "
                                               "(chance 0.5)"},
    "n_train_samples": {"Description": "Training samples (blocks)"},
    "n_test_images": {"Description": "Test images (blocks averaged per image)"},
    "n_decodable": {"Description": "Units whose Benjamini-Hochberg q-value (over the layer's "
                                   "units, from one-sided permutation p-values) is below 0.05"},
    "fraction_decodable": {"Description": "n_decodable / n_units (NaN units count as not "
                                          "decodable)"},
    "reliability_mean": {"Description": "Mean over units of the split-half reliability of the "
                                        "decoded values (odd vs even presentations, "
                                        "Spearman-Brown corrected)"},
    "accuracy_ceiling_mean": {"Description": "Mean over units of sqrt(reliability), the highest "
                                             "accuracy the measurement noise allows"},
}


class WarningCollector(logging.Handler):
    """Keeps the warnings logged during a run, for the report."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def write_qc(config: RunConfig, subject: str, run, union, masks, ref_shape, samples,
             warnings: list[str]) -> Path:
    """Small QC file for the report: ROI time courses of one run, sample counts, warnings."""
    path = derivatives.func_path(config.output_dir, subject, config.task, suffix="qc",
                                 ext=".h5")
    str_dt = h5py.string_dtype("utf-8")
    with derivatives.atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        if run is not None:  # None: samples without runs (BData), no time course
            _write_qc_run(config, h5, run, union, masks, ref_shape)
        names, counts = np.unique(np.array(samples.train_labels, dtype=object).astype(str),
                                  return_counts=True)
        h5.create_dataset("train_counts/name", data=names.astype(object), dtype=str_dt)
        h5.create_dataset("train_counts/count", data=counts)
        h5.create_dataset("test_counts/name", data=np.array(samples.test_labels, dtype=object),
                          dtype=str_dt)
        h5.create_dataset("test_counts/count", data=samples.test_counts)
        h5.create_dataset("warnings", data=np.array(warnings, dtype=object), dtype=str_dt)
    return path


def _write_qc_run(config: RunConfig, h5, run, union, masks, ref_shape) -> None:
    ts = load_run_timeseries(run, union, ref_shape)
    union_flat = np.flatnonzero(union.ravel())
    blocks = read_blocks(run.events, EventSpec.for_task(
        config.train_task, config.stimulus_column, config.sample_events_for("train")))
    h5.attrs.update({"tr": run.tr, "run": run.label, "volume_offset": run.volume_offset})
    for name, m in masks.items():
        cols = np.isin(union_flat, np.flatnonzero(m.ravel()))
        h5.create_dataset(f"timecourse/{name}", data=ts[:, cols].mean(axis=1))
    h5.create_dataset("blocks/onset", data=blocks.onsets)
    h5.create_dataset("blocks/duration", data=blocks.durations)
    h5.create_dataset("blocks/label", data=np.array(blocks.labels, dtype=object),
                      dtype=h5py.string_dtype("utf-8"))


def run_participant(config: RunConfig, subject: str) -> dict:
    """Decode every requested layer from every requested ROI of one subject (see _run)."""
    config = config.replace(bold_source=resolve_bold_source(  # 'auto' -> what was used
        config.bold_source, Path(config.bids_dir), config.derivative_paths))
    collector = WarningCollector()
    logging.getLogger("bids_decode").addHandler(collector)
    try:
        return _run(config, subject, collector)
    finally:
        logging.getLogger("bids_decode").removeHandler(collector)


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
    qc : callable or None
        ``qc(warnings)`` writes the sample-quality file of the report.
    """

    samples: object
    masks: dict
    files: dict
    tr: float | None
    qc: object = None


def _run(config: RunConfig, subject: str, collector: WarningCollector) -> dict:
    """Decode every requested layer from every requested ROI of one subject.

    Returns
    -------
    dict
        ``{"subject", "rows", "info", "complete"}``; ``complete`` is False when other unit
        shards are still missing.
    """
    t0 = time.time()
    bids_dir = Path(config.bids_dir)
    source = BoldSource.parse(config.bold_source, bids_dir, config.derivative_paths,
                              config.space)
    # 1-3. layout, ROIs and samples: from the BIDS runs, or from a BData file's samples
    if source.kind == "bdata":
        from .bdata import subject_inputs

        inputs = subject_inputs(config, subject, source.root)
    else:
        inputs = _bids_inputs(config, subject, source)
    samples, tr = inputs.samples, inputs.tr
    LOGGER.info("sub-%s: %d training samples, %d test images (%d blocks), %d repeat blocks "
                "left out", subject, samples.X_train.shape[0], len(samples.test_labels),
                samples.info["n_test_blocks"], samples.info["n_repeats_dropped"])
    # 4. features
    ff = FeatureFile(_features_path(config))
    with ff:
        layers = ff.check_layers(config.layers)
        train_rows = ff.rows_for(samples.train_labels, what="training stimuli")
        targets = ff.test_targets(samples.test_labels)
        resources.log_run_plan(config, subject, ff, layers, len(train_rows),
                               len(train_rows) + sum(len(g) for g in targets[1]),
                               samples.X_train.shape[1])
        rows, complete = [], True
        # 5. decoding, ROI by ROI, layer by layer (resumable: finished work files are reused)
        for name, mask in inputs.masks.items():
            roi = prepare_roi(name, mask, samples, inputs.files[name])
            design = decoding.prepare_design(roi.X_train, config.alpha,
                                             dtype=np.dtype(config.dtype), device=config.device)
            shard_files = {}
            for layer in layers:
                wf = _work_file(config, subject, roi, layer, config.unit_shard, ff)
                if _complete(wf):
                    LOGGER.info("sub-%s %s/%s: reusing %s", subject, roi.name, layer, wf.name)
                else:
                    t1 = time.time()
                    decode_layer(config, ff, layer, roi, design, train_rows, targets, wf)
                    LOGGER.info("sub-%s %s/%s: %d units decoded in %.1f s", subject, roi.name,
                                layer, ff.n_units(layer), time.time() - t1)
                n = config.unit_shard[1]
                files = [_work_file(config, subject, roi, layer, (i, n), ff)
                         for i in range(1, n + 1)]
                shard_files[layer] = files
            if not all(_complete(f) for fs in shard_files.values() for f in fs):
                complete = False
                LOGGER.info("sub-%s %s: shard %d/%d done; outputs are written by the job that "
                            "finishes the last shard", subject, roi.name, *config.unit_shard)
                continue
            # 6. evaluation + derivatives
            with derivatives.lock(config.output_dir, f"sub-{subject}"):
                roi_rows = assemble_roi(config, subject, ff, roi, layers, shard_files,
                                        samples.test_labels, samples.X_train.shape[0])
                write_roi_sidecar(config, subject, roi, ff, samples, tr)
                write_summary(config, subject, roi_rows)
            rows.extend(roi_rows)
    write_run_config(config, subject, samples.info)
    if complete:
        if inputs.qc is not None:
            inputs.qc(collector.messages)
        # 7. the subject's visual report (from the outputs only)
        from .report import write_subject_report

        html = write_subject_report(Path(config.output_dir), subject, config.task)
        LOGGER.info("sub-%s: report %s", subject, html)
    LOGGER.info("sub-%s: done in %.1f s", subject, time.time() - t0)
    return {"subject": subject, "rows": rows, "info": samples.info, "complete": complete}


def _bids_inputs(config: RunConfig, subject: str, source: BoldSource) -> SubjectInputs:
    """Steps 1-3 on a BIDS dataset: runs and events, ROI masks, samples."""
    bids_dir = Path(config.bids_dir)
    LOGGER.info("sub-%s: indexing %s", subject, bids_dir)
    # 1. layout
    layout = make_layout(bids_dir, [subject])
    train_runs = find_runs(layout, subject, config.train_task, config.train_session,
                           what="training", source=source)
    test_runs = find_runs(layout, subject, config.task, config.test_session_glob, what="test",
                          source=source)
    shared = sorted({r.bold.name for r in train_runs} & {r.bold.name for r in test_runs})
    if shared:
        raise UsageError(
            f"{len(shared)} run(s) of sub-{subject} would both train and test the decoders "
            f"(e.g. {shared[0]}): --train-session '{config.train_session}' and --test-session "
            f"'{config.test_session_glob}' overlap. Choose disjoint session patterns."
        )
    tr = check_trs(train_runs + test_runs)
    LOGGER.info("sub-%s: %d training and %d test runs (TR %.3g s)", subject, len(train_runs),
                len(test_runs), tr)
    # 2. ROIs, on the reference grid (runs not in the masks' space are refused here)
    labels = read_atlas_labels(config.atlas_labels) if config.atlas_labels else None
    specs = [RoiSpec.parse(r, labels) for r in config.roi]
    roots = [*config.derivative_paths.values(), *([source.root] if source.root else [])]
    ref, runs = align_runs(source.kind, train_runs + test_runs,
                           mask_files(bids_dir, subject, specs[0], roots, config.atlas)[0],
                           subject, assume_aligned=config.assume_aligned)
    train_runs, test_runs = runs[:len(train_runs)], runs[len(train_runs):]
    masks = {s.name: load_roi(bids_dir, subject, s, ref, roots, config.atlas) for s in specs}
    union = np.logical_or.reduce(list(masks.values()))
    # 3. samples
    same_task = config.task == config.train_task
    samples = build_samples(
        train_runs, test_runs, union, ref.shape, shift=config.hrf_shift,
        train_events=EventSpec.for_task(config.train_task, config.stimulus_column,
                                        config.sample_events_for("train")),
        test_events=EventSpec.for_task(config.task,
                                       config.stimulus_column if same_task else None,
                                       config.sample_events_for("test")),
        confounds=config.confounds, train_average=config.train_average,
        progress=lambda it: progress_bar(it, desc=f"sub-{subject} runs", unit="run"),
    )
    files = {s.name: mask_files(bids_dir, subject, s, roots, config.atlas) for s in specs}

    def qc(warnings):
        return write_qc(config, subject, train_runs[0], union, masks, ref.shape, samples,
                        warnings)

    return SubjectInputs(samples, masks, files, tr, qc)


def write_roi_sidecar(config: RunConfig, subject, roi: RoiData, ff: FeatureFile, samples,
                      tr: float) -> None:
    path = derivatives.func_path(config.output_dir, subject, config.task, desc=roi.name,
                                 suffix="decoding", ext=".json")
    derivatives.write_json(path, {
        "Description": "Per-unit decoding accuracy, ranks and decoded features "
                       "(voxel-selecting ridge regression).",
        "ROI": roi.name,
        "MaskFiles": roi.files,
        "NumberOfVoxels": roi.n_voxels,
        "VoxelsSelectedPerUnit": n_selected(config, roi.n_voxels),
        "RepetitionTime": tr,
        "FeaturesFile": str(ff.path),
        "FeaturesAttributes": {k: str(v) for k, v in ff.attrs.items()},
        "Layers": list(ff.check_layers(config.layers)),
        "Samples": samples.info,
        **config.sidecar_params(),  # Alpha, HaemodynamicShift, ...: declared in config.py
    })


def write_run_config(config: RunConfig, subject: str, info: dict) -> Path:
    path = derivatives.subject_dir(config.output_dir, subject) / (
        f"sub-{subject}_task-{config.task}_config.json")
    d = config.replace(participant_label=(subject,)).to_dict()
    d["provenance"] = derivatives.provenance() | {"samples": info,
                                                  "resources": resources.record(config)}
    derivatives.write_json(path, d)
    return path
