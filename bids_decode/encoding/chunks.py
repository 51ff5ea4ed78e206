"""The unit chunks a layer is streamed in, checked at the boundary, and the threads they run on.

The caller hands the encoding model a zero-argument callable returning a new iterator of
``(start, stop, F_train, F_test)``; :func:`checked_chunks` checks every chunk as it arrives
(consecutive, on the unit grid, the right shapes, finite values), so a bad features file stops
the run with a :class:`~bids_decode.errors.DataError` that says which units are wrong.
:func:`thread_map` runs tasks on ``n_jobs`` threads with single-threaded BLAS, so that a
product's bits do not depend on how many threads share the work.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bids_decode.errors import DataError, UsageError
from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)


def checked_chunks(chunks, n_train: int, n_test: int | None = None):
    """Iterate over ``chunks()``, checking each chunk.

    Parameters
    ----------
    chunks : callable
        ``chunks()`` returns a new iterator of ``(start, stop, F_train, F_test)``: consecutive
        unit chunks of one layer, the first starting at unit 0, every ``start`` on the unit
        grid (a multiple of :data:`~bids_decode.utils.grid.UNIT_BLOCK`).
    n_train : int
        Training samples (rows of ``V_train``).
    n_test : int or None
        Test samples; None takes the first chunk's.

    Yields
    ------
    start, stop : int
    F_train : ndarray of shape (n_train, stop - start)
    F_test : ndarray of shape (n_test, stop - start)
    """
    if not callable(chunks):
        raise UsageError("chunks must be a zero-argument callable returning a new iterator of "
                         f"(start, stop, F_train, F_test); got {type(chunks).__name__}.")
    expected = 0
    for item in chunks():
        start, stop, F_train, F_test = item
        start, stop = int(start), int(stop)
        if start != expected or start % UNIT_BLOCK or stop <= start:
            raise UsageError(
                f"Unit chunks must be consecutive, start on the {UNIT_BLOCK}-unit grid and be "
                f"non-empty: expected a chunk starting at unit {expected}, got [{start}, {stop}).")
        F_train, F_test = np.asarray(F_train), np.asarray(F_test)
        n_test = F_test.shape[0] if n_test is None and F_test.ndim == 2 else n_test
        for name, F, rows in (("F_train", F_train, n_train), ("F_test", F_test, n_test)):
            if F.shape != (rows, stop - start):
                raise DataError(f"The features of units [{start}, {stop}) have {name} of shape "
                                f"{F.shape}; expected ({rows}, {stop - start}) (samples x "
                                "units). Check the features file against the samples.")
            if not np.isfinite(F).all():
                bad = start + int(np.flatnonzero(~np.isfinite(F).all(axis=0))[0])
                raise DataError(f"The features of units [{start}, {stop}) contain NaN or "
                                f"infinite values in {name} (first at unit {bad}); extract "
                                "the features again or leave that layer out.")
        expected = stop
        yield start, stop, F_train, F_test
    if expected == 0:
        raise DataError("The layer has no units (chunks() yielded nothing); check the "
                        "features file.")


@contextlib.contextmanager
def thread_map(n_jobs: int):
    """A ``map(fn, items) -> list`` on ``n_jobs`` threads, BLAS limited to one thread each.

    One thread (``n_jobs=1``) runs the tasks in the caller's thread.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if n_jobs <= 1:
            yield lambda fn, items: [fn(x) for x in items]
            return
        with ThreadPoolExecutor(n_jobs) as pool:
            yield lambda fn, items: list(pool.map(fn, items))
