"""File helpers any stage may use: atomic writes, folders, free space, a shared lock.

Every file is written to a temporary name beside its target, then renamed
(:func:`atomic_path`): a run killed mid-write leaves the old file or nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from bids_decode.errors import OutputError

LOGGER = logging.getLogger(__name__)


def safe_name(name: str) -> str:
    """``name`` with everything but ASCII letters and digits left out (``"x"`` when empty),
    for a label inside a file name."""
    return re.sub(r"[^A-Za-z0-9]+", "", name) or "x"


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"Cannot create the output folder {path} ({err.strerror}). Check that the volume is "
            "mounted writable and has free space, or choose another OUTPUT_DIR."
        ) from err
    return path


def check_free_space(folder: Path, need_bytes: int, what: str) -> None:
    """Refuse to start writing ``what`` when ``folder`` lacks the space it will take.

    HDF5 does not fail cleanly when a disk fills mid-write, so sizes are checked first
    (with a 10% + 1 MiB margin).
    """
    import shutil

    folder = ensure_dir(Path(folder))
    free = shutil.disk_usage(folder).free
    need = int(need_bytes * 1.1) + 2**20
    if free < need:
        raise OutputError(
            f"Not enough space in {folder} to write {what}: it needs about "
            f"{need / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free. Free some space or "
            "choose another output or work folder (-w)."
        )


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: outputs are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OutputError):
            raise
        raise OutputError(
            f"Cannot write {path} ({err.strerror or err}). Check free space and permissions of "
            "the output folder."
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_tsv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")


def lock(output_dir: Path, name: str = "bids_decode") -> FileLock:
    """A lock file shared by parallel jobs writing to the same OUTPUT_DIR."""
    ensure_dir(Path(output_dir))
    return FileLock(str(Path(output_dir) / f".{name}.lock"), timeout=600)
