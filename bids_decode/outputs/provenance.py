"""Provenance of a run: the package versions, platform, CPU and LAPACK, and the container
(``provenance`` of the run configuration, ``GeneratedBy`` of ``dataset_description.json``)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform

import numpy as np
import pandas as pd

from bids_decode._version import __version__
from bids_decode.backends import cpu_info
from bids_decode.backends.lapack import lapack_provider
from bids_decode.backends.numba_cache import have_numba

LOGGER = logging.getLogger(__name__)


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
    cpu_lapack = lapack_provider() if have_numba() else "torch"
    if cpu_lapack == "mkl":
        import importlib.metadata

        vers["mkl"] = importlib.metadata.version("mkl")
    return {"versions": vers, "platform": platform.platform(), "container": container_info(),
            "cpu_lapack": cpu_lapack, "cpu": cpu_info()}
