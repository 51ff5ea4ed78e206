"""The encoding model on the torch backend (``--device torch-cpu``, the GPU code path on the
CPU): the CPU path's selections and predictions, the same bits however the work is split, the
CPU's tie order, and the CPU's failure codes in the batched solve."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.backends import cpu_ridge, torch_encoding
from bids_decode.backends.cpu_ridge import FAILED, ILL_CONDITIONED_64, REDONE_FLOAT64, SOLVED
from bids_decode.decoding.solvers import COND_MAX
from bids_decode.encoding import VOXEL_BLOCK, encode_voxels, select_units
from bids_decode.encoding.chunks import thread_map
from bids_decode.encoding.selection import centred_units, standardized_voxels
from bids_decode.encoding.solvers import gather_group, group_buffers

from .test_encoding import layer, stream

pytest.importorskip("torch")


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def data():
    return layer()


@pytest.mark.parametrize("k", [500, 0])
def test_float64_equals_the_cpu_path(data, k):
    """The fastl2lir-sized problem of test_encoding (300 samples, 2,000 units, 40 voxels):
    the same selected units in the same order, predictions within 1e-9 (measured: 6e-14
    with k=500, 3e-15 with every unit)."""
    F, Ft, V = data
    cpu = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0)
    tc = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0, device="torch-cpu")
    np.testing.assert_array_equal(tc.index, cpu.index)
    assert tc.n_layer_units == cpu.n_layer_units and tc.pred.dtype == np.float64
    assert rel(tc.pred, cpu.pred) < 1e-9


@pytest.mark.parametrize("k", [500, 0])
def test_float32_agrees_with_the_cpu_path(data, k):
    """float32: the same selected sets as the CPU's float32 here (near-ties within float32
    rounding may order differently), predictions within 1e-4 of the CPU's float32 (measured
    7.7e-5 with k=500: the float32 Grams of 501 units) and of float64."""
    F, Ft, V = data
    cpu = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0, dtype=np.float32)
    tc = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0, dtype=np.float32,
                       device="torch-cpu")
    ref = encode_voxels(stream(F, Ft, 512), V, n_units=k, alpha=100.0)
    np.testing.assert_array_equal(np.sort(tc.index, axis=1), np.sort(cpu.index, axis=1))
    assert rel(tc.pred, cpu.pred) < 1e-4
    assert rel(tc.pred, ref.pred) < 1e-4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bits_however_split(dtype):
    """Chunk sizes, memory budgets (groups of 32 and 64 voxels: multiples of SOLVE_BLOCK) and
    voxel halves on the VOXEL_BLOCK grid: the same bits on torch-cpu."""
    F, Ft, V = layer(seed=4, n_units=1000, n_vox=VOXEL_BLOCK + 44)
    args = dict(n_units=60, alpha=100.0, dtype=dtype, device="torch-cpu")
    base = encode_voxels(stream(F, Ft, 1000), V, **args)
    for step, mem_bytes in [(64, 1 << 30), (192, 9_000_000), (128, 13_000_000),
                            (1024, 1 << 30)]:
        other = encode_voxels(stream(F, Ft, step), V, mem_bytes=mem_bytes, **args)
        assert np.array_equal(other.pred, base.pred) and np.array_equal(other.index, base.index)
    halves = [encode_voxels(stream(F, Ft, 320), V[:, sl], **args)
              for sl in (slice(0, VOXEL_BLOCK), slice(VOXEL_BLOCK, None))]
    assert np.array_equal(np.hstack([h.pred for h in halves]), base.pred)
    assert np.array_equal(np.vstack([h.index for h in halves]), base.index)


def test_merge_step_and_state_are_bounded():
    """A small budget gives one-grid-block merge steps, and the state holds k units per voxel
    however many units are offered; the ranking is still np.corrcoef's."""
    F, Ft, V = layer(seed=6, n_units=1280, n_vox=10)
    import torch

    state = torch_encoding.TorchTopUnits(standardized_voxels(V, np.float64), 50,
                                         torch.device("cpu"), mem_bytes=200_000)
    assert state.step == 64
    sizes = []
    for s, _, f, _ in stream(F, Ft, 640)():
        state.offer(s, *centred_units(f, np.float64))
        sizes.append(state.nbytes)
    assert sizes[0] == sizes[-1] <= 200_000
    with np.errstate(invalid="ignore"):  # the constant unit
        r = np.abs(np.corrcoef(F.T, V.T)[:1280, 1280:])
    r[3] = 0
    np.testing.assert_array_equal(state.index(), np.argsort(-r.T, axis=1, kind="stable")[:, :50])


