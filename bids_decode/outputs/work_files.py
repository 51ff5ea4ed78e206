"""Work files: one per unit shard of a layer decoded from an ROI, merged into the outputs.

The participant level decodes each layer's units of this job's shard (``--unit-shard i/N``)
into a work file (:func:`work_file_path` names it; ``decoded`` and the metrics' partial state,
attributes ``lo``, ``hi`` and ``complete``), reuses finished ones on a rerun, and merges a
layer's shards into the ROI's output once all of them are finished (:func:`read_layer`).

A subject decoded in unit shards (one SLURM array task each) gets its outputs only when the
task that finishes its last shard assembles them. Until then the subject has a run
configuration (each finished shard task writes it) and shard work files, but no
``_decoding.h5``: the group level must not run without it, and it says which shards to redo
(:func:`check_shards_complete`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np

from bids_decode.config import RunConfig
from bids_decode.errors import MissingInputError
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.encoding import encoding_h5
from bids_decode.utils.files import safe_name

LOGGER = logging.getLogger(__name__)

#: Version of the work files' layout (pattern sums as exact integer limbs since 2).
WORK_FORMAT = 2

#: Work file names written by :func:`work_file_path`.
WORK_FILE_RE = re.compile(
    r"^(?P<kind>encoding_)?roi-(?P<roi>.+?)_layer-(?P<layer>[A-Za-z0-9]+)_shard-(?P<i>\d+)of(?P<n>\d+)_"
    r"(?P<digest>[0-9a-f]+)\.h5$")


def work_folder(work_path: Path, subject: str, task: str, network: str) -> Path:
    """``WORK_DIR/sub-<L>/task-<T>/net-<N>``: one network's work files of a subject."""
    return (Path(work_path) / f"sub-{subject}" / f"task-{task}"
            / f"net-{outputs.network_label(network)}")


