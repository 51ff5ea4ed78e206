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


@pytest.fixture
def lapack_choice(monkeypatch):
    """Switch the CPU kernel's LAPACK for one test (the choice is cached per process)."""
    from bids_decode import _backends

    def use(name):
        monkeypatch.setenv(_backends.LAPACK_ENV, name)
        _backends.lapack_provider.cache_clear()
        _backends._lapack_pair.cache_clear()

    yield use
    monkeypatch.delenv(_backends.LAPACK_ENV, raising=False)
    _backends.lapack_provider.cache_clear()
    _backends._lapack_pair.cache_clear()
