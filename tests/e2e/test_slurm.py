"""The HPC recipes of docs/hpc.md, run on a real one-node SLURM cluster.

The cluster (scripts/slurm-local.sh: munged, slurmctld, slurmd with a private key, config,
state and ports under the test's tmp dir) is started once per session and only its own daemons
are stopped. The job files come from ``bids_decode slurm``; the app is the ``bids_decode`` of
this Python's environment (the installed package). Every output is compared with a plain run
(all CPUs, the default 4 GB budget) bit for bit.

Skipped, with the reason, where SLURM cannot be set up (not installed, not root): CI installs
``slurm-wlm munge`` first (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bids_decode.outputs.work_files import work_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = Path(sys.executable).parent / "bids_decode"
#: options of every run (plain and SLURM); fc6 is large enough for 3 shards of 4,000 units and,
#: at 1 CPU and 2 GB, two feature chunks in a whole-subject task (one in the plain run)
APP_OPTIONS = ["--roi", "VC", "--n-voxels", "100", "--skip-bids-validation"]
LAYERS = {"conv1": (5, 4, 6), "fc6": (12000,)}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class Cluster:
    """Submit and watch jobs on the test cluster (SLURM_CONF in ``env``)."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.env = {**os.environ, "SLURM_CONF": str(conf),
                    "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}

    def run(self, *cmd, check=True, **kw) -> subprocess.CompletedProcess:
        res = subprocess.run([str(c) for c in cmd], env=self.env, capture_output=True,
                             text=True, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res

    def jobs(self, jobid: str) -> dict[str, dict]:
        """``{task id or '-': {JobState, Reason, ExitCode, StartTime, EndTime}}`` of a job."""
        out = self.run("scontrol", "show", "job", "-o", jobid).stdout
        jobs = {}
        for line in out.splitlines():
            f = dict(re.findall(r"(\w+)=(\S*)", line))
            jobs[f.get("ArrayTaskId", "-")] = f
        return jobs

    def wait(self, jobid: str, timeout: float = 900, done=None) -> dict[str, dict]:
        """Wait until every task of ``jobid`` has ended (or ``done(jobs)`` holds)."""
        t0 = time.time()
        while True:
            jobs = self.jobs(jobid)
            if done(jobs) if done else all(j["JobState"] in TERMINAL for j in jobs.values()):
                return jobs
            if time.time() - t0 > timeout:
                raise AssertionError(f"job {jobid} still running after {timeout} s: {jobs}")
            time.sleep(0.5)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A one-node SLURM cluster, started once; skipped where SLURM cannot be set up."""
    script = ROOT / "scripts" / "slurm-local.sh"
    d = tmp_path_factory.mktemp("slurm")
    res = subprocess.run(["bash", str(script), "start", str(d)], capture_output=True, text=True,
                         env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"})
    if res.returncode == 2:
        pytest.skip(f"SLURM cannot be set up here: {res.stderr.strip()}")
    try:
        assert res.returncode == 0, f"SLURM did not start: {res.stderr}"
        yield Cluster(d / "slurm.conf")
    finally:
        subprocess.run(["bash", str(script), "stop", str(d)], capture_output=True)


@pytest.fixture(scope="module")
def hpc(tmp_path_factory):
    """A simulated dataset (2 subjects) and its plain run: participant and group levels."""
    from bids_decode.simulate import simulate_dataset

    assert APP.is_file(), f"the installed app {APP} is missing (pip install -e .)"
    root = tmp_path_factory.mktemp("hpc")
    sim = simulate_dataset(root / "ds", n_subjects=2, n_train_runs=8, n_test_runs=2,
                           layers=LAYERS, seed=3)
    plain = root / "plain"
    for level in ("participant", "group"):
        res = subprocess.run([str(APP), str(sim["bids_dir"]), str(plain), level,
                              "--features", str(sim["features"]), *APP_OPTIONS],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    return {"root": root, "bids": sim["bids_dir"], "features": sim["features"], "plain": plain}


def write_jobs(hpc, name: str, *more) -> tuple[Path, Path]:
    """``bids_decode slurm``: sub-01 in 3 unit shards, sub-02 whole, 1 CPU and 2 GB a task."""
    out, jobs = hpc["root"] / name / "out", hpc["root"] / name / "jobs"
    opts = " ".join([f"--features {hpc['features']}", *APP_OPTIONS])
    res = subprocess.run([str(APP), "slurm", str(hpc["bids"]), str(out), str(jobs),
                          "--unit-shards", "01=3", "--cpus-per-task", "1", "--mem", "2G",
                          "--time", "00:30:00", "--group-cpus", "1", "--group-mem", "2G",
                          "--app-options", opts, *more], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out, jobs


def submit(cluster, jobs: Path, *array) -> tuple[str, str]:
    ids = cluster.run("bash", jobs / "submit.sh", *array).stdout.split()
    assert len(ids) == 2, ids
    return ids[0], ids[1]


def _datasets(h5: h5py.File) -> list[str]:
    names = []
    h5.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def assert_identical(plain: Path, out: Path) -> int:
    """Every h5 dataset and TSV of the participant and group outputs equal, bit for bit."""
    files = sorted(p.relative_to(plain) for p in plain.rglob("*")
                   if p.suffix in (".h5", ".tsv") and ".bids_decode_work" not in p.parts)
    assert any(f.name.endswith("desc-VC_decoding.h5") for f in files)
    assert any(f.parts[0] == "group" for f in files)
    n, bad = 0, []
    for rel in files:
        assert (out / rel).is_file(), f"{rel} missing from the SLURM run"
        if rel.suffix == ".tsv":
            if (out / rel).read_text() != (plain / rel).read_text():
                bad.append(f"{rel} (text)")
            continue
        with h5py.File(plain / rel) as a, h5py.File(out / rel) as b:
            names = _datasets(a)
            assert names == _datasets(b), rel
            for k in names:
                x, y = a[k][()], b[k][()]
                n += 1
                if np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                    continue
                diff = (f" max |diff| {np.nanmax(np.abs(x.astype(float) - y.astype(float))):.3g}"
                        if x.dtype.kind == "f" else "")
                bad.append(f"{rel}:{k}{diff}")
    assert not bad, f"{len(bad)} of {n} datasets/tables differ from the plain run: {bad}"
    return n


def task_log(jobs: Path, jobid: str, task: int) -> str:
    return (jobs / "logs" / f"bids_decode_{jobid}_{task}.out").read_text()


def test_array_of_shards_and_subjects_then_group(cluster, hpc):
    """The acceptance: tasks 0-2 = the 3 unit shards of sub-01, task 3 = sub-02 whole, at 1 CPU
    and 2 GB without --nprocs/--mem; the group job follows with afterok; outputs bit-identical
    to the plain run; the run config reads source slurm, nprocs 1."""
    out, jobs = write_jobs(hpc, "accept")
    rows = (jobs / "tasks.tsv").read_text().splitlines()[1:]
    assert rows == ["0\t01\t1/3", "1\t01\t2/3", "2\t01\t3/3", "3\t02\t1/1"]
    command = (jobs / "participant.sbatch").read_text().rstrip().splitlines()[-1]
    assert command.startswith(str(APP)) and "--nprocs" not in command and "--mem" not in command
    jid, gid = submit(cluster, jobs)
    pending = cluster.jobs(gid)["-"]
    assert pending["JobState"] == "PENDING" and pending["Dependency"].startswith(f"afterok:{jid}")
    group = cluster.wait(gid)["-"]
    tasks = cluster.wait(jid)
    assert sorted(tasks) == ["0", "1", "2", "3"]
    for t, j in tasks.items():
        assert (j["JobState"], j["ExitCode"]) == ("COMPLETED", "0:0"), (t, j)
        log = task_log(jobs, jid, int(t))
        assert "resources: 1 CPU thread(s), memory budget 1 GB (slurm: SLURM_CPUS_PER_TASK=1, " \
               "SLURM_MEM_PER_NODE=2048)" in log, log[-2000:]
        assert "memory plan:" in log
    assert (group["JobState"], group["ExitCode"]) == ("COMPLETED", "0:0"), group
    assert group["StartTime"] >= max(j["EndTime"] for j in tasks.values())
    for sub, shard in (("01", [3, 3]), ("02", [1, 1])):
        cfg = json.loads((out / f"sub-{sub}" / f"sub-{sub}_task-perception"
            f"_net-simulated_config.json")
                         .read_text())
        assert cfg["unit_shard"] == shard
        assert cfg["provenance"]["resources"]["source"] == "slurm"
        assert cfg["provenance"]["resources"]["nprocs"] == 1
        assert cfg["provenance"]["resources"]["allocated_gb"] == 2.0
        assert (cfg["nprocs"], cfg["mem_gb"]) == (1, 1.0)
    plain_cfg = json.loads((hpc["plain"] / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json")
                           .read_text())
    assert plain_cfg["provenance"]["resources"]["source"] in ("default", "cgroup")
    assert assert_identical(hpc["plain"], out) > 20


def test_failed_task_resubmitted_resumes_and_group_completes(cluster, hpc):
    """Task 1 (sub-01 shard 2/3) is killed after its first layer; the group job then never
    starts; the group level run anyway names the missing shard (exit 66); resubmitting task 1
    reuses its finished layer and the sibling shards, and the new group job completes."""
    out, jobs = write_jobs(hpc, "resume")
    jid, gid = submit(cluster, jobs)
    work = work_folder(out / ".bids_decode_work", "01", "perception", "simulated")
    t0 = time.time()
    while not list(work.glob("roi-VC_layer-conv1_shard-2of3_*.h5")):
        assert time.time() - t0 < 600, "task 1 never wrote its first layer"
        time.sleep(0.05)
    cluster.run("scancel", f"{jid}_1")
    tasks = cluster.wait(jid)
    assert tasks["1"]["JobState"] in ("CANCELLED", "FAILED"), (
        f"task 1 ended {tasks['1']['JobState']} before it could be killed: make fc6 larger")
    assert all(tasks[t]["JobState"] == "COMPLETED" for t in ("0", "2", "3")), tasks
    group = cluster.wait(gid, timeout=120, done=lambda j: j["-"].get("Reason")
                         == "DependencyNeverSatisfied")["-"]
    assert group["JobState"] == "PENDING"
    assert not (out / "sub-01" / "func" / "sub-01_task-perception"
        "_net-simulated_desc-VC_decoding.h5").exists()
    # the group level started anyway (no dependency): exit 66, naming the shard
    early = cluster.run("sbatch", "--parsable", "--wait", jobs / "group.sbatch", check=False)
    early_id = early.stdout.split(";")[0].strip()
    assert early.returncode == 66, early.stderr
    log = (jobs / "logs" / f"bids_decode-group_{early_id}.out").read_text()
    assert "sub-01 ROI VC: shard(s) 2/3 (fc6)" in log, log[-2000:]
    assert not (out / "group").exists()
    # resubmit the failed task and a new group job
    cluster.run("scancel", gid)
    jid2, gid2 = submit(cluster, jobs, "1")
    group = cluster.wait(gid2)["-"]
    assert (group["JobState"], group["ExitCode"]) == ("COMPLETED", "0:0"), group
    assert cluster.jobs(jid2)["1"]["JobState"] == "COMPLETED"
    log = task_log(jobs, jid2, 1)
    assert re.search(r"VC/conv1: reusing roi-VC_layer-conv1_shard-2of3_", log), log[-2000:]
    assert "VC/fc6: 12000 units decoded" in log
    assert_identical(hpc["plain"], out)


def test_task_killed_for_memory_says_what_to_request(cluster, hpc):
    """A task given less memory than the app needs is killed by SLURM; its log says why and
    what to request."""
    out, jobs = write_jobs(hpc, "oom")
    jid = cluster.run("sbatch", "--parsable", "--array=3", "--mem=600M",
                      jobs / "participant.sbatch").stdout.split(";")[0].strip()
    task = cluster.wait(jid)["3"]
    assert task["JobState"] in ("FAILED", "OUT_OF_MEMORY", "CANCELLED"), task
    log = task_log(jobs, jid, 3)
    assert re.search(r"exceeded (job )?memory limit", log, re.I), log[-2000:]
    assert "request --mem=2G or more" in log, log[-2000:]
    app_logs = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert "request --mem=2G or more" in app_logs


def _docker_image() -> str | None:
    from bids_decode import __version__

    name = f"bids_decode:{__version__}"
    if not shutil.which("docker"):
        return None
    res = subprocess.run(["docker", "image", "inspect", name], capture_output=True)
    return name if res.returncode == 0 else None


def test_docker_image_in_slurm(cluster, hpc):
    """The same array in the Docker image (standing in for Apptainer): the app reads its
    resources from the container's cgroup (docker --cpus/--memory from the allocation)."""
    image = _docker_image()
    if image is None:
        pytest.skip("no docker engine with the bids_decode image here (make container-test "
                    "builds it); the Docker-in-SLURM recipe was not run")
    out = hpc["root"] / "docker" / "out"
    jobs = hpc["root"] / "docker" / "jobs"
    feat = Path(hpc["features"])
    opts = " ".join([f"--features /features/{feat.name}", *APP_OPTIONS])
    res = subprocess.run([str(APP), "slurm", str(hpc["bids"]), str(out), str(jobs),
                          "--unit-shards", "01=3", "--cpus-per-task", "1", "--mem", "2G",
                          "--group-cpus", "1", "--group-mem", "2G", "--docker-image", image,
                          "--bind", f"{feat.parent}:/features:ro", "--app-options", opts],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out.chmod(0o777)
    jid, gid = submit(cluster, jobs)
    group = cluster.wait(gid)["-"]
    assert group["JobState"] == "COMPLETED", (group, cluster.jobs(jid))
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json").read_text())
    assert cfg["provenance"]["resources"]["source"] == "cgroup"
    assert cfg["provenance"]["resources"]["nprocs"] == 1
    assert_identical(hpc["plain"], out)
