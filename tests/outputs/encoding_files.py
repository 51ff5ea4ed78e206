"""Synthetic encoding files (``*_desc-<ROI>_encoding.h5``) written with the app's own writer,
on a small 3-D grid with a known affine: the brain-map and report tests start from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_decode.outputs import encoding as enc_outputs
from bids_decode.outputs.encoding import write_encoding_summary

TASK = "perception"
NETWORK = "simulated"
LAYERS = ["conv1", "conv3", "fc6", "fc8"]
#: Odd sizes, so that an axis mix-up shows.
GRID_SHAPE = (7, 8, 9)
#: Anisotropic voxels, shifted origin.
GRID_AFFINE = np.array([[2.0, 0, 0, -7], [0, 2.5, 0, -10], [0, 0, 3, 4], [0, 0, 0, 1]])
N_TEST = 50


def planted_encoding(out: Path, subject: str, roi: str, *, seed: int, n_vox: int = 60,
                     permutations: bool = True, grid_shape=GRID_SHAPE,
                     grid_affine=GRID_AFFINE, best: dict | None = None) -> Path:
    """One ROI's encoding file: random accuracies with a preferred layer drifting along x.

    ``best``: ``{voxel position: (layer index, accuracy, p)}`` planted exactly (the other
    layers of that voxel get lower accuracies and p = 1).
    """
    rng = np.random.default_rng(seed)
    n_grid = int(np.prod(grid_shape))
    voxel_index = np.sort(rng.choice(n_grid, n_vox, replace=False))
    x = np.unravel_index(voxel_index, grid_shape)[0] if len(grid_shape) == 3 else voxel_index
    pref = np.round((len(LAYERS) - 1) * x / max(1, x.max())).astype(int)
    acc = rng.uniform(-0.1, 0.3, (len(LAYERS), n_vox))
    acc[pref, np.arange(n_vox)] += 0.4
    p = np.where(acc > 0.45, 0.001, 0.5) * np.ones_like(acc)
    for j, (layer, r, pv) in (best or {}).items():
        acc[:, j] = np.minimum(acc[:, j], r - 0.05)
        acc[layer, j], p[:, j], p[layer, j] = r, 1.0, pv
    if not permutations:
        p[:] = np.nan
    path = enc_outputs.encoding_h5(out, subject, TASK, roi, network=NETWORK)
    attrs = {"roi": roi, "subject": subject, "task": TASK, "network": NETWORK, "alpha": 100.0,
             "n_units_selected": 500}
    with enc_outputs.encoding_writer(path, voxel_index=voxel_index, grid_shape=grid_shape,
                                     grid_affine=grid_affine,
                                     test_names=[f"img{i}" for i in range(N_TEST)],
                                     attrs=attrs, n_layers=len(LAYERS)) as h5:
        for i, layer in enumerate(LAYERS):
            enc_outputs.write_encoding_layer(h5, layer, {
                "accuracy": acc[i], "p_value": p[i], "q_value": p[i], "p_fwer": p[i],
                "predicted": rng.standard_normal((N_TEST, n_vox))},
                {"n_units": 1000, "n_units_selected": 500})
        enc_outputs.write_best_layers(h5, LAYERS)
    rows = [{"roi": roi, "layer": la,
             "relative_depth": float(enc_outputs.relative_depth(i, len(LAYERS))),
             "n_units": 1000, "n_units_selected": 500, "n_voxels": n_vox,
             "accuracy_mean": float(acc[i].mean()), "accuracy_median": float(np.median(acc[i])),
             "n_significant": int((p[i] < 0.05).sum()), "fraction_significant": 0.0,
             "n_best": int((acc.argmax(0) == i).sum()), "n_train_samples": 1200,
             "n_test_images": N_TEST} for i, la in enumerate(LAYERS)]
    write_encoding_summary(out, subject, TASK, rows, network=NETWORK)
    return path
