"""Unit shards still missing: read by the group level before it starts.

A subject decoded in unit shards (``--unit-shard i/N``, one SLURM array task each) gets its
outputs only when the task that finishes its last shard assembles them. Until then the subject
has a run configuration (each finished shard task writes it) and shard work files, but no
``_decoding.h5``: the group level must not run without it, and it says which shards to redo.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py

from bids_decode.errors import MissingInputError
from bids_decode.outputs import schema as outputs

#: Work file names written by :func:`bids_decode.participant._work_file`.
WORK_FILE_RE = re.compile(
    r"^roi-(?P<roi>.+?)_layer-(?P<layer>[A-Za-z0-9]+)_shard-(?P<i>\d+)of(?P<n>\d+)_"
    r"(?P<digest>[0-9a-f]+)\.h5$")


def work_folder(work_path: Path, subject: str, task: str, network: str) -> Path:
    """``WORK_DIR/sub-<L>/task-<T>/net-<N>``: one network's work files of a subject."""
    return (Path(work_path) / f"sub-{subject}" / f"task-{task}"
            / f"net-{outputs.network_label(network)}")


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
        for path in work_folder(work, sub, task, network).glob(f"roi-*_shard-*of{n}_*.h5"):
            m = WORK_FILE_RE.match(path.name)
            if m:
                sets.setdefault((m["roi"], m["digest"]), {}).setdefault(m["layer"], []).append(
                    path)
        for (roi, _), layers in sorted(sets.items()):
            files = [p for ps in layers.values() for p in ps]
            output = outputs.decoding_h5(output_dir, sub, task, roi, network=network)
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
                    f"{i}/{n} ({', '.join(sorted(lay))})")
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
