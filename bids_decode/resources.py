"""CPU threads and memory budget of a run: the command line, else the SLURM allocation, else
the cgroup limits (Docker ``--cpus``/``--memory``), else the defaults.

Inside a SLURM job, when ``--nprocs`` / ``--mem`` are not given:

- threads: ``SLURM_CPUS_PER_TASK``, else the CPUs of the process's affinity mask (at most
  ``SLURM_CPUS_ON_NODE``);
- memory: ``SLURM_MEM_PER_CPU`` x the allocated CPUs, else ``SLURM_MEM_PER_NODE`` (megabytes).

Outside SLURM, cgroup limits (v2 ``cpu.max`` / ``memory.max``, v1 ``cpu.cfs_quota_us`` /
``memory.limit_in_bytes``, the tightest along the process's cgroup path) cap the CPUs of the
affinity mask and set the memory. The memory budget (``--mem``) is the allocation less
:data:`RESERVE_GB` for the process itself (Python, PyTorch, numba, the fMRI samples): the budget
only sizes the unit batches in flight.

The result is recorded in the run configuration as ``provenance.resources``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from bids_decode.backends import resolve_backend

LOGGER = logging.getLogger(__name__)

#: --mem when nothing else says how much memory the run may use (GB).
DEFAULT_MEM_GB = 4.0
#: Memory of the process itself, left out of the budget taken from an allocation (GB).
RESERVE_GB = 1.0
#: Peak memory of a run on a tiny dataset (Python, PyTorch, numba, MKL imported; measured
#: 1.2 GB with /usr/bin/time on the test dataset): an allocation below it is reported.
STARTUP_GB = 1.5
#: What writing the outputs and the HTML report (matplotlib) adds to the peak (bytes; 1.2 GB
#: peak vs 0.86 GB after loading the test dataset).
REPORT_BYTES = 400 * 2**20


@dataclass(frozen=True)
class Resources:
    """Threads and memory budget of one run, and where they came from.

    Attributes
    ----------
    source : str
        ``"cli"`` (both given on the command line), ``"slurm"``, ``"cgroup"`` or ``"default"``
        (where the values not given on the command line came from).
    nprocs : int
        CPU threads.
    mem_gb : float
        Memory budget (``--mem``) in GB.
    allocated_gb : float or None
        Memory of the SLURM allocation or cgroup limit (GB), None when there is none.
    detail : str
        What was read, for the log (e.g. ``"SLURM_CPUS_PER_TASK=1, SLURM_MEM_PER_NODE=2048"``).
    """

    source: str
    nprocs: int
    mem_gb: float
    allocated_gb: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        """The record saved as ``provenance.resources`` of the run configuration."""
        d = {"source": self.source, "nprocs": self.nprocs, "mem_gb": self.mem_gb}
        if self.allocated_gb is not None:
            d["allocated_gb"] = self.allocated_gb
        if self.detail:
            d["detail"] = self.detail
        return d


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _positive_int(environ, name: str) -> int | None:
    try:
        value = int(str(environ.get(name, "")).strip().split("(")[0])
    except ValueError:
        return None
    return value if value > 0 else None


def _budget(allocated_gb: float) -> float:
    """Memory budget for an allocation: the allocation less RESERVE_GB, at least a quarter."""
    return round(max(allocated_gb / 4, allocated_gb - RESERVE_GB), 3)


# ---------------------------------------------------------------------------------- cgroups

def _mounts(proc: Path) -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fstype, super options) of the cgroup mounts in mountinfo."""
    out = []
    try:
        lines = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or not tail[0].startswith("cgroup"):
            continue
        out.append((fields[3], fields[4], tail[0], set(tail[2].split(","))))
    return out


