"""``simulate --hierarchy`` on its own arrays (no pipeline): every signal voxel's planted layer
is the layer that predicts it best, the units are decodable from their planted ROI, and the
``mixed`` network's layers are out of order.

The arrays are those :func:`bids_decode.simulate.dataset.simulate_dataset` draws, at its sizes
(the e2e runs' 400 training and 50 test images, simulate's grid and masks, the networks' 60
units per layer); each voxel's response is its noiseless signal (unit variance) plus noise of
the same variance (half of a voxel's variance is signal).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import stats

from bids_decode.simulate import hierarchy
from bids_decode.simulate.signal import GRID, SIGNAL_SHARE, roi_layout

N_TRAIN, N_TEST = 400, 50


def _zscore(x, ref):
    return (x - ref.mean(axis=0)) / ref.std(axis=0)


def _ridge_predict(X_train, Y_train, X_test, alpha=100.0):
    """Ridge with an unpenalised intercept (sklearn's ``Ridge(alpha)``), fitted on the training
    samples and applied to the test samples."""
    mx, my = X_train.mean(axis=0), Y_train.mean(axis=0)
    Xc = X_train - mx
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(Xc.shape[1]), Xc.T @ (Y_train - my))
    return (X_test - mx) @ W + my


def _pearson_columns(a, b):
    """Pearson r of each column of ``a`` with the same column of ``b``."""
    a = (a - a.mean(axis=0)) / a.std(axis=0)
    b = (b - b.mean(axis=0)) / b.std(axis=0)
    return (a * b).mean(axis=0)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((N_TRAIN + N_TEST, hierarchy.N_LATENT))
    masks = roi_layout(GRID, rng)
    roi_any = np.logical_or.reduce(list(masks.values()))
    rois = hierarchy.voxel_rois(masks, roi_any)
    blocks = hierarchy.voxel_blocks(rois, SIGNAL_SHARE, rng)
    A = hierarchy.block_loadings(blocks, rng)
    signal = blocks >= 0
    V = Z @ A[:, signal] + rng.standard_normal((len(Z), int(signal.sum())))
    nets = hierarchy.plant_networks(Z, np.random.default_rng(6))
    return {"rois": rois, "blocks": blocks, "A": A, "V": V, "signal": signal, "nets": nets}


def _encoding_accuracy(feats: dict, V: np.ndarray) -> np.ndarray:
    """(n_layers, n_voxels) test Pearson r of a ridge (alpha 100) per voxel from each layer's
    z-scored units."""
    acc = []
    for F in feats.values():
        F = F.reshape(len(F), -1).astype(np.float64)
        pred = _ridge_predict(_zscore(F[:N_TRAIN], F[:N_TRAIN]), V[:N_TRAIN],
                              _zscore(F[N_TRAIN:], F[:N_TRAIN]))
        acc.append(_pearson_columns(pred, V[N_TRAIN:]))
    return np.array(acc)


def test_each_voxel_carries_one_block_of_its_rois_layers(planted):
    rois, blocks, A = planted["rois"], planted["blocks"], planted["A"]
    n_layers = len(hierarchy.LAYERS)
    assert (rois >= 0).all()
    assert 0.4 < planted["signal"].mean() < 0.6
    for b in range(n_layers):
        on = blocks == b
        assert on.sum() >= 10  # every block is carried by some voxels
        assert (rois[on] == hierarchy.layer_roi(b, n_layers)).all()
    # V3 (conv3 and conv4) carries both of its layers' blocks, each voxel one of them
    v3 = blocks[(rois == 2) & (blocks >= 0)]
    assert set(np.unique(v3)) == {2, 3}
    loads = (A.reshape(n_layers, hierarchy.BLOCK, -1) != 0).any(axis=1)  # (block, voxel)
    assert (loads.sum(axis=0) == (blocks >= 0)).all()
    assert np.allclose(np.linalg.norm(A[:, blocks >= 0], axis=0), 1.0)


def test_planted_best_layer_of_each_network():
    blocks = np.array([-1, 0, 1, 2, 3, 4, 5])
    assert list(hierarchy.best_layers(blocks, "hierarchical")) == [-1, 0, 1, 2, 3, 4, 5]
    # mixed: layer l is built from block (l + 3) mod 6
    assert list(hierarchy.best_layers(blocks, "mixed")) == [-1, 3, 4, 5, 0, 1, 2]
    for net, order in hierarchy.LAYER_BLOCKS.items():
        assert sorted(order) == list(range(len(hierarchy.LAYERS))), net


def test_hierarchical_encoding_recovers_the_planted_layer(planted):
    blocks = planted["blocks"][planted["signal"]]
    acc = _encoding_accuracy(planted["nets"]["hierarchical"][0], planted["V"])
    best = acc.argmax(axis=0)
    want = hierarchy.best_layers(blocks, "hierarchical")
    assert (best == want).mean() >= 0.9
    # the best r is clearly significant (one-sided, 50 test images): p < 1e-4 for 95% of the
    # voxels, < 0.01 for all
    best_r = acc.max(axis=0)
    p = stats.t.sf(best_r * np.sqrt((N_TEST - 2) / (1 - best_r**2)), N_TEST - 2)
    assert np.quantile(p, 0.95) < 1e-4 and p.max() < 0.01
    # and the planted layer beats the next best by a margin for most voxels
    second = np.sort(acc, axis=0)[-2]
    assert np.median(best_r - second) > 0.2


def test_mixed_network_is_far_less_hierarchical_for_encoding(planted):
    rois = planted["rois"][planted["signal"]]
    rho = {}
    for net, (feats, *_rest) in planted["nets"].items():
        best = _encoding_accuracy(feats, planted["V"]).argmax(axis=0)
        rho[net] = stats.spearmanr(rois, best).statistic
    assert rho["hierarchical"] > 0.9
    assert rho["mixed"] < rho["hierarchical"] - 0.8
    # the planted best layers themselves are out of order in mixed
    planted_mixed = hierarchy.best_layers(planted["blocks"][planted["signal"]], "mixed")
    assert stats.spearmanr(rois, planted_mixed).statistic < 0.0


def test_units_are_decodable_from_their_planted_roi(planted):
    """Every unit (rho 0.6 to 0.95) is decoded best from the voxels of its planted ROI, with an
    accuracy that tracks rho."""
    rois, V = planted["rois"][planted["signal"]], planted["V"]
    for net, (feats, rho, roi_of_unit, block_of_unit) in planted["nets"].items():
        for layer, F in feats.items():
            F = F.reshape(len(F), -1).astype(np.float64)
            acc = np.array([_pearson_columns(
                _ridge_predict(V[:N_TRAIN, rois == r], F[:N_TRAIN], V[N_TRAIN:, rois == r]),
                F[N_TRAIN:]) for r in range(len(hierarchy.BH_ROIS))])
            want = roi_of_unit[layer].ravel()
            assert np.array_equal(want, [hierarchy.layer_roi(b, len(hierarchy.LAYERS))
                                         for b in block_of_unit[layer].ravel()])
            assert (acc.argmax(axis=0) == want).mean() >= 0.9, (net, layer)
            at_planted = acc[want, np.arange(want.size)]
            assert at_planted.mean() > 0.5, (net, layer)
            assert np.corrcoef(at_planted, rho[layer].ravel())[0, 1] > 0.5, (net, layer)
            assert ((0.6 <= rho[layer]) & (rho[layer] <= 0.95)).all()


def test_layer_shares_built_from_the_layers_block(planted):
    for net, share in hierarchy.NETWORKS.items():
        blocks = planted["nets"][net][3]
        for li, layer in enumerate(hierarchy.LAYERS):
            on = (blocks[layer] == hierarchy.LAYER_BLOCKS[net][li]).mean()
            # share + (1 - share) / 6 expected, 60 units
            expect = share + (1 - share) / len(hierarchy.LAYERS)
            assert abs(on - expect) < 0.2, (net, layer, on)


def test_truth_files_hold_each_voxels_planted_layer(tmp_path):
    """The truth files of a simulated dataset: per subject, every ROI voxel with its flat index
    in the masks' grid, its ROI (as the written masks say), its block and each network's
    planted best layer."""
    import nibabel as nib

    from bids_decode.simulate.dataset import simulate_dataset

    ds = simulate_dataset(tmp_path / "ds", n_subjects=2, n_train_runs=1, n_test_runs=1,
                          seed=2, hierarchy=True)
    anat = ds["bids_dir"] / "sourcedata" / "sub-02" / "anat"
    parts = {roi: [nib.load(anat / f"sub-02_mask_{h}_{part}.nii.gz").get_fdata() > 0
                   for part in hierarchy.ROI_PARTS[roi] for h in ("LH", "RH")]
             for roi in hierarchy.BH_ROIS}
    for net in hierarchy.NETWORKS:
        with h5py.File(ds["bids_dir"] / "stimuli" / f"truth_{net}.h5", "r") as f:
            assert list(f.attrs["layers"]) == list(hierarchy.LAYERS)
            assert list(f.attrs["layer_blocks"]) == list(hierarchy.LAYER_BLOCKS[net])
            assert tuple(f.attrs["grid_shape"]) == GRID
            assert set(f["voxels"]) == {"sub-01", "sub-02"}
            vox = {k: f[f"voxels/sub-02/{k}"][()] for k in
                   ("voxel_index", "roi", "block", "best_layer")}
            for layer in hierarchy.LAYERS:
                block = f[f"planted_block/{layer}"][()]
                roi = [hierarchy.layer_roi(b, len(hierarchy.LAYERS)) for b in block.ravel()]
                assert np.array_equal(f[f"planted_roi/{layer}"][()].ravel(), roi)
        assert np.array_equal(vox["best_layer"], ds["voxels"]["02"]["best_layer"][net])
        for i, roi in enumerate(hierarchy.BH_ROIS):
            in_roi = np.logical_or.reduce([m.ravel()[vox["voxel_index"]] for m in parts[roi]])
            assert np.array_equal(in_roi, vox["roi"] == i), roi
        sig = vox["block"] >= 0
        assert np.array_equal(sig, vox["best_layer"] >= 0)
        order = np.asarray(hierarchy.LAYER_BLOCKS[net])
        assert np.array_equal(order[vox["best_layer"][sig]], vox["block"][sig])
    # the subjects draw their own blocks
    one, two = ds["voxels"]["01"]["block"], ds["voxels"]["02"]["block"]
    assert np.array_equal(ds["voxels"]["01"]["voxel_index"], ds["voxels"]["02"]["voxel_index"])
    assert not np.array_equal(one, two)
