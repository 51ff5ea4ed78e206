"""Tests of the voxel-selecting ridge decoder against direct per-unit numpy/scipy solves."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from sklearn.linear_model import Ridge

from bids_decode import decoding
from bids_decode.backends import cpu as cpu_backend
from bids_decode.backends import lapack, torch_kernels
from bids_decode.backends.torch_kernels import solve_selected_torch
from bids_decode.decoding import (
    VoxelSelectionRidge,
    decode_units,
    fit_chunk,
    iter_decode,
    predict_chunk,
    predict_sparse,
    prepare_design,
    select_voxels,
    selection,
)
from bids_decode.errors import DataError, UsageError

N_SAMPLES, N_VOXELS, K, N_UNITS, N_TEST = 37, 23, 7, 11, 5
#: float32 agreement with the float64 reference (measured about 1.6e-6 relative to max |ref|)
F32_TOL = 1e-5


def _device(name: str) -> str:
    """Skip a test parametrised on ``cuda`` where there is no CUDA GPU (the only skip allowed)."""
    if name == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")
    return name


def reference(X, Y, Xt, alpha, k):
    """fastl2lir's method written out unit by unit, in float64."""
    n, p = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    Xtb = np.hstack([Xt, np.ones((Xt.shape[0], 1))])
    r = np.array([[np.corrcoef(X[:, v], Y[:, u])[0, 1] if X[:, v].var() >= 1e-8 else 0.0
                   for v in range(p)] for u in range(Y.shape[1])])
    preds, sels = [], []
    for u in range(Y.shape[1]):
        sel = np.sort(np.argsort(-np.abs(r[u]), kind="stable")[:k]) if k else np.arange(p)
        cols = np.append(sel, p)
        A = Xb[:, cols].T @ Xb[:, cols] + alpha * np.eye(cols.size)
        w = scipy.linalg.solve(A, Xb[:, cols].T @ Y[:, u], assume_a="pos")
        preds.append(Xtb[:, cols] @ w)
        sels.append(sel)
    return np.array(preds).T, np.array(sels)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N_SAMPLES, N_VOXELS)) * rng.uniform(0.5, 3, N_VOXELS) + 2.0
    X[:, 4] = 1.5  # a constant voxel: never preferred
    Y = X[:, :6] @ rng.standard_normal((6, N_UNITS)) + rng.standard_normal((N_SAMPLES, N_UNITS))
    Xt = rng.standard_normal((N_TEST, N_VOXELS)) + 2.0
    return X, Y, Xt


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, F32_TOL)])
def test_selection_matches_reference(data, dtype, rtol):
    X, Y, Xt = data
    ref, ref_sel = reference(X, Y, Xt, 3.0, K)
    design = prepare_design(X, 3.0, dtype=dtype)
    coef, index, intercept = fit_chunk(design, Y, K)
    assert coef.shape == (N_UNITS, K) and index.shape == (N_UNITS, K)
    assert intercept.shape == (N_UNITS,) and coef.dtype == dtype
    np.testing.assert_array_equal(index, ref_sel)
    assert 4 not in index
    pred = predict_chunk(design, Y, Xt, K)
    assert pred.shape == (N_TEST, N_UNITS) and pred.dtype == dtype
    np.testing.assert_allclose(pred, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(predict_sparse(Xt, coef, index, intercept), pred,
                               rtol=rtol, atol=rtol * np.abs(ref).max())


def test_select_voxels_ordered_by_correlation(data):
    X, Y, _ = data
    idx = select_voxels(prepare_design(X, 1.0), Y, K)
    r = np.array([[abs(np.corrcoef(X[:, v], Y[:, u])[0, 1]) for v in idx[u]]
                  for u in range(N_UNITS)])
    assert (np.diff(r, axis=1) <= 1e-12).all()


def test_all_voxels_matches_explicit_solve_and_sklearn(data):
    X, Y, Xt = data
    alpha = 2.5
    ref, _ = reference(X, Y, Xt, alpha, 0)
    design = prepare_design(X, alpha)
    np.testing.assert_allclose(predict_chunk(design, Y, Xt, 0), ref, rtol=1e-10, atol=1e-10)
    coef, index, intercept = fit_chunk(design, Y, 0)
    assert index is None and coef.shape == (N_UNITS, N_VOXELS)
    np.testing.assert_allclose(predict_sparse(Xt, coef, index, intercept), ref, rtol=1e-10)
    # sklearn's Ridge with the bias as a penalised feature (fit_intercept=False) is the same fit
    Xb = np.hstack([X, np.ones((N_SAMPLES, 1))])
    skl = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(Xb, Y)
    np.testing.assert_allclose(coef, skl.coef_[:, :-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(intercept, skl.coef_[:, -1], rtol=1e-9, atol=1e-12)
    # n_voxels >= the number of voxels also means all voxels
    np.testing.assert_allclose(predict_chunk(design, Y, Xt, N_VOXELS + 3), ref, rtol=1e-10)


def test_all_voxels_dual_form(data):
    """More voxels than samples: the dual (samples x samples) factorisation."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((13, 41))
    Y = rng.standard_normal((13, 6))
    Xt = rng.standard_normal((4, 41))
    ref, _ = reference(X, Y, Xt, 0.7, 0)
    design = prepare_design(X, 0.7)
    np.testing.assert_allclose(predict_chunk(design, Y, Xt, 0), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("provider", ["scipy", "mkl"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, F32_TOL)])
def test_lapack_providers_match_reference(data, lapack_choice, provider, dtype, rtol):
    if provider == "mkl" and lapack._mkl_library() is None:
        pytest.skip("the mkl package is not installed here")
    lapack_choice(provider)
    assert lapack.lapack_provider() == provider
    X, Y, Xt = data
    ref, _ = reference(X, Y, Xt, 3.0, K)
    pred = predict_chunk(prepare_design(X, 3.0, dtype=dtype), Y, Xt, K)
    np.testing.assert_allclose(pred, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.fixture(scope="module")
def wide():
    """Five and a bit grid blocks of units, so batches, threads and chunks can split them."""
    rng = np.random.default_rng(11)
    n, p, u = 53, 37, 5 * decoding.UNIT_BLOCK + 13
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3, p) + 1.0
    Y = X[:, :8] @ rng.standard_normal((8, u)) + rng.standard_normal((n, u))
    Xt = rng.standard_normal((7, p)) + 1.0
    return X, Y, Xt


SPLITS = [dict(n_jobs=1), dict(n_jobs=2), dict(n_jobs=1, batch_size=1),
          dict(n_jobs=2, batch_size=100), dict(n_jobs=2, batch_size=10_000),
          dict(n_jobs=1, mem_bytes=1)]
CUTS = [[64, 192], [1, 65, 250], [13], [300, 301, 302], [0, 64, 64]]  # chunk boundaries


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


DEVICES = ["cpu", "torch-cpu",
           pytest.param("cuda", marks=pytest.mark.skipif("not _cuda_available()",
                                                         reason="no CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [K, 0])
def test_partition_invariance_bit_for_bit(wide, dtype, k, device, monkeypatch):
    """The same bits whatever the batch size, threads, memory budget or chunking (and with
    float32 units redone in float64: the redo threshold is lowered so a third of them are)."""
    X, Y, Xt = wide
    monkeypatch.setitem(decoding.COND_MAX, np.dtype(np.float32), 40.0)
    design = prepare_design(X, 3.0, dtype=dtype, device=device)
    ref = predict_chunk(design, Y, Xt, k)
    assert np.isfinite(ref).all()
    for split in SPLITS:
        np.testing.assert_array_equal(predict_chunk(design, Y, Xt, k, **split), ref,
                                      err_msg=str(split))
    for cuts in CUTS:
        chunks = np.split(Y, [c for c in cuts if c < Y.shape[1]], axis=1)
        outs = list(iter_decode(design, chunks, Xt, k, batch_size=64, n_jobs=2))
        assert [o.shape[1] for o in outs] == [c.shape[1] for c in chunks]
        np.testing.assert_array_equal(np.concatenate(outs, axis=1), ref, err_msg=str(cuts))


def test_redo_threshold_exercised(wide, monkeypatch):
    """The lowered threshold above really sends some float32 units to the float64 path."""
    X, Y, _ = wide
    monkeypatch.setitem(decoding.COND_MAX, np.dtype(np.float32), 40.0)
    design = prepare_design(X, 3.0, dtype=np.float32)
    index, rhs = selection._select_rhs_float32(design, Y, K)
    _, _, status, _ = cpu_backend.solve_cpu(design.gram, index, rhs.astype(np.float32), 40.0,
                                          None)
    assert 0.1 < (status != 0).mean() < 0.9


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_estimator_partition_invariance(wide, dtype):
    X, Y, Xt = wide
    fits = [VoxelSelectionRidge(alpha=3.0, n_voxels=K, dtype=dtype, n_jobs=j, batch_size=b)
            .fit(X, Y) for j, b in [(1, None), (2, 1), (2, 100), (1, 10_000)]]
    for f in fits[1:]:
        for attr in ("coef_", "voxel_index_", "intercept_"):
            np.testing.assert_array_equal(getattr(f, attr), getattr(fits[0], attr))
    direct = predict_chunk(prepare_design(X, 3.0, dtype=dtype), Y, Xt, K)
    np.testing.assert_allclose(fits[0].predict(Xt), direct, rtol=1e-5,
                               atol=1e-5 * np.abs(direct).max())


def test_non_pd_block_redone_in_float64(data, monkeypatch):
    """A float32 block flagged as failing is solved again in float64, not left wrong."""
    X, Y, Xt = data
    ref, _ = reference(X, Y, Xt, 3.0, K)
    design = prepare_design(X, 3.0, dtype=np.float32)
    real = cpu_backend.solve_cpu
    calls = []

    def flaky(gram, index, rhs, cond_max, xt):
        coef, intercept, status, pred = real(gram, index, rhs, cond_max, xt)
        calls.append(gram.dtype)
        if gram.dtype == np.float32:
            status = status.copy()
            status[::3] = 5  # as LAPACK reports a non-positive-definite block
            coef[::3] = 1e9
        return coef, intercept, status, pred

    monkeypatch.setattr(cpu_backend, "solve_cpu", flaky)
    pred = predict_chunk(design, Y, Xt, K, n_jobs=1)
    assert calls == [np.float32, np.float64]
    np.testing.assert_allclose(pred, ref, rtol=F32_TOL, atol=F32_TOL * np.abs(ref).max())


@pytest.mark.parametrize("device", ["cpu", "torch-cpu", "cuda"])
def test_truly_non_pd_gives_nan_and_warning(device):
    """alpha < 0 makes blocks indefinite: NaN with a warning, never a silent number."""
    device = _device(device)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 15))
    Y = rng.standard_normal((9, 4))
    design = prepare_design(X, -50.0, device=device)
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        coef, index, intercept = fit_chunk(design, Y, 5)
    assert np.isnan(coef).all() and np.isnan(intercept).all()
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        pred = predict_chunk(design, Y, X[:3], 5)
    assert np.isnan(pred).all()


def test_ill_conditioned_float32_is_redone():
    """Nearly collinear voxels and a tiny alpha: float32 flags the block, float64 solves it."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((30, 1))
    X = np.hstack([base + 1e-4 * rng.standard_normal((30, 6)), rng.standard_normal((30, 5))])
    Y = base @ np.ones((1, 3)) + 0.1 * rng.standard_normal((30, 3))
    Xt = rng.standard_normal((4, 11))
    ref, _ = reference(X, Y, Xt, 1e-6, 6)
    pred = predict_chunk(prepare_design(X, 1e-6, dtype=np.float32), Y, Xt, 6)
    np.testing.assert_allclose(pred, ref, rtol=F32_TOL, atol=F32_TOL * np.abs(ref).max())


@pytest.mark.parametrize("cholesky", ["torch", "blocked"])
def test_torch_backend_matches_numba(data, cholesky, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setitem(torch_kernels.TORCH_DEFAULTS, "block", 3)
    X, Y, Xt = data
    design = prepare_design(X, 3.0, dtype=np.float64)
    scores, ct, ysum = selection._scores_rhs(design, Y)
    index = selection._top_k(scores, K)
    rhs = selection._rhs_selected(design, ct, ysum, index)
    want = cpu_backend.solve_cpu(design.gram, index, rhs, 1e12, Xt.T)
    t = torch.from_numpy
    got = solve_selected_torch(t(design.gram), t(index), t(rhs), 1e12,
                               t(np.ascontiguousarray(Xt.T)), sub_batch=4, cholesky=cholesky)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", ["torch-cpu", "cuda"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, F32_TOL)])
def test_torch_device_path_matches_cpu(data, device, dtype, rtol):
    """The whole device pipeline (GEMM, top-k, solve, float64 redo) with torch, on the CPU and
    on a CUDA GPU, against the CPU kernel and the float64 reference."""
    pytest.importorskip("torch")
    device = _device(device)
    X, Y, Xt = data
    ref, _ = reference(X, Y, Xt, 3.0, K)
    want = predict_chunk(prepare_design(X, 3.0, dtype=dtype), Y, Xt, K)
    design = prepare_design(X, 3.0, dtype=dtype, device=device)
    got = predict_chunk(design, Y, Xt, K)
    assert got.shape == want.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_planted_truth_decoded():
    """Units that are linear in a few voxels are decoded with high test correlation."""
    rng = np.random.default_rng(42)
    n, p, n_units = 120, 61, 17
    X = rng.standard_normal((n + 20, p))
    W = np.zeros((p, n_units))
    for u in range(n_units):
        W[rng.choice(p, 3, replace=False), u] = rng.uniform(1, 2, 3) * rng.choice([-1, 1], 3)
    Y = X @ W + 0.3 * rng.standard_normal((n + 20, n_units))
    pred = decode_units(X[:n], Y[:n], X[n:], alpha=1.0, n_voxels=9, dtype=np.float32)
    r = [np.corrcoef(pred[:, u], Y[n:, u])[0, 1] for u in range(n_units)]
    assert min(r) > 0.9


def test_estimator_matches_functions(data):
    X, Y, Xt = data
    est = VoxelSelectionRidge(alpha=3.0, n_voxels=K, dtype="float64", n_jobs=2,
                              batch_size=3).fit(X, Y)
    assert est.coef_.shape == (N_UNITS, K) and est.n_features_in_ == N_VOXELS
    np.testing.assert_allclose(est.predict(Xt), reference(X, Y, Xt, 3.0, K)[0], rtol=1e-10)
    est0 = VoxelSelectionRidge(alpha=3.0, n_voxels=0).fit(X, Y[:, 0])
    assert est0.voxel_index_ is None and est0.predict(Xt).shape == (N_TEST,)  # y's shape
    # the default precision is the pipeline's (float32)
    default = VoxelSelectionRidge(alpha=3.0, n_voxels=K).fit(X, Y)
    assert default.coef_.dtype == np.float32
    ref = reference(X, Y, Xt, 3.0, K)[0]
    np.testing.assert_allclose(default.predict(Xt), ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_bad_input_messages(data):
    X, Y, Xt = data
    with pytest.raises(UsageError, match=r"shape \(n_samples=37"):
        VoxelSelectionRidge().fit(X, Y[:5])
    with pytest.raises(UsageError, match="n_voxels must be >= 0"):
        VoxelSelectionRidge(n_voxels=-1).fit(X, Y)
    with pytest.raises(ValueError, match="is expecting 23 features"):
        VoxelSelectionRidge(n_voxels=K).fit(X, Y).predict(Xt[:, :5])
    bad = Y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit_chunk(prepare_design(X, 1.0), bad, K)
    with pytest.raises(UsageError, match="float32 or float64"):
        prepare_design(X, 1.0, dtype=np.int32)


#: The documented tolerance between machines, CPU code paths and devices (README,
#: "Reproducibility"): float32 predictions within this fraction of the largest |prediction|,
#: and accuracies (Pearson r) within ACCURACY_TOL.
PREDICTION_RTOL, ACCURACY_TOL = 1e-5, 1e-6

_OTHER_PATH = {"NUMBA_CPU_NAME": "haswell", "BIDS_DECODE_LAPACK": "scipy",
               "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2"}
_DECODE_SCRIPT = """
import sys, numpy as np
from bids_decode.decoding import decode_units
from bids_decode.evaluation.correlation import profile_correlation
rng = np.random.default_rng(4)
n, p, u, t = 300, 400, 300, 40
X = rng.standard_normal((n + t, p))
Y = X[:, :30] @ rng.standard_normal((30, u)) * 0.05 + rng.standard_normal((n + t, u))
mu, sd = X[:n].mean(0), X[:n].std(0)
X = (X - mu) / sd
Y = (Y - Y[:n].mean(0)) / Y[:n].std(0)
pred = decode_units(X[:n], Y[:n], X[n:], alpha=100.0, n_voxels=100, device=sys.argv[2])
np.savez(sys.argv[1], pred=pred, acc=profile_correlation(pred, Y[n:]))
"""


def _decode_in_subprocess(path, env, device="cpu"):
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _DECODE_SCRIPT, str(path), device], check=True,
                   env={**os.environ, **env}, capture_output=True)
    return np.load(path)


@pytest.mark.slow
@pytest.mark.parametrize("other", ["avx2-scipy", "torch-cpu"])
def test_other_code_paths_agree_within_the_documented_tolerance(tmp_path, other):
    """The AVX2 kernels with SciPy's LAPACK (what an AMD EPYC takes), or the torch path,
    against the default path of this machine: within the documented tolerance."""
    import os

    env = dict(_OTHER_PATH) if other == "avx2-scipy" else {}
    if other == "avx2-scipy" and not os.environ.get("OPENBLAS_CORETYPE"):
        env["OPENBLAS_CORETYPE"] = "Haswell"  # numpy's GEMMs on the AVX2 kernels too
    a = _decode_in_subprocess(tmp_path / "a.npz", {})
    b = _decode_in_subprocess(tmp_path / "b.npz", env,
                              device="torch-cpu" if other == "torch-cpu" else "cpu")
    scale = np.abs(a["pred"]).max()
    np.testing.assert_allclose(b["pred"], a["pred"], rtol=0, atol=PREDICTION_RTOL * scale)
    np.testing.assert_allclose(b["acc"], a["acc"], rtol=0, atol=ACCURACY_TOL)
