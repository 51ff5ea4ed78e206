"""Resources from the allocation (SLURM variables, cgroup limits), the memory plan, and the
SLURM job files written by ``bids_decode slurm`` (no scheduler needed here;
tests/e2e/test_slurm.py runs them on one)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bids_decode import resources
from bids_decode.cli import main, parse_args
from bids_decode.errors import EXIT_NOINPUT
from bids_decode.resources import resolve

NO_CGROUP = Path("/nonexistent-proc")  # no cgroup files: limits unknown


def fake_cgroup(tmp_path, version: int, *, cpu=None, mem=None, parent_mem=None) -> Path:
    """A /proc/self (cgroup + mountinfo) and a cgroup tree with the given limits.

    ``cpu`` is (quota, period) in microseconds; ``mem`` and ``parent_mem`` in bytes.
    """
    proc, fs = tmp_path / "proc", tmp_path / "cgfs"
    proc.mkdir(parents=True)
    if version == 2:
        leaf = fs / "unified" / "jobs" / "job1"
        leaf.mkdir(parents=True)
        (proc / "cgroup").write_text("0::/jobs/job1\n")
        (proc / "mountinfo").write_text(
            f"41 31 0:38 / {fs / 'unified'} rw,relatime - cgroup2 cgroup2 rw\n")
        (leaf / "cpu.max").write_text(f"{cpu[0]} {cpu[1]}\n" if cpu else "max 100000\n")
        (leaf / "memory.max").write_text(f"{mem}\n" if mem else "max\n")
        (leaf.parent / "memory.max").write_text(f"{parent_mem}\n" if parent_mem else "max\n")
    else:
        cpu_dir = fs / "cpu" / "docker" / "abc"
        mem_dir = fs / "memory" / "docker" / "abc"
        cpu_dir.mkdir(parents=True)
        mem_dir.mkdir(parents=True)
        (proc / "cgroup").write_text("4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n0::/\n")
        (proc / "mountinfo").write_text(
            f"32 31 0:29 / {fs / 'cpu'} rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
            f"35 31 0:32 / {fs / 'memory'} rw,relatime - cgroup cgroup rw,memory\n")
        (cpu_dir / "cpu.cfs_quota_us").write_text(f"{cpu[0] if cpu else -1}\n")
        (cpu_dir / "cpu.cfs_period_us").write_text(f"{cpu[1] if cpu else 100000}\n")
        (mem_dir / "memory.limit_in_bytes").write_text(f"{mem or 9223372036854771712}\n")
        (mem_dir.parent / "memory.limit_in_bytes").write_text(
            f"{parent_mem or 9223372036854771712}\n")
    return proc


@pytest.fixture
def many_cpus(monkeypatch):
    """Pretend the affinity mask holds 16 CPUs and the machine has 64 GB."""
    monkeypatch.setattr(resources, "affinity_cpus", lambda: 16)
    monkeypatch.setattr(resources, "_physical_bytes", lambda: 64 * 2**30)


def test_slurm_cpus_per_task_and_mem_per_node(many_cpus):
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "1", "SLURM_MEM_PER_NODE": "2048",
           "SLURM_CPUS_ON_NODE": "1"}
    r = resolve(environ=env, proc=NO_CGROUP)
    assert (r.source, r.nprocs, r.allocated_gb) == ("slurm", 1, 2.0)
    assert r.mem_gb == 2.0 - resources.RESERVE_GB
    assert r.as_dict()["source"] == "slurm" and "SLURM_MEM_PER_NODE=2048" in r.detail


def test_slurm_mem_per_cpu_times_cpus_and_affinity_fallback(many_cpus):
    # no --cpus-per-task: threads from the affinity mask, capped by the CPUs on the node
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_CPU": "3072"}
    r = resolve(environ=env, proc=NO_CGROUP)
    assert (r.source, r.nprocs, r.allocated_gb, r.mem_gb) == ("slurm", 4, 12.0, 11.0)
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "6", "SLURM_MEM_PER_CPU": "1024"}
    r = resolve(environ=env, proc=NO_CGROUP)
    assert (r.nprocs, r.allocated_gb, r.mem_gb) == (6, 6.0, 5.0)
    # a tiny allocation keeps a quarter of it as the budget
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "1", "SLURM_MEM_PER_NODE": "1024"}
    assert resolve(environ=env, proc=NO_CGROUP).mem_gb == 0.25
    # no memory variables (a cluster without memory accounting): the default budget
    r = resolve(environ={"SLURM_JOB_ID": "7"}, proc=NO_CGROUP)
    assert (r.source, r.nprocs, r.mem_gb, r.allocated_gb) == ("slurm", 16, 4.0, None)


def test_command_line_wins(many_cpus):
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "2", "SLURM_MEM_PER_NODE": "8192"}
    r = resolve(3, 5.5, environ=env, proc=NO_CGROUP)
    assert (r.source, r.nprocs, r.mem_gb) == ("cli", 3, 5.5)
    r = resolve(None, 5.5, environ=env, proc=NO_CGROUP)  # only --mem: threads from SLURM
    assert (r.source, r.nprocs, r.mem_gb) == ("slurm", 2, 5.5)
    r = resolve(0, None, environ={}, proc=NO_CGROUP)  # --nprocs 0 = not given
    assert (r.source, r.nprocs, r.mem_gb) == ("default", 16, 4.0)


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_limits(tmp_path, many_cpus, version):
    proc = fake_cgroup(tmp_path, version, cpu=(250000, 100000), mem=6 * 2**30,
                       parent_mem=8 * 2**30)
    assert resources.cgroup_limits(proc) == (2.5, 6 * 2**30)
    r = resolve(environ={}, proc=proc)
    assert (r.source, r.nprocs, r.allocated_gb, r.mem_gb) == ("cgroup", 2, 6.0, 5.0)
    # the parent's limit is tighter: it applies
    proc2 = fake_cgroup(tmp_path / "b", version, mem=8 * 2**30, parent_mem=3 * 2**30)
    r = resolve(environ={}, proc=proc2)
    assert (r.source, r.nprocs, r.allocated_gb) == ("cgroup", 16, 3.0)
    # no limits at all, or a limit above the machine's memory: the defaults
    proc3 = fake_cgroup(tmp_path / "c", version, mem=128 * 2**30)
    r = resolve(environ={}, proc=proc3)
    assert (r.source, r.nprocs, r.mem_gb, r.allocated_gb) == ("default", 16, 4.0, None)


def test_cgroup_ignored_inside_slurm(tmp_path, many_cpus):
    proc = fake_cgroup(tmp_path, 2, cpu=(100000, 100000), mem=2**30)
    env = {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "4", "SLURM_MEM_PER_NODE": "4096"}
    r = resolve(environ=env, proc=proc)
    assert (r.source, r.nprocs, r.allocated_gb) == ("slurm", 4, 4.0)


def test_parse_args_records_resources(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("SLURM_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "2048")
    cfg = parse_args(["/data", "/out", "participant"])
    assert (cfg.nprocs, cfg.mem_gb) == (1, 1.0)
    assert cfg.extra["resources"]["source"] == "slurm"
    cfg = parse_args(["/data", "/out", "participant", "--nprocs", "3", "--mem", "6"])
    assert (cfg.nprocs, cfg.mem_gb, cfg.extra["resources"]["source"]) == (3, 6.0, "cli")
    # --config repeats the decoding options but takes the resources of this allocation
    saved = parse_args(["/data", "/out", "participant", "--nprocs", "2"]).to_dict()
    saved["extra"]["resources"]["source"] = "default"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    cfg = parse_args(["/data", "/out", "participant", "--config", str(path)])
    assert (cfg.nprocs, cfg.extra["resources"]["nprocs"]) == (5, 5)


def test_memory_plan_parts_and_request():
    plan = resources.memory_plan(n_train=1200, n_rows=1250, n_images=1250, n_voxels=4500,
                                 k=500, n_units=300_000, chunk_units=10_000, nprocs=8,
                                 mem_gb=15.0, rss_bytes=2**30)
    assert plan["features"] == 10_000 * 8 * (1250 + 4 * 1250)
    per_unit = 8 * (4 * 4500 + 2 * 1200 + 4 * 501)
    # the kernel's workspace: a sub-batch of 32 float32 (k+1)^2 Gram blocks per thread
    assert plan["decoding"] == 10_000 * per_unit + 32 * 501**2 * 4 * 8
    assert plan["total"] == sum(plan[k] for k in ("now", "design", "features", "decoding",
                                                   "report"))
    assert resources.request_gb(plan["total"]) == int(np.ceil(plan["total"] * 1.2 / 2**30))
    assert resources.request_gb(100) == 2


# ------------------------------------------------------------------------ job file generator

def test_slurm_job_files(tmp_path):
    bids = tmp_path / "bids"
    for s in ("01", "02", "03"):
        (bids / f"sub-{s}").mkdir(parents=True)
    fake = tmp_path / "fake_app"  # prints its arguments instead of decoding
    fake.write_text("#!/bin/bash\necho \"ARGS $*\"\n")
    fake.chmod(0o755)
    jobs = tmp_path / "jobs"
    assert main(["slurm", str(bids), str(tmp_path / "out"), str(jobs), "--unit-shards", "2",
                 "02=1", "--cpus-per-task", "3", "--mem", "5G", "--bids-decode", str(fake),
                 "--app-options", "--features /f.h5 --task imagery"]) == 0
    rows = [r.split("\t") for r in (jobs / "tasks.tsv").read_text().splitlines()[1:]]
    assert rows == [["0", "01", "1/2"], ["1", "01", "2/2"], ["2", "02", "1/1"],
                    ["3", "03", "1/2"], ["4", "03", "2/2"]]
    part = (jobs / "participant.sbatch").read_text()
    assert "#SBATCH --cpus-per-task=3" in part and "#SBATCH --mem=5G" in part
    command = part.rstrip().splitlines()[-1]
    assert "--nprocs" not in command and "--mem" not in command
    for idx, (_, sub, shard) in enumerate(rows):
        res = subprocess.run(["bash", str(jobs / "participant.sbatch")], capture_output=True,
                             text=True, env={**os.environ, "SLURM_ARRAY_TASK_ID": str(idx)})
        assert res.returncode == 0, res.stderr
        assert (f"ARGS {bids} {tmp_path / 'out'} participant --participant-label {sub} "
                f"--unit-shard {shard} --features /f.h5 --task imagery") in res.stdout
    res = subprocess.run(["bash", str(jobs / "group.sbatch")], capture_output=True, text=True)
    assert f"ARGS {bids} {tmp_path / 'out'} group --participant-label 01 02 03 --task " \
           "imagery" in res.stdout
    submit = (jobs / "submit.sh").read_text()
    assert "--array=\"$ARRAY\"" in submit and "--dependency=afterok:" in submit
    assert "ARRAY=${1:-0-4}" in submit


def test_slurm_job_files_in_images(tmp_path):
    bids = tmp_path / "bids"
    (bids / "sub-01").mkdir(parents=True)
    assert main(["slurm", str(bids), str(tmp_path / "out"), str(tmp_path / "a"), "--image",
                 "/p/bids_decode.sif"]) == 0
    line = (tmp_path / "a" / "participant.sbatch").read_text().splitlines()[-1]
    assert line.startswith('apptainer run --cleanenv --env "SLURM_JOB_ID=${SLURM_JOB_ID:-},'
                           'SLURM_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-},')
    assert f"-B {bids}:/data:ro -B {tmp_path / 'out'}:/out" in line
    assert "/p/bids_decode.sif /data /out participant" in line
    assert main(["slurm", str(bids), str(tmp_path / "out"), str(tmp_path / "d"),
                 "--docker-image", "bids_decode:0.1.0"]) == 0
    line = (tmp_path / "d" / "participant.sbatch").read_text().splitlines()[-1]
    assert line.startswith("docker run --rm --network none --read-only")
    assert '--cpus "$SLURM_CPUS_PER_TASK" --memory "${SLURM_MEM_PER_NODE}m"' in line
    for kind in ("a", "d"):
        for name in ("participant.sbatch", "group.sbatch", "submit.sh"):
            res = subprocess.run(["bash", "-n", str(tmp_path / kind / name)],
                                 capture_output=True, text=True)
            assert res.returncode == 0, (kind, name, res.stderr)


def test_slurm_bad_arguments(tmp_path, capsys):
    (tmp_path / "bids" / "sub-01").mkdir(parents=True)
    args = ["slurm", str(tmp_path / "bids"), str(tmp_path / "out"), str(tmp_path / "j")]
    assert main([*args, "--unit-shards", "07=2"]) == 64
    assert "not in the job list" in capsys.readouterr().err
    assert main([*args, "--unit-shards", "0"]) == 64
    assert main([*args, "--bids-decode", str(tmp_path / "nope")]) == EXIT_NOINPUT
    assert main(["slurm", str(tmp_path / "none"), str(tmp_path / "out"),
                 str(tmp_path / "j")]) == EXIT_NOINPUT