def _cgroup_dirs(proc: Path, controller: str | None) -> list[Path]:
    """Folders of this process's cgroup for ``controller`` (None: the v2 unified one), from the
    process's own folder up to the mount point (limits of the parents apply too)."""
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return []
    path = None
    for line in lines:
        hid, _, rest = line.partition(":")
        names, _, cg_path = rest.partition(":")
        if controller is None and hid == "0" and names == "":
            path = cg_path
        elif controller is not None and controller in names.split(","):
            path = cg_path
    if path is None:
        return []
    for root, mount, fstype, opts in _mounts(proc):
        if (fstype == "cgroup2") != (controller is None):
            continue
        if controller is not None and controller not in opts:
            continue
        rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
        here = Path(mount) / ("" if rel == "." else rel)
        dirs = [here]
        while here != Path(mount) and Path(mount) in here.parents:
            here = here.parent
            dirs.append(here)
        return dirs
    return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_limits(proc: Path = Path("/proc/self")) -> tuple[float | None, int | None]:
    """CPU and memory limits of this process's cgroup (v2, else v1).

    Parameters
    ----------
    proc : Path
        ``/proc/self`` (its ``cgroup`` and ``mountinfo`` files locate the cgroup folders).

    Returns
    -------
    cpus : float or None
        CPU quota / period (e.g. 1.5 for ``docker --cpus=1.5``), the smallest along the path.
    mem_bytes : int or None
        Memory limit, the smallest along the path.
    """
    cpus, mem = [], []
    for d in _cgroup_dirs(proc, None):
        quota = (_read(d / "cpu.max") or "max").split()
        if quota[0] != "max" and len(quota) == 2 and int(quota[1]) > 0:
            cpus.append(int(quota[0]) / int(quota[1]))
        m = _read(d / "memory.max")
        if m and m != "max":
            mem.append(int(m))
    if not cpus:
        for d in _cgroup_dirs(proc, "cpu"):
            q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if q and p and int(q) > 0 and int(p) > 0:
                cpus.append(int(q) / int(p))
    if not mem:
        for d in _cgroup_dirs(proc, "memory"):
            m = _read(d / "memory.limit_in_bytes")
            if m and int(m) < 2**62:  # v1 writes ~2^63 for "no limit"
                mem.append(int(m))
    return (min(cpus) if cpus else None), (min(mem) if mem else None)


def _physical_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# ---------------------------------------------------------------------------------- resolve

def resolve(nprocs: int | None = None, mem_gb: float | None = None, *, environ=None,
            proc: Path = Path("/proc/self")) -> Resources:
    """Threads and memory budget of a run.

    Parameters
    ----------
    nprocs : int or None
        ``--nprocs`` (None or 0: not given).
    mem_gb : float or None
        ``--mem`` in GB (None: not given).
    environ : mapping, optional
        The environment (default ``os.environ``); SLURM's variables are read from it.
    proc : Path
        ``/proc/self``, for the cgroup limits.

    Returns
    -------
    Resources
    """
    environ = os.environ if environ is None else environ
    given_n, given_m = bool(nprocs), mem_gb is not None
    cpus, alloc, detail, source = affinity_cpus(), None, [], "default"
    if environ.get("SLURM_JOB_ID"):
        source = "slurm"
        per_task = _positive_int(environ, "SLURM_CPUS_PER_TASK")
        on_node = _positive_int(environ, "SLURM_CPUS_ON_NODE")
        if per_task:
            cpus = per_task
            detail.append(f"SLURM_CPUS_PER_TASK={per_task}")
        else:
            cpus = min(cpus, on_node or cpus)
            detail.append(f"{cpus} CPUs in the affinity mask")
        per_cpu = _positive_int(environ, "SLURM_MEM_PER_CPU")
        per_node = _positive_int(environ, "SLURM_MEM_PER_NODE")
        if per_cpu:
            n_alloc = per_task or on_node or cpus
            alloc = per_cpu * n_alloc / 1024
            detail.append(f"SLURM_MEM_PER_CPU={per_cpu} x {n_alloc} CPUs")
        elif per_node:
            alloc = per_node / 1024
            detail.append(f"SLURM_MEM_PER_NODE={per_node}")
    else:
        cg_cpus, cg_mem = cgroup_limits(proc)
        phys = _physical_bytes()
        if cg_mem is not None and phys is not None and cg_mem >= phys:
            cg_mem = None  # a limit above the machine's memory limits nothing
        if cg_cpus is not None and cg_cpus < cpus:
            cpus = max(1, math.floor(cg_cpus))
            detail.append(f"cgroup CPU quota {cg_cpus:g}")
            source = "cgroup"
        if cg_mem is not None:
            alloc = cg_mem / 2**30
            detail.append(f"cgroup memory limit {alloc:.3g} GB")
            source = "cgroup"
    if given_n and given_m:
        source, detail = "cli", []
    return Resources(
        source=source,
        nprocs=int(nprocs) if given_n else int(cpus),
        mem_gb=float(mem_gb) if given_m else (_budget(alloc) if alloc else DEFAULT_MEM_GB),
        allocated_gb=None if alloc is None else round(alloc, 3),
        detail=", ".join(detail),
    )


