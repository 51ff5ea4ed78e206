"""Fixtures of the input tests: the ``simulate --motion`` data, simulated and decoded once."""

from __future__ import annotations

import pytest

from tests.features.test_store_chunks import feats  # noqa: F401  (a features file: test_sources)
from tests.inputs.motion_data import accuracy, decode


@pytest.fixture(scope="package")
def moving(tmp_path_factory):
    """A held-out subject with motion, and the aligned data of the same seed."""
    from bids_decode.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("motion")
    kw = dict(n_subjects=1, n_train_runs=10, n_test_runs=2, seed=23)
    return (simulate_dataset(root / "moved", motion=True, **kw),
            simulate_dataset(root / "aligned", **kw))


@pytest.fixture(scope="package")
def reference(moving, tmp_path_factory):
    """Accuracies of the aligned data (:func:`motion_data.accuracy`)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert decode(moving[1], out) == 0
    return accuracy(moving[1], out)
