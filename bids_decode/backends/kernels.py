"""Compute kernels behind :mod:`bids_decode.decoding` (private).

Two backends solve the per-unit selected-voxel ridge systems of a batch of units:

- ``cpu``: a numba kernel (``nogil``) that, unit by unit, gathers the lower triangle of
  ``G[S, S]`` into a column-major workspace that stays in cache, factorises it with LAPACK
  ``?potrf`` and solves with two BLAS ``?trsv``, called through function pointers so no Python
  runs per unit. The LAPACK and BLAS are Intel MKL's (sequential layer) or SciPy's, whichever
  factorises faster on this CPU (:func:`lapack_provider`; ``BIDS_DECODE_LAPACK=scipy`` or
  ``mkl`` forces one). Threads run the kernel on different unit batches. When numba is
  missing, a torch CPU fallback does the same with batched calls.
- ``torch``: batched gather, a blocked (or ``torch.linalg.cholesky_ex``) Cholesky and two
  triangular solves on any torch device (CUDA in practice).

Every solver returns a status per unit: 0 (solved), a positive LAPACK ``info`` (the block is
not positive definite) or -1 (ill-conditioned: the squared ratio of the largest to the smallest
Cholesky diagonal exceeds ``cond_max``); the caller redoes such units in float64.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

try:  # numba is optional: the torch path below is the fallback
    import numba
    from numba.extending import get_cython_function_address
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

LOGGER = logging.getLogger(__name__)

# status codes
OK = 0
ILL_CONDITIONED = -1


def have_numba() -> bool:
    """Whether the compiled CPU kernel is available."""
    return numba is not None


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
    from bids_decode.errors import UsageError

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
    folder = numba_cache_dir() if numba is not None else None
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
    return get_cython_function_address(f"scipy.linalg.cython_{library}", name)


#: LLVM CPU names by the widest vector instruction set their kernels use (for provenance;
#: a name not listed is reported as it is)
_ISA_OF_CPU = {
    "avx512": ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
               "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
               "graniterapids", "znver4", "znver5", "x86-64-v4"),
    "avx2": ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
             "znver1", "znver2", "znver3", "x86-64-v3"),
    "sse": ("generic", "x86-64", "x86-64-v2", "nehalem", "westmere", "sandybridge",
            "ivybridge"),
}


def _isa_of_features(features: str) -> str:
    flags = {f[1:] for f in features.split(",") if f.startswith("+")}
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f
                          if ln.startswith("model name")), model)
    return model


def cpu_info() -> dict:
    """The CPU and the code paths the decoder's kernels take on it (for provenance).

    Returns
    -------
    dict
        ``model`` (``/proc/cpuinfo``), ``host_isa`` (widest vector set of the CPU),
        ``kernel_isa`` (the one the compiled kernels target: the host's, or that of
        ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``), ``numba_cpu``, ``lapack`` (the kernel's),
        ``openblas`` (numpy's OpenBLAS version and kernel family), and the MKL settings
        ``MKL_ENABLE_INSTRUCTIONS`` and ``MKL_CBWR`` when set.
    """
    info = {"model": cpu_model(), "host_isa": "unknown", "kernel_isa": "unknown", "numba_cpu": None}
    if numba is not None:
        import llvmlite.binding as ll

        info["host_isa"] = _isa_of_features(ll.get_host_cpu_features().flatten())
        name, features = numba.config.CPU_NAME, numba.config.CPU_FEATURES
        info["numba_cpu"] = name or ll.get_host_cpu_name()
        if features:
            info["kernel_isa"] = _isa_of_features(features)
        elif name and name != "host":
            info["kernel_isa"] = next((isa for isa, names in _ISA_OF_CPU.items()
                                       if name in names), f"unknown ({name})")
        else:
            info["kernel_isa"] = info["host_isa"]
        info["lapack"] = lapack_provider()
        if os.environ.get(LAPACK_ENV):
            info["lapack_chosen_by"] = LAPACK_ENV
        elif _mkl_library() is not None:
            cal = calibrate_lapack()
            info["lapack_chosen_by"] = (f"calibration: spotrf k=500 MKL {1e3 * cal['mkl_s']:.3f} "
                                        f"ms, SciPy {1e3 * cal['scipy_s']:.3f} ms")
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        if blas:
            info["openblas"] = f"{blas[0].get('version')} {blas[0].get('architecture')}"
    for var in ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OPENBLAS_CORETYPE"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


#: units whose blocks are gathered together (work memory: SUB_BATCH * (k + 1)^2 per thread)
SUB_BATCH = 32

#: environment variable naming the folder of compiled kernels (default: the user's cache)
CACHE_ENV = "BIDS_DECODE_CACHE_DIR"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


@functools.cache
def numba_cache_dir() -> str | None:
    """Where compiled kernels are cached on disk, or None where no folder can be written.

    ``NUMBA_CACHE_DIR`` if set (numba's own variable); else ``$BIDS_DECODE_CACHE_DIR``, or
    ``$XDG_CACHE_HOME/bids_decode`` (``~/.cache/bids_decode``). A cache that exists but cannot
    be written (a read-only container image that ships its kernels compiled) is copied once
    per user and content to the temporary folder and used from there (:func:`_private_copy`).
    numba keys each cached kernel by the source file, the signature and the CPU name and
    features it was compiled for, and the kernels take the LAPACK and BLAS routines' addresses
    as arguments, so a cache never serves the wrong CPU or LAPACK.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "bids_decode")
    path = Path(base) / f"numba-{numba.__version__}"
    if not _writable(path):
        if not path.is_dir():
            LOGGER.info("no writable folder for compiled kernels (%s): compiling each run", path)
            return None
        path = _private_copy(path)
    numba.config.CACHE_DIR = str(path)
    return str(path)


def _private_copy(src: Path) -> Path:
    """A writable copy of the read-only kernel cache ``src``, made once per user and content.

    The copy lives in the temporary folder under a name keyed by the user and by the files of
    ``src`` (names, sizes, times), so later runs reuse it instead of leaving a copy each. It is
    used only if this user owns it and nobody else can write to it (compiled code is loaded
    from it); otherwise a fresh private copy is made.
    """
    import hashlib

    listing = sorted((str(f.relative_to(src)), f.stat().st_size, f.stat().st_mtime_ns)
                     for f in src.rglob("*") if f.is_file())
    key = hashlib.sha1(repr((str(src), listing)).encode()).hexdigest()[:16]
    copy = Path(tempfile.gettempdir()) / f"bids_decode-numba-{os.getuid()}-{key}"
    with contextlib.suppress(OSError):
        st = copy.lstat()
        if copy.is_dir() and not copy.is_symlink() and st.st_uid == os.getuid() \
                and not st.st_mode & 0o022:
            return copy
    fresh = Path(tempfile.mkdtemp(prefix="bids_decode-numba-"))  # mode 0700
    shutil.copytree(src, fresh, dirs_exist_ok=True)
    try:
        os.rename(fresh, copy)  # atomic; fails if another process made it first
    except OSError:
        return fresh
    return copy


if numba is not None:
    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    def _indirect_call(context, builder, sig, args):
        """``(*addr)(data pointers of the arrays)``: LAPACK called through a run-time address,
        so no address is baked into the machine code and the kernel can be cached on disk."""
        i8p = _ir.IntType(8).as_pointer()
        ptrs = [builder.bitcast(context.make_array(ty)(context, builder, val).data, i8p)
                for ty, val in zip(sig.args[1:], args[1:])]
        fnty = _ir.FunctionType(_ir.VoidType(), [i8p] * len(ptrs))
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), ptrs)
        return context.get_dummy_value()

    @_intrinsic
    def _call5(typingctx, addr, a, b, c, d, e):
        return _types.void(addr, a, b, c, d, e), _indirect_call

    @_intrinsic
    def _call8(typingctx, addr, a, b, c, d, e, f, g, h):
        return _types.void(addr, a, b, c, d, e, f, g, h), _indirect_call

    @_intrinsic
    def _cycles(typingctx):
        """The CPU's cycle counter (``llvm.readcyclecounter``: RDTSC on x86-64)."""
        def codegen(context, builder, sig, args):
            fnty = _ir.FunctionType(_ir.IntType(64), [])
            return builder.call(builder.module.declare_intrinsic("llvm.readcyclecounter",
                                                                 fnty=fnty), [])
        return _types.int64(), codegen

    _jit = numba.njit(nogil=True, cache=numba_cache_dir() is not None)

    @_jit
    def _cycle_counter():
        return _cycles()
    _jit_fastmath = numba.njit(nogil=True, fastmath=True, cache=numba_cache_dir() is not None)

    @_jit
    def _aligned(n, dtype):
        """An uninitialised 1-D array of ``n`` elements starting on a 64-byte boundary."""
        itemsize = np.empty(0, dtype).itemsize
        buf = np.empty(n + 64 // itemsize, dtype)
        off = ((64 - buf.ctypes.data % 64) % 64) // itemsize
        return buf[off:off + n]

    @_jit
    def _solve_batch(gram, index, rhs, cond_max, xt, coef, intercept, status, pred, potrf,
                     trsv, clocks):
        # long: one compiled loop over the units, so no Python runs per unit; its steps
        # (gather, factorise, check, solve, predict) share the sub-batch's buffers
        # gram (P, P) C-order; index (B, k) int64 sorted ascending, all < P - 1;
        # rhs (B, k + 1) with the bias last; xt (P - 1, n_test) or shape (0, 0);
        # outputs coef (B, k), intercept (B,), status (B,) int64, pred (B, n_test);
        # potrf, trsv: addresses of LAPACK ?potrf and BLAS ?trsv in gram's precision;
        # clocks (4,) int64: cycles spent gathering, factorising, solving, predicting (added).
        n_units, k = index.shape
        m = k + 1
        n_rows = gram.shape[0]
        bias = n_rows - 1
        sub = min(SUB_BATCH, n_units)
        # every unit's workspace starts on a 64-byte boundary: MKL's results may depend on
        # the alignment of its operands (its reproducibility conditions), so a unit's bits
        # must not depend on where its slot happens to fall
        align = 64 // gram.itemsize
        slot = -(-(m * m) // align) * align
        work = _aligned(sub * slot, gram.dtype).reshape((sub, slot))
        # unsigned 32-bit: no negative-index wraparound in the gather, which then vectorises
        sels = np.empty((sub, m), dtype=np.uint32)
        # bucket (unit, position) pairs by Gram row: each row is read once per sub-batch and
        # scattered to every unit selecting it (the row stays in cache; a unit-by-unit gather
        # would stream ~one cache line per element of every unit's block from memory)
        counts = np.zeros(n_rows + 1, dtype=np.int64)
        bucket_u = np.empty(sub * m, dtype=np.int64)
        bucket_j = np.empty(sub * m, dtype=np.int64)
        vec = _aligned(m, gram.dtype)
        info = np.zeros(1, dtype=np.int32)
        ints = np.array([m], dtype=np.int32)
        uplo = np.array([76], dtype=np.int8)  # 'L'
        notrans = np.array([78], dtype=np.int8)  # 'N'
        trans = np.array([84], dtype=np.int8)  # 'T'
        one = np.array([1], dtype=np.int32)
        n_test = xt.shape[1]
        acc = np.empty(max(n_test, 1), dtype=gram.dtype)
        for u0 in range(0, n_units, sub):
            nb = min(sub, n_units - u0)
            c0 = _cycles()
            counts[:] = 0
            for b in range(nb):
                for i in range(k):
                    sels[b, i] = index[u0 + b, i]
                    counts[sels[b, i] + 1] += 1
                sels[b, k] = bias
                counts[bias + 1] += 1
            for r in range(n_rows):
                counts[r + 1] += counts[r]
            fill = counts[:-1].copy()
            for b in range(nb):
                for j in range(m):
                    r = sels[b, j]
                    bucket_u[fill[r]] = b
                    bucket_j[fill[r]] = j
                    fill[r] += 1
            # lower triangle, column-major: column j holds G[sel[j:], sel[j]] = G[sel[j], sel[j:]]
            for r in range(n_rows):
                if counts[r + 1] == counts[r]:
                    continue
                row = gram[r]
                for q in range(counts[r], counts[r + 1]):
                    b = bucket_u[q]
                    j = bucket_j[q]
                    col = work[b, j * m:(j + 1) * m]
                    sb = sels[b]
                    for i in range(j, m):
                        col[i] = row[sb[i]]
            clocks[0] += _cycles() - c0
            for b in range(nb):
                u = u0 + b
                wb = work[b]
                c0 = _cycles()
                _call5(potrf, uplo, ints, wb, ints, info)
                c1 = _cycles()
                clocks[1] += c1 - c0
                if info[0] != 0:
                    status[u] = info[0]
                    continue
                dmin = wb[0]
                dmax = wb[0]
                for j in range(1, m):
                    d = wb[j * m + j]
                    if d < dmin:
                        dmin = d
                    if d > dmax:
                        dmax = d
                if not (dmin > 0) or (dmax / dmin) ** 2 > cond_max:
                    status[u] = -1
                    continue
                for i in range(m):
                    vec[i] = rhs[u, i]
                # L L' x = b: two triangular solves (BLAS ?trsv; LAPACK ?potrs takes a slow
                # multi-right-hand-side path in some LAPACKs)
                _call8(trsv, uplo, notrans, notrans, ints, wb, ints, vec, one)
                _call8(trsv, uplo, trans, notrans, ints, wb, ints, vec, one)
                status[u] = 0
                for i in range(k):
                    coef[u, i] = vec[i]
                intercept[u] = vec[k]
                c2 = _cycles()
                clocks[2] += c2 - c1
                # predictions: row by row of xt, so the inner loop runs over contiguous test
                # samples; each prediction still sums its terms in voxel order
                for t in range(n_test):
                    acc[t] = vec[k]
                for i in range(k):
                    w = vec[i]
                    xr = xt[sels[b, i]]
                    for t in range(n_test):
                        acc[t] += xr[t] * w
                for t in range(n_test):
                    pred[u, t] = acc[t]
                clocks[3] += _cycles() - c2


    @_jit_fastmath
    def _dot(a, b):
        acc = 0.0
        for i in range(a.shape[0]):
            acc += a[i] * b[i]
        return acc

    @_jit
    def _refine(scores, thr, half_width, yt, xzt, k, out):
        # scores (B, P) float32 |xz' y| from a float32 GEMM; thr (B,) the k-th largest of each
        # row; half_width (B,) twice the rounding bound; yt (B, n) and xzt (P, n) float64;
        # out (B, k) int64: the top k by the float64 score, ascending. Returns the number of
        # float64 dot products computed.
        n_units, p = scores.shape
        cand = np.empty(p, dtype=np.int64)
        mark = np.zeros(p, dtype=np.bool_)
        tmp = np.empty(p + 1, dtype=np.int64)
        n_dots = 0
        for u in range(n_units):
            hi = thr[u] + half_width[u]
            lo = thr[u] - half_width[u]
            d = 0
            c = 0
            for v in range(p):  # branch-free but for the rare candidates
                sv = scores[u, v]
                m = sv > hi
                mark[v] = m
                d += m
                if (sv >= lo) & (sv <= hi):
                    cand[c] = v
                    c += 1
            need = k - d
            if need == c:
                for j in range(c):
                    mark[cand[j]] = True
            else:
                exact = np.empty(c, dtype=np.float64)
                for j in range(c):
                    exact[j] = -abs(_dot(yt[u], xzt[cand[j]]))
                n_dots += c
                order = np.argsort(exact, kind="mergesort")
                for j in range(need):
                    mark[cand[order[j]]] = True
            j = 0
            for v in range(p):  # branch-free compaction of the marked voxels, ascending
                tmp[j] = v
                j += mark[v]
            for i in range(k):
                out[u, i] = tmp[i]
        return n_dots



def warm_up() -> dict:
    """Compile (or load from the cache) every CPU kernel, in both precisions.

    Run once where the cache folder is writable, e.g. when a container image is built, so the
    first decoding of every later process starts without compiling. Returns numba's cache
    hits and misses per kernel.
    """
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((12, 6))
        gram = (X.T @ X + np.eye(6)).astype(dtype)
        index = np.array([[0, 2, 3], [1, 2, 4]], dtype=np.int64)
        rhs = rng.standard_normal((2, 4))
        solve_selected_numba(gram, index, rhs, 1e12, np.zeros((5, 2), dtype))
    scores = rng.random((2, 5)).astype(np.float32)
    select_refined(scores, 2, np.full(2, 0.5), rng.standard_normal((2, 3)),
                   rng.standard_normal((5, 3)))
    return {f.__name__: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
            for f in (_solve_batch, _refine)}


@functools.cache
def _kernel_routines(dtype_char: str) -> tuple[int, int]:
    """Addresses of LAPACK ?potrf and BLAS ?trsv for 'f' (float32) or 'd' (float64)."""
    prefix = {"f": "s", "d": "d"}[dtype_char]
    return _routine_address(prefix + "potrf", "lapack"), _routine_address(prefix + "trsv", "blas")


def cycles_per_second(seconds: float = 0.2) -> float:
    """Rate of the kernel's cycle counter, measured against the wall clock."""
    import time

    c0, t0 = _cycle_counter(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    return (_cycle_counter() - c0) / (time.perf_counter() - t0)


def solve_selected_numba(gram, index, rhs, cond_max, xt=None, clocks=None):
    """Solve the selected-voxel systems of a batch of units on the CPU (one thread).

    Parameters
    ----------
    gram : ndarray of shape (n_voxels + 1, n_voxels + 1), float32 or float64
        ``X'X + alpha I`` with the bias last, C-contiguous.
    index : ndarray of shape (n_units, k), int64
        Selected voxels per unit, sorted ascending.
    rhs : ndarray of shape (n_units, k + 1)
        ``X[:, S]' y`` per unit, the bias entry (``sum(y)``) last.
    cond_max : float
        Units whose Cholesky-diagonal condition estimate exceeds this get status -1.
    xt : ndarray of shape (n_voxels, n_test) or None
        Test data, transposed; when given, predictions are computed.
    clocks : ndarray of shape (4,), int64, optional
        CPU cycles spent gathering the Gram blocks, factorising, solving and predicting
        are added to it (:func:`cycles_per_second` converts them; for benchmarks).

    Returns
    -------
    coef : ndarray of shape (n_units, k)
    intercept : ndarray of shape (n_units,)
    status : ndarray of shape (n_units,), int64
    pred : ndarray of shape (n_units, n_test) or None
    """
    dtype = gram.dtype
    potrf, trsv = _kernel_routines(dtype.char)
    n_units, k = index.shape
    coef = np.zeros((n_units, k), dtype=dtype)
    intercept = np.zeros(n_units, dtype=dtype)
    status = np.zeros(n_units, dtype=np.int64)
    xt_arr = np.zeros((0, 0), dtype=dtype) if xt is None else np.ascontiguousarray(xt, dtype)
    pred = np.zeros((n_units, xt_arr.shape[1]), dtype=dtype)
    _solve_batch(np.ascontiguousarray(gram), np.ascontiguousarray(index, dtype=np.int64),
           np.ascontiguousarray(rhs, dtype=dtype), float(cond_max), xt_arr, coef, intercept,
           status, pred, potrf, trsv, np.zeros(4, dtype=np.int64) if clocks is None else clocks)
    return coef, intercept, status, (None if xt is None else pred)


def select_refined(scores, k, half_width, yt, xzt):
    """Top-``k`` voxels per unit from float32 scores, exact to the float64 ranking.

    A voxel whose float32 score lies more than ``half_width`` above the float32 k-th largest
    is in the float64 top k, one more than ``half_width`` below is out (``half_width`` being
    twice a bound on the float32 rounding error of each score); the few in between are
    re-scored in float64 and ranked.

    Parameters
    ----------
    scores : ndarray of shape (n_units, n_voxels), float32
    k : int
    half_width : ndarray of shape (n_units,), float64
    yt : ndarray of shape (n_units, n_samples), float64
    xzt : ndarray of shape (n_voxels, n_samples), float64

    Returns
    -------
    index : ndarray of shape (n_units, k), int64, ascending
    n_dots : int
        How many float64 scores were recomputed.
    """
    p = scores.shape[1]
    thr = np.partition(scores, p - k, axis=1)[:, p - k].astype(np.float64)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    n_dots = _refine(scores, thr, half_width, yt, xzt, int(k), out)
    return out, int(n_dots)


#: Tuning of the torch path: the factorisation ("torch": ``torch.linalg.cholesky_ex``;
#: "blocked": :func:`blocked_cholesky`, GEMM-rich) and the units gathered at once.
TORCH_DEFAULTS = {"cholesky": "blocked", "sub_batch": 4096, "block": 64}


def blocked_cholesky(A, block: int = 64, *, zero_upper: bool = True):
    """Left-looking blocked Cholesky of a batch, in place, with batched GEMMs.

    Parameters
    ----------
    A : Tensor of shape (n_units, m, m)
        Symmetric matrices (only the lower triangle is read); overwritten by ``L``
        (the strict upper triangle is zeroed unless ``zero_upper`` is False).
    block : int
        Block size; the diagonal blocks go to ``torch.linalg.cholesky_ex``.
    zero_upper : bool
        Zero the strict upper triangle (False leaves what was there, for callers that read
        only the lower triangle: one pass over the batch less).

    Returns
    -------
    L : Tensor of shape (n_units, m, m)
        ``A`` itself.
    info : Tensor of shape (n_units,), int32
        0, or the 1-based order of the first non-positive leading minor.
    """
    import torch

    m = A.shape[-1]
    info = torch.zeros(A.shape[0], dtype=torch.int32, device=A.device)
    for j0 in range(0, m, block):
        j1 = min(j0 + block, m)
        if j0:
            A[:, j0:, j0:j1].baddbmm_(A[:, j0:, :j0], A[:, j0:j1, :j0].mT, alpha=-1)
        L11, inf = torch.linalg.cholesky_ex(A[:, j0:j1, j0:j1])
        info = torch.where((info == 0) & (inf > 0), inf + j0, info)
        A[:, j0:j1, j0:j1] = L11
        if j1 < m:
            A[:, j1:, j0:j1] = torch.linalg.solve_triangular(
                L11.mT, A[:, j1:, j0:j1], upper=True, left=False)
    return (A.tril_() if zero_upper else A), info


def solve_selected_torch(gram, index, rhs, cond_max, xt=None, *, sub_batch=None,
                         cholesky=None):
    """Same contract as :func:`solve_selected_numba`, with torch tensors on any device.

    Parameters
    ----------
    gram : Tensor of shape (n_voxels + 1, n_voxels + 1)
    index : Tensor of shape (n_units, k), int64, sorted ascending
    rhs : Tensor of shape (n_units, k + 1)
    cond_max : float
    xt : Tensor of shape (n_voxels, n_test) or None
    sub_batch : int or None
        Units gathered at once (the gather holds ``sub_batch * (k + 1)**2`` elements and
        as many int64 indices); None: ``TORCH_DEFAULTS["sub_batch"]``.
    cholesky : {"torch", "blocked"} or None
        None: ``TORCH_DEFAULTS["cholesky"]``.

    Returns
    -------
    coef, intercept, status, pred : Tensors (see :func:`solve_selected_numba`)
    """
    import torch

    sub_batch = sub_batch or TORCH_DEFAULTS["sub_batch"]
    cholesky = cholesky or TORCH_DEFAULTS["cholesky"]
    n_units, k = index.shape
    P = gram.shape[0]
    dev = gram.device
    coef = torch.zeros((n_units, k), dtype=gram.dtype, device=dev)
    intercept = torch.zeros(n_units, dtype=gram.dtype, device=dev)
    status = torch.zeros(n_units, dtype=torch.int64, device=dev)
    pred = None if xt is None else torch.zeros((n_units, xt.shape[1]), dtype=gram.dtype, device=dev)
    bias = torch.full((1,), P - 1, dtype=torch.int64, device=dev)
    for s in range(0, n_units, sub_batch):
        e = min(s + sub_batch, n_units)
        sel = torch.cat([index[s:e], bias.expand(e - s, 1)], dim=1)  # (b, m)
        # broadcast advanced indexing: no (b, m, m) int64 index is materialised
        sub = gram[sel[:, :, None], sel[:, None, :]]
        if cholesky == "blocked":
            L, info = blocked_cholesky(sub, TORCH_DEFAULTS["block"], zero_upper=False)
        else:
            L, info = torch.linalg.cholesky_ex(sub)
        diag = torch.diagonal(L, dim1=-2, dim2=-1)
        ratio = (diag.amax(dim=1) / diag.amin(dim=1)) ** 2
        bad_cond = ~(ratio <= cond_max)
        st = torch.where(info != 0, info.to(torch.int64),
                         torch.where(bad_cond, torch.full_like(status[s:e], ILL_CONDITIONED),
                                     torch.zeros_like(status[s:e])))
        # two triangular solves read only the lower triangle (cholesky_solve would copy L
        # into column-major order first)
        z = torch.linalg.solve_triangular(L, rhs[s:e, :, None].to(gram.dtype), upper=False)
        w = torch.linalg.solve_triangular(L.mT, z, upper=True)[:, :, 0]
        w = torch.where((st == 0)[:, None], w, torch.zeros_like(w))
        status[s:e] = st
        coef[s:e] = w[:, :k]
        intercept[s:e] = w[:, k]
        if xt is not None:
            # weights scattered into a dense (b, n_voxels) block, then one GEMM with the test
            # data: fewer bytes than gathering a (b, k, n_test) block of it
            dense = torch.zeros((e - s, xt.shape[0]), dtype=w.dtype, device=dev)
            dense.scatter_(1, index[s:e], w[:, :k])
            pred[s:e] = dense @ xt + w[:, k:]
    return coef, intercept, status, pred
