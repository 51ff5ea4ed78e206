"""Thread tasks on the unit grid: balanced and aligned."""

from __future__ import annotations

from bids_decode.decoding import UNIT_BLOCK
from bids_decode.decoding.streaming import _task_size


def test_task_sizes_balance_threads():
    for n_units, batch, jobs in [(4000, 2739, 2), (300000, 2739, 2), (129, 128, 2), (7, 16, 2),
                                 (5000, 2739, 1), (1, 16, 2), (70000, 65536, 2)]:
        size = _task_size(n_units, batch, jobs)
        blocks, per_task = -(-n_units // UNIT_BLOCK), size // UNIT_BLOCK
        n_tasks = -(-blocks // per_task)
        assert size % UNIT_BLOCK == 0  # tasks start and end on the unit grid
        assert UNIT_BLOCK <= size <= max(UNIT_BLOCK, batch)
        assert n_tasks * per_task - blocks < n_tasks  # tasks equal to within one block
        if jobs > 1 and n_units >= 4 * jobs * 128:
            assert n_tasks >= 4 * jobs
