"""The unit grid: how the units of a layer are split into work, the same way for every split.

Products over units (the decoder's correlation GEMM, the pattern sums of the evaluation) are
computed on fixed blocks of :data:`UNIT_BLOCK` units counted from a layer's first unit, and
every other step is per unit. Batches, thread tasks, chunks and unit shards start on this grid,
so on one machine a unit's results are the same bits however the work is split (see the
README's "Reproducibility").
"""

from __future__ import annotations

#: Units per block of the grid.
UNIT_BLOCK = 64


def shard_range(n_units: int, shard: tuple[int, int], block: int = UNIT_BLOCK
                ) -> tuple[int, int]:
    """Flattened unit range ``[lo, hi)`` of shard ``i`` of ``N`` (1-based).

    Shards are whole, consecutive runs of grid blocks of ``block`` items (the units'
    :data:`UNIT_BLOCK`, or the encoding models' voxel block), as equal in size as the blocks
    allow (a layer of fewer than ``N`` blocks leaves some shards empty).
    """
    i, n = shard
    blocks = -(-n_units // block)
    lo = min(n_units, (blocks * (i - 1) // n) * block)
    hi = min(n_units, (blocks * i // n) * block)
    return lo, hi
