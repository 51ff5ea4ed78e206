"""The compiled (numba) kernel of the encoding model's selection: each voxel's running top k.

:func:`top_units` offers a block of consecutive units to every voxel's heap of its ``k`` best
units so far (highest absolute correlation; equal scores keep the earlier unit), so a layer of
millions of units is ranked in one pass with ``k`` units per voxel in memory. ``nogil``: threads
run it on different voxel blocks.
"""

from __future__ import annotations

import logging

from bids_decode.backends.numba_cache import numba, numba_cache_dir

LOGGER = logging.getLogger(__name__)

if numba is not None:
    _jit = numba.njit(nogil=True, cache=numba_cache_dir() is not None)

    @_jit
    def _worse(s_a, u_a, s_b, u_b):
        # (s_a, u_a) ranks below (s_b, u_b): a lower score, or an equal score and a later unit
        return s_a < s_b or (s_a == s_b and u_a > u_b)

    @_jit
    def _top_units(scores, inv_norm, unit0, top_s, top_u, count):
        # scores (V, B) raw products of V voxels with B consecutive units unit0, unit0 + 1, ...;
        # inv_norm (B,) each unit's 1 / norm (0 for a constant unit); top_s, top_u (V, k): one
        # heap per voxel whose root is its worst kept unit (lowest |r|, then latest unit);
        # count (V,) how many each heap holds. A unit enters a full heap only when it ranks
        # above the root, so equal scores keep the earlier unit.
        n_vox, n_units = scores.shape
        k = top_s.shape[1]
        for v in range(n_vox):
            hs = top_s[v]
            hu = top_u[v]
            c = count[v]
            for i in range(n_units):
                s = abs(scores[v, i]) * inv_norm[i]
                u = unit0 + i
                if c < k:  # not full: sift the new unit up from the end
                    j = c
                    c += 1
                    while j > 0:
                        p = (j - 1) >> 1
                        if not _worse(s, u, hs[p], hu[p]):
                            break
                        hs[j] = hs[p]
                        hu[j] = hu[p]
                        j = p
                    hs[j] = s
                    hu[j] = u
                elif _worse(hs[0], hu[0], s, u):  # replaces the root: sift it down
                    j = 0
                    while True:
                        ch = 2 * j + 1
                        if ch >= k:
                            break
                        if ch + 1 < k and _worse(hs[ch + 1], hu[ch + 1], hs[ch], hu[ch]):
                            ch += 1
                        if not _worse(hs[ch], hu[ch], s, u):
                            break
                        hs[j] = hs[ch]
                        hu[j] = hu[ch]
                        j = ch
                    hs[j] = s
                    hu[j] = u
            count[v] = c


def top_units(scores, inv_norm, unit0, top_s, top_u, count) -> None:
    """Offer a block of consecutive units to each voxel's running top k (in place, one thread).

    Each voxel keeps the ``k`` units of highest ``|score| * inv_norm`` seen so far in a heap
    whose root is its worst kept unit; equal scores keep the earlier unit, so offering the
    units of a layer in order, in blocks of any size, leaves the same units.

    Parameters
    ----------
    scores : ndarray of shape (n_voxels, n_units), float32 or float64, C-contiguous
        Products of each voxel's centred unit-norm responses with the units' features.
    inv_norm : ndarray of shape (n_units,), same dtype
        ``1 / ||centred unit||`` (0 for a constant unit: never ranked above another).
    unit0 : int
        Index of the first unit of the block in the layer.
    top_s : ndarray of shape (n_voxels, k), same dtype
        Scores of the kept units (heap order), updated in place.
    top_u : ndarray of shape (n_voxels, k), int64
        Their unit indices, updated in place.
    count : ndarray of shape (n_voxels,), int64
        Units kept per voxel (< k until k units were offered), updated in place.
    """
    _top_units(scores, inv_norm, int(unit0), top_s, top_u, count)
