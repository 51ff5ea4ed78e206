"""Backend objects: one resolution of --device for the config, the features, the decoder and the
permutation tests."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.backends import CPUBackend, TorchBackend, resolve_backend
from bids_decode.config import RunConfig
from bids_decode.decoding import batch_size_for, predict_chunk, prepare_design
from bids_decode.errors import UsageError
from bids_decode.evaluation import permutation


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "CPU", "gpu", ""])
def test_bad_device_is_one_usage_error_everywhere(bad, tmp_path):
    msg = rf"--device must be cpu, cuda or cuda:N; got '{bad}'\."
    with pytest.raises(UsageError, match=msg):
        resolve_backend(bad)
    with pytest.raises(UsageError, match=msg):
        RunConfig(bids_dir=str(tmp_path), output_dir=str(tmp_path / "o"),
                  analysis_level="participant", device=bad)
    with pytest.raises(UsageError, match=msg):
        prepare_design(np.ones((3, 2)), 1.0, device=bad)
    with pytest.raises(UsageError, match=msg):
        permutation.null_correlations(np.ones((3, 1)), np.ones((3, 1)), np.zeros((1, 3), int),
                                      device=bad)


def test_one_shared_object_per_device():
    cpu = resolve_backend("cpu")
    assert isinstance(cpu, CPUBackend) and cpu is resolve_backend("cpu")
    assert resolve_backend(cpu) is cpu
    for name in ("torch-cpu", "cuda", "cuda:1"):
        be = resolve_backend(name)
        assert isinstance(be, TorchBackend) and be.name == name and be is resolve_backend(name)
    design = prepare_design(np.random.default_rng(0).standard_normal((9, 4)), 1.0)
    assert design.backend is cpu and design.device == "cpu"


def test_device_state_is_owned_by_the_backend_and_released_with_the_design():
    """The torch backend keeps the design's tensors per design, not in the design; they go
    when the design does."""
    import gc

    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((20, 9)), rng.standard_normal((20, 3))
    be = resolve_backend("torch-cpu")
    design = prepare_design(X, 1.0, device="torch-cpu")
    predict_chunk(design, Y, X[:4], 3)
    assert design in be._states and "arrays" in be._states[design]
    assert not any(k == "torch" for k in design._cache)
    n = len(be._states)
    del design
    gc.collect()
    assert len(be._states) == n - 1


def test_batch_size_models_differ_by_backend():
    """The torch backend counts the gathered (k+1)^2 blocks per unit; the CPU backend the
    kernel's sub-batch of 32 blocks per thread."""
    X = np.random.default_rng(2).standard_normal((50, 3000))
    cpu = batch_size_for(prepare_design(X, 1.0), 500, 1 << 30, 1)
    gpu = batch_size_for(prepare_design(X, 1.0, device="torch-cpu"), 500, 1 << 30, 1)
    per_unit = 8 * (4 * 3000 + 2 * 50 + 4 * 501)
    assert cpu == (2**30 - 32 * 501**2 * 8) // per_unit  # float64 design: itemsize 8
    assert gpu == (2**30 - 8 * 501**2) // (per_unit + (8 + 8 * 3) * 501**2 // 8)
