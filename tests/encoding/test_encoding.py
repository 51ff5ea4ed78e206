"""The encoding model (bids_decode.encoding): fastl2lir 0.11's predictions and selections, the
same bits however the work is split, bounded state, and the checks at the boundary."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bids_decode.backends.cpu_topk import TopUnits
from bids_decode.encoding import VOXEL_BLOCK, encode_voxels, select_units
from bids_decode.encoding.selection import centred_units, standardized_voxels
from bids_decode.errors import DataError, UsageError
from bids_decode.evaluation.correlation import profile_correlation
from bids_decode.utils.grid import UNIT_BLOCK

N_TRAIN, N_TEST, N_UNITS, N_VOX = 300, 50, 2000, 40

# fastl2lir 0.11 in .bench-venv: features as X, voxels as Y; argv = data.npz, n_feat, out.npz
FASTL2LIR_SCRIPT = """
import sys, warnings, numpy as np, fastl2lir
d = np.load(sys.argv[1])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    m = fastl2lir.FastL2LiR().fit(X=d["F"], Y=d["V"], alpha=100.0, n_feat=int(sys.argv[2]))
np.savez(sys.argv[3], pred=m.predict(d["Ft"]), W=m.W)
"""


def layer(seed=0, n_train=N_TRAIN, n_test=N_TEST, n_units=N_UNITS, n_vox=N_VOX):
    """Features with offsets and scales per unit, one constant unit (3), and voxels driven by
    a few units plus noise, with offsets."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, n_units)
    F = rng.standard_normal((n_train, n_units)) * scale + rng.uniform(-2, 2, n_units)
    Ft = rng.standard_normal((n_test, n_units)) * scale + rng.uniform(-2, 2, n_units)
    F[:, 3] = Ft[:, 3] = 1.5
    drive = rng.choice(n_units, 12, replace=False)
    V = F[:, drive] @ rng.standard_normal((12, n_vox)) + 3 * rng.standard_normal((n_train, n_vox))
    return F, Ft, V + rng.uniform(-5, 5, n_vox)


def stream(F, Ft, step, log=None):
    """``chunks`` of ``step`` units (a multiple of the grid), each made when asked for."""
    def chunks():
        for s in range(0, F.shape[1], step):
            if log is not None:
                log.append(s)
            yield s, min(s + step, F.shape[1]), F[:, s:s + step].copy(), Ft[:, s:s + step].copy()
    return chunks


@pytest.fixture(scope="module")
def data():
    return layer()


@pytest.mark.parametrize("k", [500, 0, 2500])
def test_matches_fastl2lir(data, k, bdpy_python, tmp_path):
    """Predictions within 1e-6 of max |pred| and the same selected units as fastl2lir 0.11
    (k=500; k=0 and k > units: every unit, fastl2lir's dual form)."""
    F, Ft, V = data
    np.savez(tmp_path / "d.npz", F=F, Ft=Ft, V=V)
    subprocess.run([str(bdpy_python), "-c", FASTL2LIR_SCRIPT, str(tmp_path / "d.npz"), str(k),
                    str(tmp_path / "ref.npz")], check=True, capture_output=True)
    ref = np.load(tmp_path / "ref.npz")
    fit = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0)
    assert fit.pred.shape == (N_TEST, N_VOX) and fit.pred.dtype == np.float64
    scale = np.abs(ref["pred"]).max()
    np.testing.assert_allclose(fit.pred, ref["pred"], rtol=0, atol=1e-6 * scale)
    # per-voxel accuracies (the pipeline's Pearson r over test images) against measured
    # responses: equal within 1e-6
    measured = ref["pred"] + 2 * np.random.default_rng(1).standard_normal(ref["pred"].shape)
    np.testing.assert_allclose(profile_correlation(fit.pred, measured),
                               profile_correlation(ref["pred"], measured), rtol=0, atol=1e-6)
    kk = k if 0 < k < N_UNITS else N_UNITS
    assert fit.index.shape == (N_VOX, kk) and fit.n_layer_units == N_UNITS
    if kk < N_UNITS:
        for v in range(N_VOX):
            np.testing.assert_array_equal(np.sort(fit.index[v]), np.flatnonzero(ref["W"][:, v]))
        assert 3 not in fit.index
    else:
        assert (np.sort(fit.index, axis=1) == np.arange(N_UNITS)).all()


