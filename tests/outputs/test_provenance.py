"""Provenance and progress: rerun from the saved config; progress bars only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bids_decode.cli import main

pytestmark = pytest.mark.slow  # participant reruns and subprocesses of the CLI


def test_rerun_from_config_gives_identical_accuracies(sim, participant_out, tmp_path):
    cfg_path = participant_out / "sub-01" / "sub-01_task-perception_net-simulated_config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["participant_label"] == ["01"] and cfg["roi"] == ["VC", "LVC"]
    assert cfg["provenance"]["versions"]["bids_decode"]
    from bids_decode.backends.lapack import lapack_provider

    cpu = cfg["provenance"]["cpu"]  # what a cross-machine comparison needs to know
    assert cpu["model"] and cpu["lapack"] == lapack_provider()
    assert cpu["kernel_isa"] in ("avx512", "avx2", "sse") and cpu["host_isa"] in (
        "avx512", "avx2", "sse")
    out = tmp_path / "again"
    assert main([str(sim["bids_dir"]), str(out), "participant", "--config", str(cfg_path)]) == 0
    assert not (out / "sub-02").exists()  # the config names its subject
    for roi in ("VC", "LVC"):
        name = f"sub-01/func/sub-01_task-perception_net-simulated_desc-{roi}_decoding.h5"
        with h5py.File(participant_out / name) as a, h5py.File(out / name) as b:
            for layer in sim["truth"]:
                np.testing.assert_array_equal(a[layer]["accuracy"][()],
                                              b[layer]["accuracy"][()])


def test_generated_by_and_logs(participant_out):
    desc = json.loads((participant_out / "dataset_description.json").read_text())
    gen = desc["GeneratedBy"][0]
    from bids_decode import __version__

    assert gen["Version"] == __version__
    logs = list((participant_out / "logs").glob("*.log"))
    assert logs and any("decoded" in f.read_text() for f in logs)


def _run_on(ds, out, use_pty: bool):
    cmd = [sys.executable, "-m", "bids_decode", str(ds["bids_dir"]), str(out), "participant",
           "--features", str(ds["features"]), "--participant-label", "01", "--layers", "fc8",
           "--n-voxels", "50", "--skip-bids-validation"]
    env = {k: v for k, v in os.environ.items() if k != "BIDS_DECODE_PROGRESS"}
    if not use_pty:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        return res.returncode, res.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("use_pty", [True, False])
def test_progress_bars_only_on_a_terminal(sim, tmp_path, use_pty):
    code, text = _run_on(sim, tmp_path / "out", use_pty)
    assert code == 0, text
    has_bar = "sub-01 runs" in text and "%|" in text  # tqdm: "sub-01 runs: 100%|####| 6/6"
    assert has_bar == use_pty, text[-2000:]


@pytest.mark.parametrize("env, isa", [({"NUMBA_CPU_NAME": "haswell"}, "avx2"),
                                      ({"NUMBA_CPU_NAME": "generic"}, "sse"),
                                      ({"NUMBA_CPU_NAME": "skylake-avx512"}, "avx512")])
def test_kernel_isa_follows_numba_cpu_name(env, isa):
    code = "from bids_decode.backends import cpu_info; print(cpu_info()['kernel_isa'])"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == isa
