"""The sklearn estimator: scikit-learn's estimator checks, N-D targets, fastl2lir's golden data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from bids_decode.decoding.estimator import VoxelSelectionRidge

GOLDEN = Path(__file__).parents[1] / "data" / "fastl2lir_golden.npz"
#: fastl2lir's tests: alpha 1.0 and n_feat 0 (all voxels; 'wide' has more voxels than samples)
#: or 20; see tests/data/make_fastl2lir_golden.py
GOLDEN_CASES = {"basic": 0, "nfeat": 20, "wide": 0}
#: float64 agreement with fastl2lir 0.11 (max |ours - ref| / max |ref|). Two solvers of one
#: system agree to about cond(G) * eps = 1,100 * 2.2e-16 = 2.4e-13 (G = X'X + I of these cases,
#: cond 300 to 1,100); measured: predictions 1.8e-14, weights 3.9e-14, bias 7.0e-14 (Intel
#: AVX-512, MKL) and bias 1.08e-13 (AMD EPYC, AVX2: the summation order of its kernels differs)
PRED_RTOL, WEIGHT_RTOL = 7e-14, 2.5e-13


def _expected_failures(estimator) -> dict:
    if estimator.dtype == "float32":
        return {"check_regressor_multioutput":
                "predictions are in the solver's precision, float32 by default (the pipeline's "
                "--dtype); the check wants float64 (the float64 instance below passes it)"}
    return {}


@parametrize_with_checks([VoxelSelectionRidge(), VoxelSelectionRidge(dtype="float64")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input":
        # scikit-learn runs this check only with SCIPY_ARRAY_API=1 set before scipy is first
        # imported, a process-wide switch: run it in a fresh process that sets it
        _run_with_array_api(estimator, check.keywords)
    else:
        check(estimator)


ARRAY_API_CHECK = """
import sys
from sklearn.utils.estimator_checks import check_array_api_input
from bids_decode.decoding.estimator import VoxelSelectionRidge
est = VoxelSelectionRidge(dtype=sys.argv[1])
check_array_api_input("VoxelSelectionRidge", est, array_namespace=sys.argv[2],
                      expect_only_array_outputs=sys.argv[3] == "True")
print("passed")
"""


def _run_with_array_api(estimator, keywords):
    import os
    import subprocess
    import sys

    env = dict(os.environ, SCIPY_ARRAY_API="1")
    res = subprocess.run(
        [sys.executable, "-c", ARRAY_API_CHECK, estimator.dtype,
         keywords.get("array_namespace", "numpy"),
         str(keywords.get("expect_only_array_outputs", True))],
        env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert res.returncode == 0 and "passed" in res.stdout, res.stderr[-3000:]


def _dense_weights(est) -> np.ndarray:
    """fastl2lir's W of shape (n_voxels, *unit_shape) from the sparse weights."""
    W = np.zeros((est.coef_.shape[0], est.n_features_in_))
    if est.voxel_index_ is None:
        W[:] = est.coef_
    else:
        np.put_along_axis(W, est.voxel_index_, est.coef_, axis=1)
    return W.T.reshape((est.n_features_in_, *est.unit_shape_))


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_fastl2lir_golden_data_with_3d_targets(case):
    """fastl2lir 0.11's own test data, fitted on (n_samples, 10, 10) targets as given."""
    with np.load(GOLDEN) as g:
        d = {key: g[f"{case}_{key}"] for key in ("x_tr", "x_te", "y_2d", "w_2d", "b_2d",
                                                 "yp_2d")}
    est = VoxelSelectionRidge(alpha=1.0, n_voxels=GOLDEN_CASES[case], dtype="float64",
                              n_jobs=1).fit(d["x_tr"], d["y_2d"])
    pred = est.predict(d["x_te"])
    assert est.unit_shape_ == (10, 10) and pred.shape == d["yp_2d"].shape

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    assert rel(pred, d["yp_2d"]) < PRED_RTOL
    assert rel(_dense_weights(est), d["w_2d"]) < WEIGHT_RTOL
    assert rel(est.intercept_.reshape(d["b_2d"].shape), d["b_2d"]) < WEIGHT_RTOL


@pytest.mark.parametrize("n_voxels", [0, 4])
def test_nd_targets_equal_flattened(n_voxels):
    """(n, 3, 2, 2) targets give the bits of the flattened (n, 12) fit, reshaped."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((31, 17))
    Y = X[:, :3] @ rng.standard_normal((3, 3, 2, 2)).reshape(3, -1)
    Y = (Y + rng.standard_normal(Y.shape)).reshape(31, 3, 2, 2)
    nd = VoxelSelectionRidge(alpha=2.0, n_voxels=n_voxels).fit(X, Y)
    flat = VoxelSelectionRidge(alpha=2.0, n_voxels=n_voxels).fit(X, Y.reshape(31, -1))
    np.testing.assert_array_equal(nd.coef_, flat.coef_)
    np.testing.assert_array_equal(nd.predict(X[:5]), flat.predict(X[:5]).reshape(5, 3, 2, 2))
    one = VoxelSelectionRidge(alpha=2.0, n_voxels=n_voxels).fit(X, Y[:, 1, 0, 1])
    assert one.unit_shape_ == () and one.predict(X[:5]).shape == (5,)
    # (all voxels: the dense prediction GEMM's bits depend on the number of targets; float32,
    # so within the README's tolerance, 1e-5 of max |prediction|: measured 1.3e-7 on AMD EPYC)
    ref = nd.predict(X[:5])[:, 1, 0, 1]
    np.testing.assert_allclose(one.predict(X[:5]), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
