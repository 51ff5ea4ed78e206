"""Where the derivatives go: BIDS names and paths, the output folder's checks, and its
``dataset_description.json`` and ``.bidsignore``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from bids_decode._version import __version__
from bids_decode.errors import UsageError
from bids_decode.outputs.provenance import container_info
from bids_decode.utils.files import ensure_dir, lock, write_json, write_text

LOGGER = logging.getLogger(__name__)

#: Output files and folders outside the BIDS specification, listed in ``.bidsignore``.
BIDSIGNORE = [
    "*_decoding.tsv",
    "*_decoding.json",
    "*_decoding.h5",
    "*_encoding.tsv",
    "*_encoding.json",
    "*_encoding.h5",
    "*_qc.h5",
    "*_statmap.nii.gz",
    "*_statmap.json",
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
              stat: str | None = None, suffix: str, ext: str) -> str:
    """``sub-<L>_task-<T>[_net-<N>][_desc-<D>][_stat-<S>]_<suffix><ext>`` built from entities.

    ``net`` (the network, docs/outputs.md) is this app's own entity, placed before ``desc``;
    ``stat`` (the statistic of a ``_statmap``) is the statistical-maps proposal's (BEP041).
    """
    for key, val in (("sub", subject), ("task", task), ("net", net), ("desc", desc),
                     ("stat", stat)):
        if val is not None and (not val or not str(val).isalnum()):
            raise UsageError(f"BIDS label {key}-{val!r} must be alphanumeric.")
    ents = [f"sub-{subject}", f"task-{task}"] + [
        f"{key}-{val}" for key, val in (("net", net), ("desc", desc), ("stat", stat)) if val]
    return "_".join(ents) + f"_{suffix}{ext}"


def func_path(output_dir: Path, subject: str, task: str, *, net=None, desc=None, stat=None,
              suffix="decoding", ext=".tsv") -> Path:
    return subject_dir(output_dir, subject) / "func" / bids_name(
        subject, task, net=net, desc=desc, stat=stat, suffix=suffix, ext=ext)


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
