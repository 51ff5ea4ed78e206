"""The simulated brain and network: ROI masks, voxel loadings, the haemodynamic response,
BOLD runs, and features with a planted decodability per unit (see :mod:`bids_decode.simulate`).
"""

from __future__ import annotations

import logging

import numpy as np

LOGGER = logging.getLogger(__name__)

#: Layer name -> unit shape of the planted features.
DEFAULT_LAYERS = {"conv1": (5, 4, 6), "conv2": (7, 3, 3), "fc6": (64,), "fc8": (41,)}
#: The voxel grid of the simulated brain (odd sizes: an axis mix-up fails).
GRID = (14, 13, 11)
#: Constant units (dead ReLUs) of the first layer.
N_DEAD = 3


def roi_layout(grid, rng):
    """Masks (name -> bool array) laid out ds001246-style on a small grid."""
    nx, ny, nz = grid
    x = np.arange(nx)[:, None, None]
    y = np.arange(ny)[None, :, None]
    z = np.arange(nz)[None, None, :]
    # the right hemisphere is one column narrower than the left: masks are not mirror images,
    # so a left-right flip of the masks selects other voxels
    cortex = (y <= 6) & (z >= 2) & (z <= 9) & (x >= 1) & (x <= nx - 3)
    hemi = {"LH": x < nx // 2, "RH": x >= nx // 2}
    parts = {
        "V1d": (y <= 1) & (z >= 6), "V1v": (y <= 1) & (z < 6),
        "V2d": (y == 2) & (z >= 6), "V2v": (y == 2) & (z < 6),
        "V3d": (y == 3) & (z >= 6), "V3v": (y == 3) & (z < 6),
        "hV4": (y == 4), "HVC": (y >= 5),
        "LOC": (y >= 5) & (z >= 6), "FFA": (y >= 5) & (z < 4), "PPA": (y == 6) & (z >= 4),
    }
    masks = {}
    for part, m in parts.items():
        for h, hm in hemi.items():
            masks[f"{h}_{part}"] = np.broadcast_to(cortex & m & hm, grid).copy()
    return masks


#: share of the ROI voxels that carry signal (the rest are noise only)
SIGNAL_SHARE = 0.5


def sparse_loadings(n_latent: int, roi_any: np.ndarray, rng) -> np.ndarray:
    """Voxel loadings ``A`` of shape (n_latent, n_roi_voxels): sparse and hemisphere-specific.

    About :data:`SIGNAL_SHARE` of the ROI voxels carry signal. Left-hemisphere voxels load on
    the first two thirds of the latent dimensions, right-hemisphere voxels on the last two
    thirds, so both hemispheres are needed to decode every unit and a decoder that uses all
    voxels (no selection) fits mostly noise.
    """
    nx = roi_any.shape[0]
    left = (np.nonzero(roi_any)[0] < nx // 2)
    n_roi = left.size
    A = rng.standard_normal((n_latent, n_roi)) / np.sqrt(n_latent)
    A *= rng.random(n_roi) < SIGNAL_SHARE
    third = max(1, n_latent // 3)
    A[n_latent - third:, left] = 0.0
    A[:third, ~left] = 0.0
    return A


def hrf_kernel(tr: float) -> np.ndarray:
    """Glover's haemodynamic response sampled every ``tr`` seconds over 30 s, summing to 1."""
    from nilearn.glm.first_level import glover_hrf

    h = glover_hrf(tr, oversampling=1, time_length=30.0)
    return h / h.sum()


def simulate_bold(ev, tr, grid, roi_any, A, Z, img_index, cat_index, hrf, snr, rng, *,
                  motion_artifact=False):
    """One run: (n_volumes, n_voxels) signal in noise units, and its motion regressors."""
    onset = ev["onset"].astype(float).to_numpy()
    dur = ev["duration"].astype(float).to_numpy()
    n_vols = int(round((onset[-1] + dur[-1]) / tr))
    n_roi = A.shape[1]
    neural = np.zeros((n_vols, n_roi))
    etype = ev["event_type"].to_numpy()
    for k in np.flatnonzero((etype == "stimulus") | (etype == "imagery")):
        if etype[k] == "stimulus":
            z = Z[img_index[ev["stimulus_name"].iloc[k]]]
        else:  # imagery: a weaker version of the category's perception response
            z = 0.6 * Z[cat_index[ev["category_name"].iloc[k]]]
        v0, v1 = int(onset[k] // tr), int(np.ceil((onset[k] + dur[k]) / tr))
        neural[v0:v1] += z @ A
    bold_roi = np.stack([np.convolve(c, hrf)[:n_vols] for c in neural.T], axis=1)
    bold_roi *= snr / max(bold_roi.std(), 1e-12)
    n_vox = int(np.prod(grid))
    t = np.linspace(-1, 1, n_vols)[:, None]
    data = rng.standard_normal((n_vols, n_vox)).astype(np.float32)
    data += rng.standard_normal(n_vox) * 2.0 * t
    data[:, np.flatnonzero(roi_any.ravel())] += bold_roi
    motion = np.cumsum(rng.standard_normal((n_vols, 6)) * 0.05, axis=0)
    if motion_artifact:  # signal changes explained by motion, removed by confound regression
        data += (motion - motion.mean(axis=0)) @ (rng.standard_normal((6, n_vox)) * 8.0)
    return data, motion


def plant_features(layers: dict, Z: np.ndarray, rng, null_rng,
                   null_fraction: float) -> tuple[dict, dict]:
    """Features with a planted decodability, drawn from ``rng`` layer by layer.

    Parameters
    ----------
    layers : dict
        Layer name -> unit shape.
    Z : ndarray of shape (n_images, n_latent)
        The images' latent vectors.

    Returns
    -------
    truth : dict
        Layer -> rho of shape unit_shape (NaN for the dead units of the first layer).
    feats : dict
        Layer -> float32 features of shape (n_images, *unit_shape).
    """
    n_img, n_latent = Z.shape
    truth = {}
    feats = {}
    for li, (name, shape) in enumerate(layers.items()):
        n_units = int(np.prod(shape))
        rho = rng.uniform(0.0, 0.95, n_units)
        if null_fraction > 0:
            rho[null_rng.choice(n_units, int(round(null_fraction * n_units)), replace=False)] = 0
        B = rng.standard_normal((n_latent, n_units))
        B /= np.linalg.norm(B, axis=0)
        signal = Z @ B
        signal /= signal.std(axis=0)
        # rho is the correlation of the unit with what the brain carries of it, so a perfect
        # decoder's accuracy is rho (on the scale of Pearson r, as accuracies are)
        Y = rho * signal + np.sqrt(1 - rho**2) * rng.standard_normal((n_img, n_units))
        Y = Y * rng.uniform(0.5, 3.0, n_units) + rng.uniform(-1.0, 2.0, n_units)
        if li == 0:
            dead = rng.choice(n_units, size=min(N_DEAD, n_units), replace=False)
            Y[:, dead] = 0.0
            rho[dead] = np.nan
        truth[name] = rho.reshape(shape)
        feats[name] = Y.reshape((n_img, *shape)).astype(np.float32)
    return truth, feats
