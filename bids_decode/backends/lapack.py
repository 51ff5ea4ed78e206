"""Which LAPACK the CPU kernel calls: Intel MKL's (sequential layer) or SciPy's.

``BIDS_DECODE_LAPACK=mkl|scipy`` forces one; unset, the faster at the decoder's block size on
this CPU where the ``mkl`` package loads (:func:`calibrate_lapack`, cached per machine), SciPy's
otherwise (:func:`lapack_provider`). The kernel calls the chosen ``?potrf`` and ``?trsv``
through their addresses (:func:`kernel_routines`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
from pathlib import Path

import numpy as np

from bids_decode.backends.cpuinfo import cpu_model
from bids_decode.backends.numba_cache import have_numba, numba_cache_dir
from bids_decode.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: environment variable that picks the LAPACK of the CPU kernel: "mkl", "scipy" or unset (auto)
LAPACK_ENV = "BIDS_DECODE_LAPACK"
_MKL_THREADING_SEQUENTIAL = 1
@functools.cache
def _mkl_library():
    """The ``mkl`` package's runtime library, set to its sequential layer, or None."""
    import importlib.metadata
    import pathlib

    try:
        files = importlib.metadata.distribution("mkl").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so"):
            path = pathlib.Path(f.locate()).resolve()
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as err:
                LOGGER.warning("Intel MKL found at %s but not loadable (%s); using SciPy's "
                               "LAPACK", path, err)
                return None
            # one thread per call: the kernel's own threads keep the cores busy
            lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
            lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_THREADING_SEQUENTIAL))
            return lib
    return None


@functools.cache
def lapack_provider() -> str:
    """Which LAPACK the CPU kernel calls: ``"mkl"`` or ``"scipy"``.

    ``BIDS_DECODE_LAPACK=mkl|scipy`` decides (``mkl`` without the ``mkl`` package is an
    error). Unset, the faster of the two on this CPU where the ``mkl`` package loads, by a
    short calibration (:func:`calibrate_lapack`) that is cached per machine; SciPy's
    otherwise.
    """
    want = os.environ.get(LAPACK_ENV, "").strip().lower()
    if want not in ("", "mkl", "scipy"):
        raise UsageError(f"The environment variable {LAPACK_ENV} must be 'mkl', 'scipy' or "
                         f"unset; got {want!r}. Set it to one of those or unset it.")
    if want == "scipy":
        return "scipy"
    if _mkl_library() is not None:
        return "mkl" if want == "mkl" else calibrate_lapack()["choice"]
    if want == "mkl":
        raise UsageError(f"{LAPACK_ENV}=mkl but the 'mkl' package is not installed or does "
                         "not load; install it (pip install mkl) or unset the variable.")
    return "scipy"


#: MKL is chosen only when its Cholesky is this much faster than SciPy's (OpenBLAS's) at the
#: decoder's block size: timing noise must not flip the choice (and with it the last bits)
_MKL_MARGIN = 1.1


def _time_potrf(provider: str, n: int = 501, repeats: int = 15) -> float:
    """Best time of ``spotrf`` on an ``n x n`` SPD matrix, in seconds."""
    import time

    addr = _routine_address("spotrf", "lapack", provider)
    potrf = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 5))(addr)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2 * n, n)).astype(np.float32)
    spd = np.asfortranarray(X.T @ X + n * np.eye(n, dtype=np.float32))
    uplo, dim, info = ctypes.c_char(b"L"), ctypes.c_int(n), ctypes.c_int(0)
    best = np.inf
    for _ in range(repeats):
        a = spd.copy(order="F")
        t0 = time.perf_counter()
        potrf(ctypes.byref(uplo), ctypes.byref(dim), a.ctypes.data, ctypes.byref(dim),
              ctypes.byref(info))
        best = min(best, time.perf_counter() - t0)
    return best


@functools.cache
def calibrate_lapack() -> dict:
    """Time MKL's and SciPy's ``spotrf`` at the decoder's size and choose the faster.

    The result is kept in the kernel cache folder (:func:`numba_cache_dir`), keyed by CPU
    model, instruction sets and library versions, so a machine keeps one choice (and the
    same bits) from run to run. Returns ``{"choice", "mkl_s", "scipy_s", "key"}``.
    """
    import importlib.metadata
    import json

    import llvmlite.binding as ll
    import scipy
    from threadpoolctl import threadpool_limits

    mkl_version = importlib.metadata.version("mkl")
    # a VM may show one model name for several CPU generations: the LLVM CPU name too
    key = "|".join((cpu_model(), ll.get_host_cpu_name(),
                    os.environ.get("MKL_ENABLE_INSTRUCTIONS", ""),
                    os.environ.get("MKL_CBWR", ""), mkl_version, scipy.__version__))
    folder = numba_cache_dir() if have_numba() else None
    path = Path(folder) / "lapack-choice.json" if folder else None
    if path is not None and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(path.read_text())
            if cached.get(key):
                return cached[key]
    with threadpool_limits(1):
        times = {p: _time_potrf(p) for p in ("scipy", "mkl")}
    choice = "mkl" if times["mkl"] * _MKL_MARGIN < times["scipy"] else "scipy"
    result = {"choice": choice, "mkl_s": times["mkl"], "scipy_s": times["scipy"], "key": key}
    LOGGER.info("LAPACK for the CPU decoder: %s (spotrf at k = 500: MKL %.2f ms, SciPy %.2f ms; "
                "cached in %s)", choice, 1e3 * times["mkl"], 1e3 * times["scipy"], path)
    if path is not None:
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(path.read_text()) if path.is_file() else {}
            cached[key] = result
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1))
            os.replace(tmp, path)
    return result


def _routine_address(name: str, library: str, provider: str | None = None) -> int:
    """Address of a BLAS or LAPACK routine (Fortran calling convention).

    Parameters
    ----------
    name : str
        e.g. ``"spotrf"``.
    library : {"blas", "lapack"}
        Where SciPy keeps it (``scipy.linalg.cython_<library>``); MKL's one library has both.
    provider : {"mkl", "scipy"} or None
        None: the chosen one (:func:`lapack_provider`).
    """
    if (provider or lapack_provider()) == "mkl":
        return ctypes.cast(getattr(_mkl_library(), name + "_"), ctypes.c_void_p).value
    from numba.extending import get_cython_function_address  # numba is optional

    return get_cython_function_address(f"scipy.linalg.cython_{library}", name)


@functools.cache
def kernel_routines(dtype_char: str) -> tuple[int, int]:
    """Addresses of LAPACK ?potrf and BLAS ?trsv for 'f' (float32) or 'd' (float64)."""
    prefix = {"f": "s", "d": "d"}[dtype_char]
    return _routine_address(prefix + "potrf", "lapack"), _routine_address(prefix + "trsv", "blas")


def lapack_info() -> dict:
    """The CPU kernel's LAPACK and what chose it (for provenance).

    Returns
    -------
    dict
        ``lapack`` (:func:`lapack_provider`) and, where a variable or the calibration chose
        it, ``lapack_chosen_by``.
    """
    info = {"lapack": lapack_provider()}
    if os.environ.get(LAPACK_ENV):
        info["lapack_chosen_by"] = LAPACK_ENV
    elif _mkl_library() is not None:
        cal = calibrate_lapack()
        info["lapack_chosen_by"] = (f"calibration: spotrf k=500 MKL {1e3 * cal['mkl_s']:.3f} "
                                    f"ms, SciPy {1e3 * cal['scipy_s']:.3f} ms")
    return info
