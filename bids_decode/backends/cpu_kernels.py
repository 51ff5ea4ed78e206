"""The compiled (numba) CPU kernels: the batch solve and the refined float32 selection.

:func:`solve_selected_numba` solves the per-unit selected-voxel ridge systems of a batch of
units: unit by unit, a ``nogil`` kernel gathers the lower triangle of ``G[S, S]`` into a
column-major workspace that stays in cache, factorises it with LAPACK ``?potrf`` and solves
with two BLAS ``?trsv``, called through function pointers (the LAPACK of
:func:`bids_decode.backends.lapack.lapack_provider`) so no Python runs per unit. Threads run
the kernel on different unit batches. :func:`select_refined` picks the top-k voxels from
float32 scores exactly as the float64 ranking does.

Every solver returns a status per unit: 0 (solved), a positive LAPACK ``info`` (the block is
not positive definite) or -1 (ill-conditioned: the squared ratio of the largest to the smallest
Cholesky diagonal exceeds ``cond_max``; see :data:`bids_decode.backends.base.ILL_CONDITIONED`);
the caller redoes such units in float64. Without numba these functions are not defined
(:func:`~bids_decode.backends.numba_cache.have_numba`) and the CPU backend takes the torch
kernel (:mod:`bids_decode.backends.torch_kernels`).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends import cpu_topk
from bids_decode.backends.lapack import kernel_routines
from bids_decode.backends.numba_cache import numba, numba_cache_dir

LOGGER = logging.getLogger(__name__)

#: units whose blocks are gathered together (work memory: SUB_BATCH * (k + 1)^2 per thread)
SUB_BATCH = 32

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
    for dtype in (np.float32, np.float64):
        cpu_topk.top_units(rng.standard_normal((3, 4)).astype(dtype), np.ones(4, dtype), 0,
                  np.empty((3, 2), dtype), np.empty((3, 2), np.int64), np.zeros(3, np.int64))
    return {f.__name__: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
            for f in (_solve_batch, _refine, cpu_topk._top_units)}


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
    potrf, trsv = kernel_routines(dtype.char)
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

