"""The compiled (numba) kernel of the encoding model's selection: each voxel's running top k.

:func:`top_units` offers a block of consecutive units to every voxel's heap of its ``k`` best
units so far (highest absolute correlation; equal scores keep the earlier unit), so a layer of
millions of units is ranked in one pass with ``k`` units per voxel in memory. ``nogil``: threads
run it on different voxel blocks. :class:`TopUnits` holds every voxel's heap (the CPU
backend's state of the selection pass, :meth:`bids_decode.backends.Backend.top_units`).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends.numba_cache import numba, numba_cache_dir
from bids_decode.utils.grid import UNIT_BLOCK

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


class TopUnits:
    """The running top k units of every voxel, on the host (the state of the selection pass).

    Parameters
    ----------
    vz_blocks : list of ndarray of shape (n_block_voxels, n_train)
        The voxels centred and scaled to unit norm, one C-contiguous array per voxel block
        (:func:`bids_decode.encoding.selection.standardized_voxels`).
    k : int
        Units kept per voxel; 0 keeps every unit (the state then grows with the layer).
    """

    def __init__(self, vz_blocks, k: int):
        self.vz = vz_blocks
        self.v0 = np.cumsum([0] + [b.shape[0] for b in vz_blocks])
        self.k = int(k)
        cap = self.k if self.k else UNIT_BLOCK
        self.scores = np.empty((int(self.v0[-1]), cap), dtype=vz_blocks[0].dtype)
        self.units = np.empty((int(self.v0[-1]), cap), dtype=np.int64)
        self.count = np.zeros(int(self.v0[-1]), dtype=np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes held (the voxels and the heaps)."""
        return (sum(b.nbytes for b in self.vz) + self.scores.nbytes + self.units.nbytes
                + self.count.nbytes)

    def _grow(self, n_more: int) -> None:
        """Room for ``n_more`` more units when every unit is kept (``k`` = 0)."""
        need = int(self.count.max(initial=0)) + n_more
        if self.k or need <= self.scores.shape[1]:
            return
        cap = max(need, 2 * self.scores.shape[1])
        for name in ("scores", "units"):
            old = getattr(self, name)
            new = np.empty((old.shape[0], cap), dtype=old.dtype)
            new[:, :old.shape[1]] = old
            setattr(self, name, new)

    def offer(self, start: int, fc: np.ndarray, inv_norm: np.ndarray, pmap) -> None:
        """Offer the centred units ``start:start + n`` to every voxel.

        Parameters
        ----------
        start : int
            Layer index of the first unit (on the unit grid).
        fc : ndarray of shape (n, n_train), C-contiguous, the state's dtype
        inv_norm : ndarray of shape (n,)
            ``1 / ||fc_u||`` (0 for a constant unit).
        pmap : callable
            ``pmap(fn, items)`` runs the voxel blocks' tasks
            (:func:`bids_decode.encoding.chunks.thread_map`).
        """
        self._grow(fc.shape[0])
        starts = range(0, fc.shape[0], UNIT_BLOCK)

        def task(b):
            vz = self.vz[b]
            v0, v1 = self.v0[b], self.v0[b + 1]
            for s in starts:
                top_units(vz @ fc[s:s + UNIT_BLOCK].T, inv_norm[s:s + UNIT_BLOCK], start + s,
                          self.scores[v0:v1], self.units[v0:v1], self.count[v0:v1])

        pmap(task, range(len(self.vz)))

    def index(self) -> np.ndarray:
        """The kept units of each voxel by decreasing score (then by unit).

        Returns
        -------
        ndarray of shape (n_voxels, n_kept), int64
        """
        n = int(self.count[0]) if len(self.count) else 0
        s, u = self.scores[:, :n], self.units[:, :n]
        order = np.lexsort((u, -s), axis=-1)
        return np.take_along_axis(u, order, axis=1)