def test_ranking_is_by_decreasing_abs_r(data):
    """index rows are the units by decreasing |Pearson r| (np.corrcoef), constant unit last."""
    F, Ft, V = data
    index, n_layer, n_test = select_units(stream(F, Ft, 256), V, 0)
    assert (n_layer, n_test) == (N_UNITS, N_TEST)
    with np.errstate(invalid="ignore"):  # the constant unit
        r = np.abs(np.corrcoef(F.T, V.T)[:N_UNITS, N_UNITS:])
    r[3] = 0.0
    for v in range(N_VOX):
        np.testing.assert_array_equal(index[v], np.argsort(-r[:, v], kind="stable"))
    assert (index[:, -1] == 3).all()


def test_planted_unit_is_selected_first():
    F, Ft, _ = layer(seed=1, n_units=700, n_vox=5)
    rng = np.random.default_rng(2)
    V = 4 * F[:, [7, 100, 699, 64, 65]] + 0.01 * rng.standard_normal((N_TRAIN, 5))
    fit = encode_voxels(stream(F, Ft, 128), V, n_units=20, alpha=1.0)
    np.testing.assert_array_equal(fit.index[:, 0], [7, 100, 699, 64, 65])
    # the planted unit alone predicts the test samples (ridge shrinks a little)
    np.testing.assert_allclose(fit.pred, 4 * Ft[:, [7, 100, 699, 64, 65]], atol=0.05 * 4 * 3)


def test_equal_scores_keep_the_earlier_unit():
    """Duplicated units (equal scores): the lower unit index is kept and ranked first."""
    F, Ft, V = layer(seed=3, n_units=256, n_vox=4)
    F[:, 200] = F[:, 10]
    Ft[:, 200] = Ft[:, 10]
    V[:, 0] = F[:, 10] + 0.1 * np.random.default_rng(0).standard_normal(N_TRAIN)
    index, _, _ = select_units(stream(F, Ft, 64), V, 1)
    assert index[0, 0] == 10
    full, _, _ = select_units(stream(F, Ft, 64), V, 0)
    assert list(full[0, :2]) == [10, 200]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bits_however_split(dtype):
    """Chunk sizes, memory budget (several voxel groups), threads and voxel halves on the
    VOXEL_BLOCK grid: the same bits."""
    F, Ft, V = layer(seed=4, n_units=1000, n_vox=VOXEL_BLOCK + 44)
    args = dict(n_units=60, alpha=100.0, dtype=dtype)
    base = encode_voxels(stream(F, Ft, 1000), V, n_jobs=1, **args)
    mem = 5_000_000  # groups of about 20 voxels
    for step, n_jobs, mem_bytes in [(64, 1, 1 << 30), (192, 2, mem), (1024, 2, 1 << 30)]:
        other = encode_voxels(stream(F, Ft, step), V, n_jobs=n_jobs, mem_bytes=mem_bytes,
                              **args)
        assert np.array_equal(other.pred, base.pred) and np.array_equal(other.index, base.index)
    halves = [encode_voxels(stream(F, Ft, 320), V[:, sl], n_jobs=2, **args)
              for sl in (slice(0, VOXEL_BLOCK), slice(VOXEL_BLOCK, None))]
    assert np.array_equal(np.hstack([h.pred for h in halves]), base.pred)
    assert np.array_equal(np.vstack([h.index for h in halves]), base.index)
    if dtype == np.float32:  # still fastl2lir's model, to float32 precision
        ref = encode_voxels(stream(F, Ft, 1000), V, n_units=60, alpha=100.0)
        agree = (np.sort(base.index, axis=1) == np.sort(ref.index, axis=1)).all(axis=1).mean()
        assert agree > 0.9
        assert np.abs(base.pred - ref.pred).max() < 1e-3 * np.abs(ref.pred).max()


def test_all_units_same_bits_however_split():
    F, Ft, V = layer(seed=5, n_units=450, n_vox=VOXEL_BLOCK + 10)
    base = encode_voxels(stream(F, Ft, 448), V, n_units=0, alpha=10.0)
    other = encode_voxels(stream(F, Ft, 64), V[:, VOXEL_BLOCK:], n_units=999, alpha=10.0,
                          n_jobs=2)
    assert np.array_equal(other.pred, base.pred[:, VOXEL_BLOCK:])


