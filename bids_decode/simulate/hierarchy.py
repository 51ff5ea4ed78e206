"""``simulate --hierarchy``: two networks whose layers are decoded best from a planted ROI.

The brain: the images' latent vector ``z`` is split into one block per ROI of
:data:`bids_decode.bhscore.BH_ROIS` (V1, V2, V3, V4, HVC); a voxel of an ROI carries only its
ROI's block. So a unit built from block ``r`` is decodable from ROI ``r`` and from no other:
its *planted* preferred ROI is ``r``.

The networks (:data:`NETWORKS`): six layers each; layer ``l`` of ``L`` has the planted ROI
``round(4 l / (L - 1))`` (the first layer V1, the last HVC). In network ``hierarchical`` 90%
of a layer's units are built from that ROI's block (the rest from a random ROI's); in
``mixed`` 35%. So ``hierarchical`` has the higher brain hierarchy score, by construction.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.evaluation.bhscore import BH_ROIS

LOGGER = logging.getLogger(__name__)

#: Network name -> share of each layer's units planted on the layer's ROI.
NETWORKS = {"hierarchical": 0.9, "mixed": 0.35}
#: Layer name -> unit shape (the same for both networks).
LAYERS = {"conv1": (4, 3, 5), "conv2": (6, 10), "conv3": (60,), "conv4": (60,), "fc6": (60,),
          "fc7": (60,)}
#: Latent dimensions per ROI.
BLOCK = 4
N_LATENT = BLOCK * len(BH_ROIS)
#: Mask parts of each ROI (simulate's ds001246 masks).
ROI_PARTS = {"V1": ("V1d", "V1v"), "V2": ("V2d", "V2v"), "V3": ("V3d", "V3v"), "V4": ("hV4",),
             "HVC": ("HVC",)}


def layer_roi(layer_index: int, n_layers: int) -> int:
    """The planted ROI (index into BH_ROIS) of a layer: V1 first ... HVC last."""
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


def roi_loadings(rois: np.ndarray, signal_share: float, rng) -> np.ndarray:
    """Voxel loadings ``A`` of shape (N_LATENT, n_roi_voxels): a voxel of ROI r loads only on
    r's block; ``signal_share`` of the voxels carry signal."""
    A = np.zeros((N_LATENT, rois.size))
    for i in range(len(BH_ROIS)):
        cols = np.flatnonzero(rois == i)
        A[i * BLOCK:(i + 1) * BLOCK, cols] = (rng.standard_normal((BLOCK, cols.size))
                                             / np.sqrt(BLOCK))
    return A * (rng.random(rois.size) < signal_share)


def plant_networks(Z: np.ndarray, rng) -> dict[str, tuple[dict, dict, dict]]:
    """Features of the two networks.

    Parameters
    ----------
    Z : ndarray of shape (n_images, N_LATENT)

    Returns
    -------
    dict network -> (feats, rho, planted)
        ``feats``: layer -> float32 (n_images, *unit_shape); ``rho``: layer -> planted
        decodability (unit_shape); ``planted``: layer -> planted preferred ROI index
        (unit_shape).
    """
    out = {}
    n_img = Z.shape[0]
    for net, share in NETWORKS.items():
        feats, rhos, planted = {}, {}, {}
        for li, (layer, shape) in enumerate(LAYERS.items()):
            n = int(np.prod(shape))
            roi = np.where(rng.random(n) < share, layer_roi(li, len(LAYERS)),
                           rng.integers(0, len(BH_ROIS), n))
            rho = rng.uniform(0.6, 0.95, n)
            Y = np.empty((n_img, n))
            for u in range(n):
                b = rng.standard_normal(BLOCK)
                s = Z[:, roi[u] * BLOCK:(roi[u] + 1) * BLOCK] @ b
                s = (s - s.mean()) / s.std()
                Y[:, u] = rho[u] * s + np.sqrt(1 - rho[u] ** 2) * rng.standard_normal(n_img)
            feats[layer] = (Y * rng.uniform(0.5, 2.0, n)).reshape(n_img, *shape).astype(
                np.float32)
            rhos[layer] = rho.reshape(shape)
            planted[layer] = roi.reshape(shape)
        out[net] = (feats, rhos, planted)
    return out