def test_equal_scores_keep_the_earlier_unit():
    """Duplicated units: the lower index is kept (k=1) and ranked first, as on the CPU, also
    when the duplicate arrives in a later chunk and the earlier unit in a later merge step."""
    F, Ft, V = layer(seed=3, n_units=256, n_vox=4)
    F[:, 200] = F[:, 10]
    Ft[:, 200] = Ft[:, 10]
    V[:, 0] = F[:, 10] + 0.1 * np.random.default_rng(0).standard_normal(F.shape[0])
    V[:, 1] = 0.0  # constant voxel: every score 0, units by index
    for step in (64, 256):
        index, _, _ = select_units(stream(F, Ft, step), V, 1, device="torch-cpu")
        assert index[0, 0] == 10 and index[1, 0] == 0
        full, _, _ = select_units(stream(F, Ft, step), V, 0, device="torch-cpu")
        assert list(full[0, :2]) == [10, 200]
        np.testing.assert_array_equal(full[1], np.arange(256))
        cpu, _, _ = select_units(stream(F, Ft, step), V, 0)
        np.testing.assert_array_equal(full, cpu)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_solve_has_the_cpu_status_codes(dtype):
    """Singular systems (100 units, 40 samples, alpha 1e-12) next to good ones (alpha 10): the
    batched solve gives the CPU's status per voxel (float32 failures redone in float64), NaN
    exactly where the CPU has NaN, and the CPU's predictions elsewhere."""
    F, Ft, V = layer(seed=8, n_train=40, n_test=5, n_units=128, n_vox=6)
    index, _, _ = select_units(stream(F, Ft, 128), V, 100)
    A, T = group_buffers(6, 100, 40, 5, dtype)
    gather_group(stream(F, Ft, 128), index, A, T)
    Yt = np.ascontiguousarray(V.T, dtype=dtype)
    for alpha in (1e-12, 10.0):
        with thread_map(1) as pmap:
            p_cpu, s_cpu = cpu_ridge.solve_voxels(A, T, Yt, alpha, COND_MAX, pmap)
        import torch

        p_t, s_t = torch_encoding.solve_voxels_torch(A, T, Yt, alpha, COND_MAX,
                                                     torch.device("cpu"), batch=4)
        if alpha < 1:
            assert set(s_cpu) <= {FAILED, ILL_CONDITIONED_64} and (s_cpu != SOLVED).all()
        else:
            assert (s_cpu == SOLVED).all()
        assert np.isin(s_t, [SOLVED, REDONE_FLOAT64, FAILED, ILL_CONDITIONED_64]).all()
        assert ((s_t == SOLVED) == (s_cpu == SOLVED)).all()
        np.testing.assert_array_equal(np.isnan(p_t), np.isnan(p_cpu))
        ok = (s_cpu == SOLVED) | (s_cpu == REDONE_FLOAT64)
        if ok.any():
            assert rel(p_t[ok], p_cpu[ok]) < (1e-9 if dtype == np.float64 else 1e-4)


def test_singular_systems_warn_on_torch():
    F, Ft, V = layer(seed=8, n_train=40, n_test=5, n_units=128, n_vox=3)
    with pytest.warns(RuntimeWarning, match="ill-conditioned|not positive definite"):
        fit = encode_voxels(stream(F, Ft, 128), V, n_units=100, alpha=1e-12,
                            dtype=np.float32, device="torch-cpu")
    assert fit.pred.shape == (5, 3)
