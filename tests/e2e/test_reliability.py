"""Killed runs resume to identical outputs; parallel jobs share one OUTPUT_DIR safely."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.inputs.validation import find_validator, validator_issues

pytestmark = pytest.mark.slow  # SIGKILL and rerun, parallel jobs, shards: minutes

ROIS = ["VC", "LVC", "HVC", "V1"]


@pytest.fixture(scope="module")
def ds4(tmp_path_factory):
    from bids_decode.simulate import simulate_dataset

    # layers of 1 to 5 grid blocks (64 units), so three unit shards split most of them
    return simulate_dataset(tmp_path_factory.mktemp("rel") / "ds", n_subjects=4,
                            n_train_runs=6, n_test_runs=2, seed=5,
                            layers={"conv1": (5, 8, 7), "conv2": (7, 3, 3), "fc6": (200,),
                                    "fc8": (41,)})


def _cmd(ds, out, *extra):
    return [sys.executable, "-m", "bids_decode", str(ds["bids_dir"]), str(out), "participant",
            "--features", str(ds["features"]), "--n-voxels", "40", "--skip-bids-validation",
            "--roi", *ROIS, *extra]


def _outputs(out: Path) -> dict:
    """Every number of every output file, keyed by file and dataset."""
    res = {}
    for f in sorted(out.glob("sub-*/func/*_decoding.h5")):
        with h5py.File(f) as h5:
            def visit(name, obj, f=f):
                if isinstance(obj, h5py.Dataset):
                    res[(f.name, name)] = obj[()]
            h5.visititems(visit)
    for f in sorted(out.glob("sub-*/func/*_decoding.tsv")):
        df = pd.read_csv(f, sep="\t").sort_values(["roi", "layer"]).reset_index(drop=True)
        res[(f.name, "tsv")] = df
    return res


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def _check_no_half_written(out: Path):
    """Any output that exists is complete: it opens and holds every layer."""
    for f in out.glob("sub-*/func/*_decoding.h5"):
        with h5py.File(f) as h5:
            assert {"conv1", "conv2", "fc6", "fc8", "stimulus_name"} <= set(h5)
            for lay in ("conv1", "fc8"):
                assert h5[lay]["accuracy"].shape == h5[lay]["rank"].shape


@pytest.fixture(scope="module")
def reference(ds4, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    t0 = time.time()
    subprocess.run(_cmd(ds4, out, "--participant-label", "01"), check=True,
                   capture_output=True)
    return out, time.time() - t0


def test_rerun_is_bit_identical(ds4, reference, tmp_path):
    out = tmp_path / "again"
    subprocess.run(_cmd(ds4, out, "--participant-label", "01"), check=True,
                   capture_output=True)
    _assert_same(_outputs(reference[0]), _outputs(out))


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_sigkill_then_rerun_gives_identical_outputs(ds4, reference, tmp_path, fraction):
    ref_out, wall = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(ds4, out, "--participant-label", "01"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(wall * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _check_no_half_written(out)
    done = subprocess.run(_cmd(ds4, out, "--participant-label", "01"), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    _assert_same(_outputs(ref_out), _outputs(out))


def test_rerun_reuses_finished_work(ds4, reference, tmp_path):
    out = tmp_path / "resume"
    first = subprocess.run(_cmd(ds4, out, "--participant-label", "01", "--layers", "fc8"),
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(_cmd(ds4, out, "--participant-label", "01"), capture_output=True,
                            text=True)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("reusing") == len(ROIS)  # fc8 of every ROI
    _assert_same(_outputs(reference[0]), _outputs(out))


def test_four_parallel_participant_jobs(ds4, tmp_path):
    out = tmp_path / "parallel"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    procs = [subprocess.Popen(_cmd(ds4, out, "--participant-label", s), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in ("01", "02", "03", "04")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for s in ("01", "02", "03", "04"):
        tsv = pd.read_csv(out / f"sub-{s}" / "func" / f"sub-{s}_task-perception"
            f"_net-simulated_decoding.tsv",
                          sep="\t")
        assert len(tsv) == len(ROIS) * 4
        for roi in ROIS:
            f = out / f"sub-{s}" / "func" / (f"sub-{s}_task-perception"
                                             f"_net-simulated_desc-{roi}_decoding.h5")
            with h5py.File(f) as h5:
                assert h5.attrs["subject"] == s and h5.attrs["roi"] == roi
    assert (out / "dataset_description.json").is_file()
    if find_validator() is not None:
        errors = [i for i in validator_issues(out, find_validator())
                  if i.get("severity") == "error"]
        assert errors == []


def test_unit_shards_merge_into_the_unsharded_outputs(ds4, reference, tmp_path):
    out = tmp_path / "shards"
    for i in (2, 3, 1):
        done = subprocess.run(_cmd(ds4, out, "--participant-label", "01", "--unit-shard",
                                   f"{i}/3"), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        if i != 1:  # outputs appear only once every shard is done
            assert not list(out.glob("sub-01/func/*_decoding.h5"))
    # bit for bit (the partition-invariance contract), not to a tolerance
    _assert_same(_outputs(reference[0]), _outputs(out))


def test_shards_split_the_layers():
    """The shards above are not trivially empty: 280 units make five grid blocks."""
    from bids_decode.utils.grid import shard_range

    assert [shard_range(280, (i, 3)) for i in (1, 2, 3)] == [(0, 64), (64, 192), (192, 280)]
    assert [shard_range(41, (i, 3)) for i in (1, 2, 3)] == [(0, 0), (0, 0), (0, 41)]
    for n, n_shards in [(1, 1), (64, 2), (65, 7), (300_000, 16)]:
        bounds = [shard_range(n, (i, n_shards)) for i in range(1, n_shards + 1)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] and a[1] % 64 == 0 for a, b in zip(bounds, bounds[1:]))


def test_one_thread_and_a_small_memory_budget_give_the_same_bits(ds4, reference, tmp_path):
    """--nprocs 1 --mem 0.05: other batches, tasks and chunks; the same outputs."""
    out = tmp_path / "small"
    done = subprocess.run(_cmd(ds4, out, "--participant-label", "01", "--nprocs", "1",
                               "--mem", "0.05"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same(_outputs(reference[0]), _outputs(out))