def test_selection_state_does_not_grow_with_the_layer():
    """k > 0: the state holds k units per voxel whatever the number of units offered, and the
    chunks are made one at a time (a generator), each exactly once per pass."""
    F, Ft, V = layer(seed=6, n_units=1280, n_vox=10)
    state = TopUnits(standardized_voxels(V, np.float64), 50)
    size0 = state.nbytes
    made = []
    for s, _, f, _ in stream(F, Ft, 128, made)():
        state.offer(s, *centred_units(f, np.float64), lambda fn, items: [fn(x) for x in items])
        assert state.nbytes == size0
    assert made == list(range(0, 1280, 128))
    with np.errstate(invalid="ignore"):  # the constant unit
        r = np.abs(np.corrcoef(F.T, V.T)[:1280, 1280:])
    r[3] = 0
    np.testing.assert_array_equal(state.index(), np.argsort(-r.T, axis=1, kind="stable")[:, :50])
    log = []
    encode_voxels(stream(F, Ft, 640, log), V, n_units=50, alpha=1.0, mem_bytes=500_000,
                  n_jobs=1)
    # the selection pass, then one pass per group of voxels (several groups here)
    assert len(log) >= 2 * 3 and log == [0, 640] * (len(log) // 2)


def test_checks_at_the_boundary():
    F, Ft, V = layer(seed=7, n_units=256, n_vox=3)
    ok = stream(F, Ft, 128)
    bad_v = V.copy()
    bad_v[4, 1] = np.nan
    with pytest.raises(DataError, match="V_train .*NaN.*voxel 1"):
        encode_voxels(ok, bad_v, n_units=10, alpha=1.0)
    bad_f = F.copy()
    bad_f[2, 130] = np.inf
    with pytest.raises(DataError, match=r"units \[128, 256\).*F_train.*unit 130"):
        encode_voxels(stream(bad_f, Ft, 128), V, n_units=10, alpha=1.0)
    with pytest.raises(DataError, match=r"F_train of shape \(299, 128\); expected \(300, 128\)"):
        encode_voxels(stream(F[:-1], Ft, 128), V, n_units=10, alpha=1.0)
    with pytest.raises(DataError, match=r"F_test of shape \(49, 128\)"):
        encode_voxels(lambda: ((s, s + 128, F[:, s:s + 128], Ft[s // 128:, s:s + 128])
                               for s in (0, 128)), V, n_units=10, alpha=1.0)
    with pytest.raises(UsageError, match=f"{UNIT_BLOCK}-unit grid"):
        encode_voxels(stream(F, Ft, 100), V, n_units=10, alpha=1.0)
    with pytest.raises(UsageError, match="V_train must have shape"):
        encode_voxels(ok, V[:, 0], n_units=10, alpha=1.0)
    with pytest.raises(UsageError, match="alpha must be > 0"):
        encode_voxels(ok, V, n_units=10, alpha=0.0)
    with pytest.raises(UsageError, match="n_units must be"):
        encode_voxels(ok, V, n_units=-1, alpha=1.0)
    with pytest.raises(UsageError, match="chunks must be a zero-argument callable"):
        encode_voxels(ok(), V, n_units=10, alpha=1.0)
    with pytest.raises(DataError, match="no units"):
        encode_voxels(lambda: iter(()), V, n_units=10, alpha=1.0)
    with pytest.raises(UsageError, match="memory budget"):
        encode_voxels(ok, V, n_units=0, alpha=1.0, mem_bytes=10_000)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_singular_systems_warn(dtype):
    """More selected units than training samples and a negligible alpha: the voxel's Gram is
    singular to working precision; float32 is redone in float64, and a warning says why the
    predictions are unreliable or NaN."""
    F, Ft, V = layer(seed=8, n_train=40, n_test=5, n_units=128, n_vox=3)
    with pytest.warns(RuntimeWarning, match="ill-conditioned|not positive definite"):
        fit = encode_voxels(stream(F, Ft, 128), V, n_units=100, alpha=1e-12, dtype=dtype)
    assert fit.pred.shape == (5, 3)
    good = encode_voxels(stream(F, Ft, 128), V, n_units=100, alpha=10.0, dtype=dtype)
    assert np.isfinite(good.pred).all()