def log_resources(res: Resources) -> None:
    """Say what the run uses; warn when the allocation is below what the app needs to start."""
    LOGGER.info("resources: %d CPU thread(s), memory budget %.3g GB (%s%s)", res.nprocs,
                res.mem_gb, res.source, f": {res.detail}" if res.detail else "")
    if res.allocated_gb is not None and res.allocated_gb < STARTUP_GB:
        LOGGER.warning(
            "this job has %.3g GB (%s) but bids_decode needs about %.1f GB before it reads any "
            "data (Python, PyTorch, numba): it will likely be killed for memory; request "
            "--mem=%dG or more (SLURM: #SBATCH --mem=%dG).", res.allocated_gb, res.detail,
            STARTUP_GB, math.ceil(STARTUP_GB + 0.5), math.ceil(STARTUP_GB + 0.5))


# ------------------------------------------------------------------------------ memory plan

def current_rss_bytes() -> int:
    """Resident memory of this process now (``/proc/self/status``; peak where unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_plan(*, n_train: int, n_rows: int, n_images: int, n_voxels: int, k: int,
                n_units: int, chunk_units: int, nprocs: int, mem_gb: float,
                itemsize: int = 4, rss_bytes: int | None = None) -> dict:
    """Peak memory a participant run is expected to reach, in bytes, by part.

    Parameters
    ----------
    n_train : int
        Training samples.
    n_rows : int
        Feature rows read per unit (training samples + test blocks).
    n_images : int
        Images in the features file.
    n_voxels : int
        Voxels of the largest ROI.
    k : int
        Voxels selected per unit.
    n_units : int
        Units of the largest layer (of this shard).
    chunk_units : int
        Units read from the features file at a time (from ``--mem``).
    nprocs : int
        Threads.
    mem_gb : float
        Memory budget (``--mem``).
    itemsize : int
        Bytes per value of the solver (4 for float32).
    rss_bytes : int, optional
        Memory in use now (default: measured).

    Returns
    -------
    dict
        ``now``, ``design``, ``features``, ``decoding`` and ``total`` (bytes).
    """
    rss = current_rss_bytes() if rss_bytes is None else int(rss_bytes)
    p = max(1, int(n_voxels))
    units = max(1, min(int(chunk_units), int(n_units)))
    # the design: X with bias (dtype), centred/scaled and float64 copies, the Gram matrix
    design = n_train * (p + 1) * (itemsize + 16) + (p + 1) ** 2 * (itemsize + 8)
    # one chunk of targets as _chunk_units counts it (float64 rows and their z-scored copies)
    features = units * 8 * (n_images + 4 * n_rows)
    # the CPU decoder's own model (decoding.batch_size_for), its tasks within half the budget
    per_unit, fixed = resolve_backend("cpu").memory_model(n_train, p, k, itemsize, nprocs)
    decoding = min(units * per_unit, int(mem_gb * 2**30 * 0.5)) + fixed
    total = rss + design + features + decoding + REPORT_BYTES
    return {"now": rss, "design": design, "features": features, "decoding": decoding,
            "report": REPORT_BYTES, "total": total}


def request_gb(total_bytes: int) -> int:
    """``--mem`` to request for a run expected to peak at ``total_bytes``: 20% headroom, whole
    GB, at least 2."""
    return max(2, math.ceil(total_bytes * 1.2 / 2**30))


def log_memory_plan(label: str, plan: dict, allocated_gb: float | None) -> None:
    """One log line with the plan and what to request; a warning when the allocation is
    smaller than the plan."""
    gb = {k: v / 2**30 for k, v in plan.items()}
    req = request_gb(plan["total"])
    msg = (f"{label}: memory plan: {gb['now']:.2f} GB in use now, design {gb['design']:.2f} GB, "
           f"feature chunk {gb['features']:.2f} GB, decoding {gb['decoding']:.2f} GB, report "
           f"{gb['report']:.2f} GB: this job "
           f"needs about {gb['total']:.2f} GB; request --mem={req}G (SLURM: #SBATCH --mem={req}G)"
           " if it is killed for memory")
    if allocated_gb is not None and gb["total"] > allocated_gb:
        LOGGER.warning("%s; it has %.3g GB.", msg, allocated_gb)
    else:
        LOGGER.info("%s.", msg)


def record(config) -> dict:
    """``provenance.resources`` of a run: as resolved by the command line, else the config's
    own values (``nprocs`` 0 counted as the CPUs this process may use)."""
    if "resources" in config.extra:
        return dict(config.extra["resources"])
    return {"source": "default", "nprocs": config.nprocs or affinity_cpus(),
            "mem_gb": config.mem_gb}
