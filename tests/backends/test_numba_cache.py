"""The disk cache of the compiled CPU kernels: per CPU target, and usable from a read-only
image through a private copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_decode.backends import numba_cache


def _warm_up_in_subprocess(env):
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from bids_decode.backends.cpu_kernels import warm_up; "
            "print(json.dumps(warm_up()))")
    # the host's own code path, whatever this test run was started with (CI reruns the
    # decoder tests with NUMBA_CPU_NAME=haswell and BIDS_DECODE_LAPACK=scipy)
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                         "BIDS_DECODE_LAPACK")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, check=True,
                         capture_output=True, text=True)
    return {k: tuple(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.slow
def test_compiled_kernels_are_cached_on_disk_per_cpu(tmp_path):
    """A second process loads the kernels instead of compiling them; another CPU target gets
    its own (numba keys the cache by CPU name and features; LAPACK is a run-time argument)."""
    env = {"BIDS_DECODE_CACHE_DIR": str(tmp_path / "cache")}
    first = _warm_up_in_subprocess(env)
    assert first["_solve_batch"][1] == 2  # compiled: float32 and float64
    second = _warm_up_in_subprocess(env)
    assert all(misses == 0 and hits > 0 for hits, misses in second.values()), second
    import llvmlite.binding as ll

    other = "generic" if ll.get_host_cpu_name() == "haswell" else "haswell"
    haswell = {**env, "NUMBA_CPU_NAME": other, "BIDS_DECODE_LAPACK": "scipy"}
    assert _warm_up_in_subprocess(haswell)["_solve_batch"][1] == 2  # not the host's code
    assert _warm_up_in_subprocess(haswell)["_solve_batch"] == (2, 0)
    assert _warm_up_in_subprocess({**env, "BIDS_DECODE_LAPACK": "scipy"})[
        "_solve_batch"] == (2, 0)  # the same machine code calls either LAPACK


def test_read_only_kernel_cache_is_copied(tmp_path, monkeypatch):
    """An image's read-only cache is used from a writable copy (numba reads only those)."""
    ro = tmp_path / "ro"
    (ro / "numba-x").mkdir(parents=True)
    (ro / "numba-x" / "k.nbi").write_text("index")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv(numba_cache.CACHE_ENV, str(ro))
    monkeypatch.setattr(numba_cache.numba, "__version__", "x")
    monkeypatch.setattr(numba_cache, "_writable", lambda path: False)
    monkeypatch.setattr(numba_cache.numba.config, "CACHE_DIR",
                        numba_cache.numba.config.CACHE_DIR)
    numba_cache.numba_cache_dir.cache_clear()
    monkeypatch.setattr(numba_cache.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    try:
        copy = numba_cache.numba_cache_dir()
        assert copy != str(ro / "numba-x") and (Path(copy) / "k.nbi").read_text() == "index"
        # a second process reuses the copy instead of leaving one more behind
        numba_cache.numba_cache_dir.cache_clear()
        assert numba_cache.numba_cache_dir() == copy
        assert len(list((tmp_path / "tmp").iterdir())) == 1
        # new kernels in the image: a new copy; a copy others can write to is not trusted
        (ro / "numba-x" / "k2.nbi").write_text("index 2")
        numba_cache.numba_cache_dir.cache_clear()
        second = numba_cache.numba_cache_dir()
        assert second != copy and (Path(second) / "k2.nbi").read_text() == "index 2"
        Path(second).chmod(0o777)
        numba_cache.numba_cache_dir.cache_clear()
        third = numba_cache.numba_cache_dir()
        assert third not in (copy, second) and (Path(third) / "k2.nbi").is_file()
    finally:
        numba_cache.numba_cache_dir.cache_clear()
