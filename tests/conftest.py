"""Shared fixtures: a simulated ds001246-shaped dataset and one participant run over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("BIDS_DECODE_PROGRESS", "0")
REAL = Path(__file__).resolve().parents[1] / "bids_decode" / "data" / "ds001246"


@pytest.fixture(scope="session")
def real_events_dir() -> Path:
    """Real ds001246 events (sub-01..03, CC0)."""
    return REAL


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """2 subjects, 20 training + 4 test runs each, real events, planted decodability."""
    from bids_decode.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("sim") / "ds", n_subjects=2,
                            n_train_runs=20, n_test_runs=4, seed=1)


@pytest.fixture(scope="session")
def participant_out(sim, tmp_path_factory):
    """Participant level run by the CLI on both subjects (VC and LVC, 100 voxels/unit)."""
    from bids_decode.cli import main

    out = tmp_path_factory.mktemp("out") / "derivatives"
    code = main([str(sim["bids_dir"]), str(out), "participant", "--features",
                 str(sim["features"]), "--roi", "VC", "LVC", "--n-voxels", "100"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def bdpy_python() -> Path:
    """The Python of the reference venv ``.bench-venv`` (bdpy 0.26, fastl2lir 0.11: they need
    numpy < 2.4, so they stay out of the main venv), created by
    ``benchmarks/setup_bench_venv.sh`` when missing (about 2 minutes); the test skips, saying
    why, only when it cannot be created."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    py = root / ".bench-venv" / "bin" / "python"

    def ok():
        return py.exists() and subprocess.run(
            [str(py), "-c", "import bdpy"], capture_output=True).returncode == 0

    if not ok():
        r = subprocess.run(["bash", "benchmarks/setup_bench_venv.sh", sys.executable], cwd=root,
                           capture_output=True, text=True, timeout=1200)
        if r.returncode or not ok():
            reason = ("the bdpy venv (.bench-venv) could not be created by "
                      f"benchmarks/setup_bench_venv.sh: {(r.stderr or r.stdout)[-300:]}")
            print(reason)
            pytest.skip(reason)
    return py


@pytest.fixture
def lapack_choice(monkeypatch):
    """Switch the CPU kernel's LAPACK for one test (the choice is cached per process)."""
    from bids_decode.backends import lapack

    def use(name):
        monkeypatch.setenv(lapack.LAPACK_ENV, name)
        lapack.lapack_provider.cache_clear()
        lapack.kernel_routines.cache_clear()

    yield use
    monkeypatch.delenv(lapack.LAPACK_ENV, raising=False)
    lapack.lapack_provider.cache_clear()
    lapack.kernel_routines.cache_clear()


# ------------------------------------------------------------------ skipped tests in CI
# With BIDS_DECODE_STRICT_SKIPS=1 (set by .ci/run), a skipped test fails the session unless
# tests/skip_allowlist.txt names it: a skip there means the machine lacks something CI cannot
# install (a GPU, a mount privilege), never a tool that CI could have installed.
STRICT_SKIPS_ENV = "BIDS_DECODE_STRICT_SKIPS"
_SKIPPED: list[tuple[str, str]] = []


def _skip_allowlist() -> list[str]:
    path = Path(__file__).with_name("skip_allowlist.txt")
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln]


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
            report.longrepr)
        _SKIPPED.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    from fnmatch import fnmatch

    if os.environ.get(STRICT_SKIPS_ENV) != "1" or not _SKIPPED:
        return
    allowed = _skip_allowlist()
    bad = [(n, r) for n, r in _SKIPPED if not any(fnmatch(n, pat) for pat in allowed)]
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr:
        tr.ensure_newline()
    write = tr.write_line if tr else print
    write(f"== {len(_SKIPPED)} skipped test(s); allowed by tests/skip_allowlist.txt: "
          f"{len(_SKIPPED) - len(bad)}")
    for n, r in bad:
        write(f"NOT ALLOWED TO SKIP: {n}: {r}")
    if bad and session.exitstatus == 0:
        session.exitstatus = 1
