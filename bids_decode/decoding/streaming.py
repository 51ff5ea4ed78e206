"""Streaming the decoder over unit chunks, in grid-aligned tasks on a pool of threads.

One code path (:func:`map_units`) serves the participant level's predictions
(:func:`iter_decode`, :func:`predict_chunk`, :func:`decode_units`) and the estimator's fit
(:func:`fit_units`): chunks are re-cut to the :data:`~bids_decode.utils.grid.UNIT_BLOCK` grid
(:func:`_regrid`), split into tasks (:func:`_task_size`) and run on ``n_jobs`` threads with
single-threaded BLAS (:class:`_UnitPool`), so a unit's result is the same bits whatever the
chunking, batch size, thread count or memory budget.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bids_decode.backends import blockwise
from bids_decode.decoding.design import Design, check_y, prepare_design
from bids_decode.decoding.selection import n_selected, uses_all
from bids_decode.decoding.solvers import fit_chunk, hat_matrix, solve_selected
from bids_decode.errors import UsageError
from bids_decode.utils.docs import fill_doc
from bids_decode.utils.grid import UNIT_BLOCK

#: Default memory budget for one batch of units, in bytes (all threads together).
DEFAULT_MEM_BYTES = 1 << 30
#: smallest thread task when a chunk is split for load balance (its GEMM stays efficient)
_MIN_TASK = 128


@fill_doc
def batch_size_for(design: Design, n_voxels: int, mem_bytes=DEFAULT_MEM_BYTES,
                   n_jobs: int = 1) -> int:
    """Units per thread task so that ``n_jobs`` tasks stay within ``mem_bytes``.

    The memory model is the design's backend's
    (:meth:`bids_decode.backends.Backend.batch_size_for`).

    Parameters
    ----------
    design : Design
    n_voxels : int
        Voxels per unit (0: all).
    %(mem_bytes)s
    n_jobs : int
        Threads (resolved).

    Returns
    -------
    int
    """
    p = design.n_voxels
    return design.backend.batch_size_for(design.X.shape[0], p, n_selected(n_voxels, p),
                                         design.dtype.itemsize, mem_bytes, n_jobs)


@fill_doc
def map_units(design: Design, Y_chunks, task, n_voxels: int, empty, *, n_jobs=None,
              batch_size=None, mem_bytes=DEFAULT_MEM_BYTES):
    """``task`` over grid-aligned unit tasks of a stream of chunks, on the backend's threads.

    Parameters
    ----------
    design : Design
    Y_chunks : iterable of ndarray of shape (n_samples, n_units_i)
        Consecutive unit chunks; the first starts on the grid.
    task : callable
        ``task(Y)`` for ``Y`` of shape (n_samples, n) returns an array of shape (n_out, n)
        or a tuple of arrays whose last axis is the units.
    n_voxels : int
        Voxels per unit (for the memory model).
    empty : ndarray or tuple of ndarray
        ``task``'s output for zero units.
    %(n_jobs)s
    %(batch_size)s
    %(mem_bytes)s

    Yields
    ------
    ndarray or tuple of ndarray
        ``task``'s output for each input chunk, in order.
    """
    n_jobs = design.backend.n_threads(n_jobs)
    if batch_size is None:
        batch_size = batch_size_for(design, n_voxels, mem_bytes, n_jobs)
    checked = (check_y(design, Y) for Y in Y_chunks)
    with _UnitPool(n_jobs) as pool:
        yield from _regrid(checked, lambda Y: _cat(pool.map(task, Y, batch_size)), empty)


@fill_doc
def iter_decode(design: Design, Y_chunks, X_test, n_voxels: int, *, n_jobs=None,
                batch_size=None, mem_bytes=DEFAULT_MEM_BYTES):
    """Stream predictions for chunks of units: one fit per unit, nothing kept but predictions.

    Parameters
    ----------
    design : Design
        From :func:`prepare_design` on the training data.
    Y_chunks : iterable of ndarray of shape (n_samples, n_units_i)
        Training targets, in unit chunks (e.g. read from HDF5 one block at a time).
    X_test : ndarray of shape (n_test, n_voxels)
    %(n_voxels)s
    %(n_jobs)s
    %(batch_size)s
    %(mem_bytes)s

    Yields
    ------
    ndarray of shape (n_test, n_units_i)
        Predictions for each chunk, in order, in the design's dtype.
    """
    X_test = np.asarray(X_test)
    if X_test.ndim != 2 or X_test.shape[1] != design.n_voxels:
        raise UsageError(f"X_test must have shape (n_test, {design.n_voxels}); got {X_test.shape}.")
    empty = np.empty((X_test.shape[0], 0), dtype=design.dtype)
    if uses_all(n_voxels, design.n_voxels):
        # one small GEMM per grid block, BLAS threads as they are
        H = hat_matrix(design, X_test)
        checked = (check_y(design, Y) for Y in Y_chunks)
        yield from _regrid(checked, lambda Y: np.ascontiguousarray(blockwise(
            lambda yt: (H @ yt.T).T, Y, H.shape[0], design.dtype).T), empty)
        return
    xt = np.ascontiguousarray(np.asarray(X_test, dtype=design.dtype).T)  # (n_voxels, n_test)

    def task(Yb):
        return solve_selected(design, Yb, int(n_voxels), xt, keep_coef=False)[3].T

    yield from map_units(design, Y_chunks, task, n_voxels, empty, n_jobs=n_jobs,
                         batch_size=batch_size, mem_bytes=mem_bytes)


@fill_doc
def fit_units(design: Design, Y, n_voxels: int, *, n_jobs=None, batch_size=None,
              mem_bytes=DEFAULT_MEM_BYTES):
    """Fit every unit of ``Y`` (the estimator's fit), on the same tasks as :func:`iter_decode`.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    %(n_voxels)s
    %(n_jobs)s
    %(batch_size)s
    %(mem_bytes)s

    Returns
    -------
    coef, index, intercept
        As :func:`bids_decode.decoding.solvers.fit_chunk`.
    """
    if uses_all(n_voxels, design.n_voxels):
        return fit_chunk(design, Y, n_voxels)
    k = int(n_voxels)

    def task(Yb):
        coef, index, intercept, _ = solve_selected(design, Yb, k, None)
        return coef.T, index.T, intercept[None]

    empty = (np.empty((k, 0), design.dtype), np.empty((k, 0), np.int64),
             np.empty((1, 0), design.dtype))
    (coef, index, intercept), = map_units(design, [Y], task, k, empty, n_jobs=n_jobs,
                                          batch_size=batch_size, mem_bytes=mem_bytes)
    return np.ascontiguousarray(coef.T), np.ascontiguousarray(index.T), intercept[0].copy()


@fill_doc
def predict_chunk(design: Design, Y, X_test, n_voxels: int, *, n_jobs=None,
                  batch_size=None, mem_bytes=DEFAULT_MEM_BYTES) -> np.ndarray:
    """Fit a batch of units and predict the test samples.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    X_test : ndarray of shape (n_test, n_voxels)
    n_voxels : int
    %(n_jobs)s
    %(batch_size)s
    %(mem_bytes)s

    Returns
    -------
    ndarray of shape (n_test, n_units)
    """
    Y = check_y(design, Y)
    return np.concatenate(list(iter_decode(design, [Y], X_test, n_voxels, n_jobs=n_jobs,
                                           batch_size=batch_size, mem_bytes=mem_bytes)),
                          axis=1)


@fill_doc
def decode_units(X_train, Y, X_test, alpha=100.0, n_voxels=500, *, device="cpu",
                 dtype=np.float32, mem_bytes=DEFAULT_MEM_BYTES, n_jobs=None,
                 batch_size=None) -> np.ndarray:
    """Decode every unit: fit one selected-voxel ridge per unit and predict the test samples.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, n_voxels)
    Y : ndarray of shape (n_samples, n_units), or iterable of ndarray (n_samples, n_units_i)
        Training targets; an iterable is consumed chunk by chunk (memory stays bounded).
    X_test : ndarray of shape (n_test, n_voxels)
    alpha : float, default 100.0
    n_voxels : int, default 500
        Voxels selected per unit; 0 = all voxels.
    %(device)s
    dtype : float32 or float64, default float32
    %(mem_bytes)s
    %(n_jobs)s
    %(batch_size)s

    Returns
    -------
    ndarray of shape (n_test, n_units)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 30)), rng.standard_normal((40, 7))
    >>> decode_units(X, Y, X[:5], alpha=1.0, n_voxels=5).shape
    (5, 7)
    """
    design = prepare_design(X_train, alpha, dtype=dtype, device=device)
    chunks = [Y] if isinstance(Y, np.ndarray) else Y
    return np.concatenate(list(iter_decode(design, chunks, X_test, n_voxels, n_jobs=n_jobs,
                                           batch_size=batch_size, mem_bytes=mem_bytes)), axis=1)


# ----------------------------------------------------------------------------------------
# the unit grid, tasks and threads


def _width(out) -> int:
    return (out[0] if isinstance(out, tuple) else out).shape[-1]


def _cut(out, start, stop):
    """Units ``start:stop`` (the last axis) of an output or a tuple of outputs."""
    if isinstance(out, tuple):
        return tuple(o[..., start:stop] for o in out)
    return out[..., start:stop]


def _cat(parts):
    """Outputs (or tuples of outputs) joined along the units (the last axis)."""
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p, axis=-1) for p in zip(*parts, strict=True))
    return np.concatenate(parts, axis=-1)


def _regrid(chunks, fn, empty):
    """``fn`` over a stream of unit chunks re-cut to the :data:`UNIT_BLOCK` grid.

    Parameters
    ----------
    chunks : iterable of ndarray of shape (n_samples, n_units_i)
        Consecutive unit chunks; the first starts on the grid.
    fn : callable
        ``fn(Y)`` for ``Y`` of shape (n_samples, n) whose first column is on the grid and
        whose width is a multiple of ``UNIT_BLOCK`` (but for the stream's last piece); returns
        an array of shape (n_out, n), or a tuple of arrays whose last axis has length n.
    empty : ndarray of shape (n_out, 0), or tuple of such
        The output of an empty chunk.

    Yields
    ------
    ndarray of shape (n_out, n_units_i), or tuple of such
        ``fn``'s output for each input chunk, in order. Chunks already cut on the grid pass
        through without copies.
    """
    widths: list[int] = []  # input chunks not yet yielded
    done: list = []  # outputs not yet yielded
    carry = None  # input columns past the last full block

    def ready():
        while widths and sum(_width(d) for d in done) >= widths[0]:
            w = widths.pop(0)
            if w == 0:
                yield empty
                continue
            out = done[0] if _width(done[0]) == w else _cat(done)
            done[:] = [_cut(out, w, None)] if _width(out) > w else []
            yield _cut(out, 0, w)

    for Y in chunks:
        widths.append(Y.shape[1])
        if carry is not None:
            Y = np.concatenate([carry, Y], axis=1)
        n_full = Y.shape[1] // UNIT_BLOCK * UNIT_BLOCK
        if n_full:
            done.append(fn(Y[:, :n_full]))
        carry = Y[:, n_full:] if n_full < Y.shape[1] else None
        yield from ready()
    if carry is not None:
        done.append(fn(carry))
    yield from ready()


class _UnitPool:
    """Runs a function over grid-aligned unit tasks on ``n_jobs`` threads, BLAS single-threaded.

    One thread (a GPU, or ``n_jobs=1``) runs the tasks in the caller's thread.
    """

    def __init__(self, n_jobs: int):
        self.n_jobs = n_jobs
        self._stack = contextlib.ExitStack()
        self._map = map

    def __enter__(self):
        from threadpoolctl import threadpool_limits

        # one BLAS thread each: OpenBLAS's threaded potrf at this size is many times slower,
        # and a GEMM's bits may depend on its thread count
        self._stack.enter_context(threadpool_limits(1))
        if self.n_jobs > 1:
            self._map = self._stack.enter_context(ThreadPoolExecutor(self.n_jobs)).map
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def map(self, fn, Y, batch_size: int) -> list:
        """``[fn(Y[:, s:e]) ...]`` over tasks whose bounds are multiples of ``UNIT_BLOCK``."""
        size = _task_size(Y.shape[1], batch_size, self.n_jobs)
        return list(self._map(fn, [Y[:, s:s + size] for s in range(0, Y.shape[1], size)]))


def _task_size(n_units: int, batch_size: int, n_jobs: int) -> int:
    """Units per thread task: a multiple of ``UNIT_BLOCK``, about ``batch_size`` at most, and
    small enough that a chunk makes at least four tasks per thread (so no thread idles on the
    last one) where the grid allows, equal in size."""
    blocks = -(-n_units // UNIT_BLOCK)
    per_task = max(1, int(batch_size) // UNIT_BLOCK)
    if n_jobs > 1:
        per_task = min(per_task, max(_MIN_TASK // UNIT_BLOCK, -(-blocks // (4 * n_jobs))))
    n_tasks = -(-blocks // per_task)
    return max(1, -(-blocks // max(1, n_tasks))) * UNIT_BLOCK
