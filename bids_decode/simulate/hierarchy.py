"""``simulate --hierarchy``: two networks, and voxels that carry one planted layer each.

The brain: the images' latent vector ``z`` is split into one block of :data:`BLOCK` dimensions
per layer of :data:`LAYERS` (six blocks). Layer ``l`` of ``L`` belongs to the ROI
``layer_roi(l) = round(4 l / (L - 1))`` of :data:`BH_ROIS <bids_decode.evaluation.bhscore.BH_ROIS>`
(conv1 V1, conv2 V2, conv3 and conv4 V3, fc6 V4, fc7 HVC). Each signal-carrying voxel of ROI
``r`` carries exactly one block, drawn (seeded, per subject) among the blocks of the layers of
``r``, with a unit-norm loading, so every such voxel carries the same signal variance; the
other ROI voxels carry noise only (block -1).

The networks (:data:`NETWORKS`), six layers each with the same unit shapes. Layer ``l`` of a
network is built from block ``LAYER_BLOCKS[network][l]``: that share of its units (the rest
from blocks drawn uniformly) is a noisy linear function of that block.

- ``hierarchical``: layer ``l`` from block ``l`` (90% of its units). A unit's planted preferred
  ROI is ``layer_roi`` of its block; a voxel's planted best layer (encoding) is its block.
- ``mixed``: layer ``l`` from block ``(l + 3) mod 6`` (60% of its units): the first three
  layers carry the late blocks and the last three the early ones, so the layers are out of
  order for decoding and encoding alike. A voxel's planted best layer is the layer built from
  its block.

So ``hierarchical`` has the higher brain hierarchy score, decoding and encoding, by
construction. The truth files (``stimuli/truth_<network>.h5``, written by
:func:`bids_decode.simulate.dataset.simulate_dataset`) hold, besides ``decodability/<layer>``:

- ``planted_roi/<layer>`` (unit_shape) int64: the unit's planted preferred ROI (index into
  the root attribute ``rois``);
- ``planted_block/<layer>`` (unit_shape) int64: the block the unit is built from;
- ``voxels/sub-<L>/`` one row per ROI voxel of the subject (the voxels of any mask):
  ``voxel_index`` (n,) int64, flat C-order index into the masks' grid (root attribute
  ``grid_shape``); ``roi`` (n,) int64 into ``rois``; ``block`` (n,) int64 (-1: noise only);
  ``best_layer`` (n,) int64, the planted best layer of this network, index into the root
  attribute ``layers`` (-1: noise only);
- root attributes ``layers`` (layer names, in order) and ``layer_blocks`` (the block of each
  layer in this network).
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.evaluation.bhscore import BH_ROIS

LOGGER = logging.getLogger(__name__)

#: Layer name -> unit shape (the same for both networks).
LAYERS = {"conv1": (4, 3, 5), "conv2": (6, 10), "conv3": (60,), "conv4": (60,), "fc6": (60,),
          "fc7": (60,)}
#: Network name -> share of each layer's units built from the layer's block.
NETWORKS = {"hierarchical": 0.9, "mixed": 0.6}
#: Network name -> the latent block each layer is built from (layer order of LAYERS).
LAYER_BLOCKS = {"hierarchical": tuple(range(len(LAYERS))),
                "mixed": tuple((i + len(LAYERS) // 2) % len(LAYERS) for i in range(len(LAYERS)))}
#: Latent dimensions per block; one block per layer.
BLOCK = 4
N_LATENT = BLOCK * len(LAYERS)
#: Mask parts of each ROI (simulate's ds001246 masks).
ROI_PARTS = {"V1": ("V1d", "V1v"), "V2": ("V2d", "V2v"), "V3": ("V3d", "V3v"), "V4": ("hV4",),
             "HVC": ("HVC",)}


def layer_roi(layer_index: int, n_layers: int) -> int:
    """The planted ROI (index into BH_ROIS) of a layer (and of its block): V1 first ... HVC
    last."""
    return int(round((len(BH_ROIS) - 1) * layer_index / max(1, n_layers - 1)))


def voxel_rois(masks: dict, roi_any: np.ndarray) -> np.ndarray:
    """ROI index (into BH_ROIS) of each voxel of ``roi_any`` (-1: none).

    Parameters
    ----------
    masks : dict name -> bool array
        simulate's masks (``LH_V1d``, ...).
    roi_any : bool array
        The voxels that can carry signal (all ROIs).

    Returns
    -------
    ndarray of shape (n_roi_voxels,), int64
    """
    flat = np.flatnonzero(roi_any.ravel())
    out = np.full(flat.size, -1, dtype=np.int64)
    for i, roi in enumerate(BH_ROIS):
        m = np.zeros(roi_any.shape, bool)
        for part in ROI_PARTS[roi]:
            for hemi in ("LH", "RH"):
                m |= masks[f"{hemi}_{part}"]
        out[np.isin(flat, np.flatnonzero(m.ravel()))] = i
    return out


def voxel_blocks(rois: np.ndarray, signal_share: float, rng) -> np.ndarray:
    """The block each voxel carries: one of its ROI's layers' blocks, or -1 (noise only).

    Parameters
    ----------
    rois : ndarray of shape (n_roi_voxels,), int
        ROI index of each voxel (:func:`voxel_rois`; -1: no ROI, never signal).
    signal_share : float
        Share of the voxels that carry signal.

    Returns
    -------
    ndarray of shape (n_roi_voxels,), int64
    """
    n_layers = len(LAYERS)
    choices = [[b for b in range(n_layers) if layer_roi(b, n_layers) == r]
               for r in range(len(BH_ROIS))]
    pick = rng.random(rois.size)
    blocks = np.full(rois.size, -1, dtype=np.int64)
    for r, options in enumerate(choices):
        cols = rois == r
        blocks[cols] = np.asarray(options)[(pick[cols] * len(options)).astype(np.int64)]
    blocks[rng.random(rois.size) >= signal_share] = -1
    return blocks


def block_loadings(blocks: np.ndarray, rng) -> np.ndarray:
    """Voxel loadings ``A`` of shape (N_LATENT, n_roi_voxels): a voxel loads on its block only,
    with a random unit-norm direction (zero for block -1)."""
    A = np.zeros((N_LATENT, blocks.size))
    for b in range(len(LAYERS)):
        cols = np.flatnonzero(blocks == b)
        a = rng.standard_normal((BLOCK, cols.size))
        A[b * BLOCK:(b + 1) * BLOCK, cols] = a / np.linalg.norm(a, axis=0)
    return A


def best_layers(blocks: np.ndarray, network: str) -> np.ndarray:
    """The planted best layer (index into LAYERS) of each voxel for ``network``: the layer built
    from its block (-1 for block -1).

    Parameters
    ----------
    blocks : ndarray of shape (n_voxels,), int
    network : str
        A key of :data:`LAYER_BLOCKS`.

    Returns
    -------
    ndarray of shape (n_voxels,), int64
    """
    layer_of_block = np.argsort(LAYER_BLOCKS[network])
    return np.where(blocks >= 0, layer_of_block[np.maximum(blocks, 0)], -1).astype(np.int64)


def plant_networks(Z: np.ndarray, rng) -> dict[str, tuple[dict, dict, dict, dict]]:
    """Features of the two networks.

    Parameters
    ----------
    Z : ndarray of shape (n_images, N_LATENT)

    Returns
    -------
    dict network -> (feats, rho, planted, block)
        ``feats``: layer -> float32 (n_images, *unit_shape); ``rho``: layer -> planted
        decodability (unit_shape); ``planted``: layer -> planted preferred ROI index
        (unit_shape); ``block``: layer -> the block each unit is built from (unit_shape).
    """
    out = {}
    n_img = Z.shape[0]
    n_layers = len(LAYERS)
    roi_of_block = np.array([layer_roi(b, n_layers) for b in range(n_layers)])
    for net, share in NETWORKS.items():
        feats, rhos, planted, blocks = {}, {}, {}, {}
        for li, (layer, shape) in enumerate(LAYERS.items()):
            n = int(np.prod(shape))
            block = np.where(rng.random(n) < share, LAYER_BLOCKS[net][li],
                             rng.integers(0, n_layers, n))
            rho = rng.uniform(0.6, 0.95, n)
            Y = np.empty((n_img, n))
            for u in range(n):
                b = rng.standard_normal(BLOCK)
                s = Z[:, block[u] * BLOCK:(block[u] + 1) * BLOCK] @ b
                s = (s - s.mean()) / s.std()
                Y[:, u] = rho[u] * s + np.sqrt(1 - rho[u] ** 2) * rng.standard_normal(n_img)
            feats[layer] = (Y * rng.uniform(0.5, 2.0, n)).reshape(n_img, *shape).astype(
                np.float32)
            rhos[layer] = rho.reshape(shape)
            planted[layer] = roi_of_block[block].reshape(shape)
            blocks[layer] = block.reshape(shape)
        out[net] = (feats, rhos, planted, blocks)
    return out