def work_file_path(config: RunConfig, subject: str, roi, layer: str, shard: tuple[int, int],
                   features: Path, *, encoding: bool = False) -> Path:
    """The work file of shard ``shard`` of a layer decoded from an ROI.

    Its name carries a digest of what its content depends on: the work-file format, the keyed
    decoding parameters (:meth:`RunConfig.decoding_fingerprint`), the ROI's voxels, the layer
    and the features file (path, size, time stamp); a rerun reuses only a file it would write
    again.

    Parameters
    ----------
    config : RunConfig
    subject : str
    roi : participant.RoiData
        The ROI (its ``name`` and its voxels' ``digest``).
    layer : str
    shard : tuple of int
        ``(i, n)``: shard ``i`` of ``n`` (1-based).
    features : Path
        The features file.
    encoding : bool
        The work file of the encoding models (``--encoding``: shard ``i`` of ``n`` is the
        i-th of n voxel ranges of the ROI), keyed by :meth:`RunConfig.encoding_fingerprint`
        and named ``encoding_roi-...``.

    Returns
    -------
    Path
        ``WORK/sub-<L>/task-<T>/net-<N>/roi-<R>_layer-<layer>_shard-<i>of<n>_<digest>.h5``
        (:data:`WORK_FILE_RE`).
    """
    params = config.encoding_fingerprint() if encoding else config.decoding_fingerprint()
    key = json.dumps({
        "format": WORK_FORMAT, "params": params, "roi": roi.digest, "encoding": encoding,
        "layer": layer,
        "features": [str(features.resolve()), features.stat().st_size, features.stat().st_mtime_ns],
    }, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    name = (("encoding_" if encoding else "")
            + f"roi-{roi.name}_layer-{safe_name(layer)}_shard-{shard[0]}of{shard[1]}_{digest}.h5")
    return work_folder(config.work_path, subject, config.task, config.network) / name


def shard_work_files(config: RunConfig, subject: str, roi, layer: str,
                     features: Path, *, encoding: bool = False) -> list[Path]:
    """The work files of every shard of a layer (:func:`work_file_path`), this job's and the
    others' (which may not exist yet), in shard order."""
    n = config.unit_shard[1]
    return [work_file_path(config, subject, roi, layer, (i, n), features, encoding=encoding)
            for i in range(1, n + 1)]


def read_layer(work_files: list[Path], metrics: list, decoded: h5py.Dataset) -> None:
    """Merge one layer's finished work files: the metrics' partial state, then the decoded
    features image by image (memory: about one row of the layer).

    Parameters
    ----------
    work_files : list of Path
        Every shard's work file (:func:`shard_work_files`).
    metrics : list of evaluation.Metric
        Metrics of all the layer's units; each loads its units' state from every work file.
    decoded : h5py.Dataset of shape (n_test, *unit_shape)
        The output's decoded features, written here.
    """
    shape = decoded.shape[1:]
    n_units = int(np.prod(shape))
    handles = [h5py.File(wf, "r") for wf in work_files]
    try:
        spans = [(int(w.attrs["lo"]), int(w.attrs["hi"])) for w in handles]
        for w, (lo, hi) in zip(handles, spans):
            for m in metrics:
                m.load(w, lo, hi)
        flat = np.empty(n_units, dtype=np.float32)
        for i in range(decoded.shape[0]):  # one image at a time: memory ~ one layer row
            for w, (lo, hi) in zip(handles, spans):
                flat[lo:hi] = w["decoded"][i, :]
            decoded[i] = flat.reshape(shape)
    finally:
        for w in handles:
            w.close()


def work_file_complete(path: Path) -> bool:
    """Whether a work file exists and was finished (its ``complete`` attribute)."""
    if not Path(path).is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except OSError:
        return False


def missing_shards(output_dir, task: str, labels=()) -> dict[str, dict[str, list[str]]]:
    """Shards without a finished work file, for subjects whose outputs are not assembled.

    Parameters
    ----------
    output_dir : path-like
        The participant level's OUTPUT_DIR.
    task : str
    labels : sequence of str
        Subjects to look at (with or without ``sub-``); all when empty.

    Returns
    -------
    dict
        ``{subject: {roi: ["2/3 (conv1, fc6)", ...]}}``; empty when nothing is missing. A set
        of shard work files counts only when its ROI has no output, or an output older than
        the newest of those work files (an abandoned older run does not block the group).
    """
    output_dir = Path(output_dir)
    wanted = {str(x).removeprefix("sub-") for x in labels}
    out: dict[str, dict[str, list[str]]] = {}
    for cfg_path in sorted(output_dir.glob(f"sub-*/sub-*_task-{task}_net-*_config.json")):
        sub = cfg_path.parent.name.removeprefix("sub-")
        if wanted and sub not in wanted:
            continue
        try:
            cfg = json.loads(cfg_path.read_text())
            n = int(cfg.get("unit_shard", [1, 1])[1])
            network = str(cfg["network"])
        except (OSError, ValueError, TypeError, IndexError, KeyError, json.JSONDecodeError):
            continue
        if n <= 1:
            continue
        work = Path(cfg.get("work_dir") or output_dir / ".bids_decode_work")
        sets: dict[tuple[str, str], dict[str, list[Path]]] = {}
        for path in work_folder(work, sub, task, network).glob(f"*roi-*_shard-*of{n}_*.h5"):
            m = WORK_FILE_RE.match(path.name)
            if m:
                key = (m["roi"], bool(m["kind"]), m["digest"])
                sets.setdefault(key, {}).setdefault(m["layer"], []).append(path)
        for (roi, encoding, _), layers in sorted(sets.items()):
            files = [p for ps in layers.values() for p in ps]
            output = (encoding_h5 if encoding else outputs.decoding_h5)(
                output_dir, sub, task, roi, network=network)
            newest = max(p.stat().st_mtime for p in files)
            if output.is_file() and output.stat().st_mtime >= newest:
                continue
            by_shard: dict[int, list[str]] = {}
            for layer, paths in layers.items():
                done = {int(WORK_FILE_RE.match(p.name)["i"]) for p in paths
                        if work_file_complete(p)}
                for i in sorted(set(range(1, n + 1)) - done):
                    by_shard.setdefault(i, []).append(layer)
            for i, lay in sorted(by_shard.items()):
                out.setdefault(sub, {}).setdefault(roi, []).append(
                    f"{i}/{n} ({'encoding: ' if encoding else ''}{', '.join(sorted(lay))})")
    return out


def check_shards_complete(output_dir, task: str, labels=()) -> None:
    """Refuse to start the group level while a subject's unit shards are missing.

    Raises
    ------
    MissingInputError
        Naming each subject, ROI and shard (with its layers) that has no finished work file.
    """
    missing = missing_shards(output_dir, task, labels)
    if not missing:
        return
    parts = []
    for sub, rois in missing.items():
        for roi, shards in rois.items():
            parts.append(f"sub-{sub} ROI {roi}: shard(s) {'; '.join(shards)}")
    subs = " ".join(missing)
    raise MissingInputError(
        f"The participant level in {output_dir} is not finished: unit shards without a finished "
        f"work file: {'; '.join(parts)}. Rerun those shards with the same options (e.g. "
        f"'bids_decode BIDS_DIR OUTPUT_DIR participant --participant-label {subs} "
        "--unit-shard i/N ...', or resubmit their SLURM array tasks with sbatch --array=...); "
        "the last one assembles the subject's outputs. Then run the group level again."
    )
