"""BIDS-derivative paths and writers; every file is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from bids_decode._version import __version__
from bids_decode.errors import OutputError, UsageError

BIDSIGNORE = [
    "*_decoding.tsv",
    "*_decoding.json",
    "*_decoding.h5",
    "*_qc.h5",
    "*_config.json",
    "*.html",
    "logs",
    "group",
    "figures",
    ".bids_decode_work",
    "*.lock",
]


def subject_dir(output_dir: Path, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}"


def bids_name(subject: str, task: str, *, net: str | None = None, desc: str | None = None,
              suffix: str, ext: str) -> str:
    """``sub-<L>_task-<T>[_net-<N>][_desc-<D>]_<suffix><ext>`` built from entities.

    ``net`` (the network, docs/outputs.md) is this app's own entity, placed before ``desc``.
    """
    for key, val in (("sub", subject), ("task", task), ("net", net), ("desc", desc)):
        if val is not None and (not val or not str(val).isalnum()):
            raise UsageError(f"BIDS label {key}-{val!r} must be alphanumeric.")
    ents = [f"sub-{subject}", f"task-{task}"] + ([f"net-{net}"] if net else []) + (
        [f"desc-{desc}"] if desc else [])
    return "_".join(ents) + f"_{suffix}{ext}"


def func_path(output_dir: Path, subject: str, task: str, *, net=None, desc=None,
              suffix="decoding", ext=".tsv") -> Path:
    return subject_dir(output_dir, subject) / "func" / bids_name(
        subject, task, net=net, desc=desc, suffix=suffix, ext=ext)


def check_output_dir(output_dir: Path, bids_dir: Path) -> None:
    """Refuse OUTPUT_DIR == BIDS_DIR or inside it (except under derivatives/)."""
    out = Path(os.path.abspath(output_dir)).resolve()
    src = Path(os.path.abspath(bids_dir)).resolve()
    if out == src:
        raise UsageError(
            f"OUTPUT_DIR is the input dataset ({out}); the app never writes into its input. "
            f"Give another folder, e.g. {src / 'derivatives' / 'bids_decode'}."
        )
    if src in out.parents and (src / "derivatives") not in [out, *out.parents]:
        raise UsageError(
            f"OUTPUT_DIR {out} is inside the input dataset {src} but not under its derivatives/ "
            f"folder, which would make the dataset invalid. Use e.g. "
            f"{src / 'derivatives' / 'bids_decode'} or a folder outside the dataset."
        )


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


def container_info() -> dict | None:
    """Container provenance from the image's environment (set in the Dockerfile)."""
    kind = os.environ.get("BIDS_DECODE_CONTAINER")
    if not kind:
        return None
    info = {"Type": kind}
    tag = os.environ.get("BIDS_DECODE_IMAGE")
    if tag:
        info["Tag"] = tag
    return info


def dataset_description(bids_dir: Path) -> dict:
    src = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        src = json.loads((Path(bids_dir) / "dataset_description.json").read_text())
    gen = {
        "Name": "bids_decode",
        "Version": __version__,
        "Description": "Voxel-selecting ridge decoding of DNN unit activations from fMRI "
                       "(Horikawa & Kamitani 2017; 2019).",
        "CodeURL": "https://github.com/bids-decode/bids_decode",
    }
    cont = container_info()
    if cont:
        gen["Container"] = cont
    desc = {
        "Name": f"bids_decode outputs for {src.get('Name', Path(bids_dir).name)}",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [gen],
        "SourceDatasets": [{"URL": f"file://{Path(os.path.abspath(bids_dir))}"}],
        "HowToAcknowledge": "Cite Horikawa & Kamitani (2017) Nat Commun 8:15037 and Horikawa "
                            "et al. (2019) Sci Data 6:190012.",
    }
    if src.get("DatasetDOI"):
        desc["SourceDatasets"][0]["DOI"] = src["DatasetDOI"]
    if src.get("License"):
        desc["License"] = src["License"]
    return desc


def init_output_dir(output_dir: Path, bids_dir: Path) -> None:
    """Write dataset_description.json and .bidsignore once, under the shared lock."""
    output_dir = ensure_dir(Path(output_dir))
    with lock(output_dir):
        dd = output_dir / "dataset_description.json"
        if not dd.exists():
            write_json(dd, dataset_description(bids_dir))
        ign = output_dir / ".bidsignore"
        have = ign.read_text().split() if ign.exists() else []
        missing = [p for p in BIDSIGNORE if p not in have]
        if missing:
            write_text(ign, "\n".join(have + missing) + "\n")


def provenance() -> dict:
    import h5py
    import nibabel
    import nilearn
    import scipy
    import sklearn

    vers = {
        "bids_decode": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "nibabel": nibabel.__version__,
        "nilearn": nilearn.__version__,
        "h5py": h5py.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
    }
    with contextlib.suppress(ImportError):
        import bids

        vers["pybids"] = bids.__version__
    with contextlib.suppress(ImportError):
        import torch

        vers["torch"] = torch.__version__
    with contextlib.suppress(ImportError):
        import numba

        vers["numba"] = numba.__version__
    from bids_decode.backends import cpu_info
    from bids_decode.backends.lapack import lapack_provider
    from bids_decode.backends.numba_cache import have_numba

    cpu_lapack = lapack_provider() if have_numba() else "torch"
    if cpu_lapack == "mkl":
        import importlib.metadata

        vers["mkl"] = importlib.metadata.version("mkl")
    return {"versions": vers, "platform": platform.platform(), "container": container_info(),
            "cpu_lapack": cpu_lapack, "cpu": cpu_info()}
