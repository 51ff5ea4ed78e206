"""The CPU kernel's LAPACK: the variable that forces one is checked, and the automatic choice
is a calibration kept per machine."""

from __future__ import annotations

import pytest

from bids_decode.backends import lapack, numba_cache
from bids_decode.errors import UsageError


def test_lapack_choice_checked(lapack_choice):
    lapack_choice("openblas")
    with pytest.raises(UsageError, match="BIDS_DECODE_LAPACK must be 'mkl', 'scipy'"):
        lapack.lapack_provider()


def test_lapack_chosen_by_a_cached_calibration(tmp_path, monkeypatch, lapack_choice):
    """Unset BIDS_DECODE_LAPACK: MKL only where its Cholesky is clearly faster; the choice is
    kept per machine, so later timing noise cannot flip it (and the bits with it)."""
    if lapack._mkl_library() is None:
        pytest.skip("the mkl package is not installed here")
    monkeypatch.delenv(lapack.LAPACK_ENV, raising=False)  # set in CI's AVX2 rerun
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    numba_cache.numba_cache_dir.cache_clear()
    speeds = {"mkl": 1.0, "scipy": 1.05}
    monkeypatch.setattr(lapack, "_time_potrf", lambda provider: speeds[provider])
    try:
        for mkl_s, want in [(1.0, "scipy"), (0.5, "mkl")]:  # 5% faster is not enough
            speeds["mkl"] = mkl_s
            (tmp_path / "lapack-choice.json").unlink(missing_ok=True)
            lapack.calibrate_lapack.cache_clear()
            lapack.lapack_provider.cache_clear()
            assert lapack.lapack_provider() == want
        speeds["mkl"] = 10.0  # slower now, but the machine's choice is cached
        lapack.calibrate_lapack.cache_clear()
        lapack.lapack_provider.cache_clear()
        assert lapack.lapack_provider() == "mkl"
        lapack_choice("scipy")  # the variable still decides
        assert lapack.lapack_provider() == "scipy"
    finally:
        lapack.calibrate_lapack.cache_clear()
        numba_cache.numba_cache_dir.cache_clear()
