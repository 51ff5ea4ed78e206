"""``bids_decode slurm``: write the SLURM job files of a dataset (no copy and paste from docs).

Writes into JOBS_DIR:

- ``tasks.tsv``: one row per array task: index, subject, unit shard;
- ``participant.sbatch``: the array job, one (subject, unit shard) per task, with the app run
  from an installed ``bids_decode`` (a virtual environment), an Apptainer image or a Docker
  image; ``--nprocs``/``--mem`` are left out, so the app takes them from the allocation;
- ``group.sbatch``: the group level over the same subjects;
- ``submit.sh``: submits the array, then the group job with ``--dependency=afterok`` on it;
  ``submit.sh 1,4`` resubmits array tasks 1 and 4 (and a new group job after them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from bids_decode.errors import EXIT_OK, MissingInputError, OutputError, UsageError

CONTAINER_DATA, CONTAINER_OUT = "/data", "/out"
#: the variables bids_decode.resources reads, passed into an Apptainer container
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_MEM_PER_CPU",
              "SLURM_MEM_PER_NODE")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset (as the nodes see it)")
    p.add_argument("output_dir", type=Path, help="the output folder (shared by every task)")
    p.add_argument("jobs_dir", type=Path, help="where the job files are written")
    p.add_argument("--participant-label", "--participant_label", nargs="+", default=[],
                   metavar="LABEL", help="subjects (default: every sub-* folder of BIDS_DIR)")
    p.add_argument("--unit-shards", "--unit_shards", nargs="+", default=["1"],
                   metavar="N|LABEL=N",
                   help="unit shards per subject: N for all, or LABEL=N per subject "
                        "(default 1: one task per subject)")
    p.add_argument("--cpus-per-task", "--cpus_per_task", type=int, default=8,
                   help="CPUs of each array task (default 8)")
    p.add_argument("--mem", default="16G", help="memory of each array task (default 16G)")
    p.add_argument("--time", default="04:00:00", help="time limit of each array task")
    p.add_argument("--group-cpus", "--group_cpus", type=int, default=2)
    p.add_argument("--group-mem", "--group_mem", default="8G")
    p.add_argument("--group-time", "--group_time", default="01:00:00")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--sbatch-option", "--sbatch_option", action="append", default=[],
                   metavar="OPTION", help="more #SBATCH lines, e.g. --sbatch-option=--gres=gpu:1")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--bids-decode", "--bids_decode", default=None, metavar="PATH",
                     help="the app's executable (default: the bids_decode of this Python, "
                          f"{Path(sys.executable).parent / 'bids_decode'})")
    run.add_argument("--image", default=None, metavar="SIF",
                     help="run in this Apptainer image (BIDS_DIR bound at /data read-only, "
                          "OUTPUT_DIR at /out)")
    run.add_argument("--docker-image", "--docker_image", default=None, metavar="NAME",
                     help="run in this Docker image (same binds; --cpus/--memory from the "
                          "allocation, which the app reads from its cgroup)")
    p.add_argument("--bind", action="append", default=[], metavar="HOST:CONTAINER[:ro]",
                   help="more folders for the container (e.g. the features file's)")
    p.add_argument("--app-options", "--app_options", default="", metavar="'OPTIONS'",
                   help="options of every participant task, one string, paths as the app sees "
                        "them (e.g. \"--features /out/features.h5 --roi VC\")")
    p.add_argument("--group-options", "--group_options", default="", metavar="'OPTIONS'",
                   help="options of the group job (default: --task from --app-options)")


def _subjects(bids_dir: Path, labels: list[str]) -> list[str]:
    if labels:
        return [str(x).removeprefix("sub-") for x in labels]
    if not bids_dir.is_dir():
        raise MissingInputError(f"BIDS_DIR {bids_dir} does not exist; give the dataset as the "
                                "login node sees it, or list the subjects with "
                                "--participant-label.")
    subs = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subs:
        raise MissingInputError(f"BIDS_DIR {bids_dir} has no sub-* folders.")
    return subs


def _shards(subjects: list[str], spec: list[str]) -> dict[str, int]:
    default, per = 1, {}
    for item in spec:
        name, sep, value = item.rpartition("=")
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--unit-shards takes N or LABEL=N with N >= 1; got {item!r}.")
        if sep:
            per[name.removeprefix("sub-")] = n
        else:
            default = n
    unknown = sorted(set(per) - set(subjects))
    if unknown:
        raise UsageError(f"--unit-shards names subjects that are not in the job list: "
                         f"{unknown} (subjects: {subjects}).")
    return {s: per.get(s, default) for s in subjects}


def task_table(subjects: list[str], shards: dict[str, int]) -> list[tuple[int, str, str]]:
    """Array tasks: (index, subject, ``i/N``), subject by subject, shards in order."""
    rows = []
    for sub in subjects:
        n = shards[sub]
        rows += [(len(rows) + i - 1, sub, f"{i}/{n}") for i in range(1, n + 1)]
    return rows


def _header(name: str, cpus: int, mem: str, time: str, log: str, args) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --cpus-per-task={cpus}",
             f"#SBATCH --mem={mem}", f"#SBATCH --time={time}", f"#SBATCH --output={log}"]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    if args.account:
        lines.append(f"#SBATCH --account={args.account}")
    lines += [f"#SBATCH {o}" for o in args.sbatch_option]
    return lines


def _app(args, bids: Path, out: Path) -> tuple[list[str], str, str]:
    """(setup lines, the command before the app's arguments, bids/out as the app sees them)."""
    q = shlex.quote
    if args.image or args.docker_image:
        binds = [f"{bids}:{CONTAINER_DATA}:ro", f"{out}:{CONTAINER_OUT}", *args.bind]
        if args.image:
            flags = " ".join(f"-B {q(b)}" for b in binds)
            # --cleanenv drops the host's variables: pass SLURM's resources on explicitly
            env = ",".join(f"{v}=${{{v}:-}}" for v in SLURM_VARS)
            cmd = (f"apptainer run --cleanenv --env \"{env}\" {flags} "
                   f"-B \"${{TMPDIR:-/tmp}}:/tmp\" {q(args.image)}")
        else:
            flags = " ".join(f"-v {q(b)}" for b in binds)
            cmd = ("docker run --rm --network none --read-only --tmpfs /tmp "
                   "--user \"$(id -u):$(id -g)\" --cpus \"$SLURM_CPUS_PER_TASK\" "
                   "--memory \"${SLURM_MEM_PER_NODE}m\" "
                   f"{flags} {q(args.docker_image)}")
        return [], cmd, f"{CONTAINER_DATA} {CONTAINER_OUT}"
    exe = Path(args.bids_decode or Path(sys.executable).parent / "bids_decode")
    if not exe.is_file():
        raise MissingInputError(f"The app's executable {exe} does not exist; give it with "
                                "--bids-decode PATH (in a virtual environment: VENV/bin/"
                                "bids_decode), or run in an image with --image / --docker-image.")
    return [], q(str(exe.absolute())), f"{q(str(bids))} {q(str(out))}"


def _task_option(options: str) -> str:
    words = shlex.split(options)
    for i, w in enumerate(words):
        if w in ("--task",) and i + 1 < len(words):
            return f"--task {shlex.quote(words[i + 1])}"
        if w.startswith("--task="):
            return shlex.quote(w)
    return ""


def write_jobs(args) -> dict[str, Path]:
    """Write the job files; return their paths by name."""
    bids, out = args.bids_dir.absolute(), args.output_dir.absolute()
    jobs = args.jobs_dir.absolute()
    subjects = _subjects(bids, args.participant_label)
    rows = task_table(subjects, _shards(subjects, args.unit_shards))
    setup, cmd, io = _app(args, bids, out)
    try:
        (jobs / "logs").mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Cannot create {jobs} or {out} ({err.strerror}).") from err
    tsv = "index\tsubject\tunit_shard\n" + "".join(f"{i}\t{s}\t{sh}\n" for i, s, sh in rows)
    part = _participant_script(args, jobs, rows, setup, f"{cmd} {io}")
    group = _group_script(args, jobs, subjects, setup, f"{cmd} {io}")
    files = {}
    for name, text, mode in (("tasks.tsv", tsv, 0o644),
                             ("participant.sbatch", "\n".join(part) + "\n", 0o755),
                             ("group.sbatch", "\n".join(group) + "\n", 0o755),
                             ("submit.sh", "\n".join(_submit_script(len(rows))) + "\n", 0o755)):
        files[name] = _write_file(jobs / name, text, mode)
    return files


def _participant_script(args, jobs: Path, rows: list, setup: list[str], app: str) -> list[str]:
    """Lines of participant.sbatch: one array task per (subject, unit shard) row."""
    q = shlex.quote
    return _header("bids_decode", args.cpus_per_task, args.mem, args.time,
                   f"{jobs}/logs/%x_%A_%a.out", args) + [
        f"# {len(rows)} array tasks, one (subject, unit shard) each (tasks.tsv); written by",
        "# 'bids_decode slurm'. Submit with submit.sh. No --nprocs/--mem: the app reads "
        "them from the allocation.",
        "set -euo pipefail",
        f"SUBJECTS=({' '.join(q(s) for _, s, _ in rows)})",
        f"SHARDS=({' '.join(sh for _, _, sh in rows)})",
        "SUB=${SUBJECTS[$SLURM_ARRAY_TASK_ID]}",
        "SHARD=${SHARDS[$SLURM_ARRAY_TASK_ID]}",
        'echo "task $SLURM_ARRAY_TASK_ID: sub-$SUB, unit shard $SHARD on $(hostname)"',
        *setup,
        f"{app} participant --participant-label \"$SUB\" --unit-shard \"$SHARD\" "
        f"{args.app_options}".rstrip(),
    ]


def _group_script(args, jobs: Path, subjects: list[str], setup: list[str],
                  app: str) -> list[str]:
    """Lines of group.sbatch: the group level over ``subjects``."""
    group_opts = args.group_options or _task_option(args.app_options)
    return _header("bids_decode-group", args.group_cpus, args.group_mem, args.group_time,
                   f"{jobs}/logs/%x_%j.out", args) + [
        "# the group level over the subjects of participant.sbatch; submitted by submit.sh",
        "# with --dependency=afterok on the array job",
        "set -euo pipefail",
        *setup,
        f"{app} group --participant-label {' '.join(shlex.quote(s) for s in subjects)} "
        f"{group_opts}".rstrip(),
    ]


def _submit_script(n_tasks: int) -> list[str]:
    """Lines of submit.sh: the array job, then the group job once every task succeeded."""
    return [
        "#!/bin/bash",
        "# Submit the array job, then the group job once every array task succeeded.",
        f"# submit.sh           all tasks (0-{n_tasks - 1}, see tasks.tsv)",
        "# submit.sh 1,3       only array tasks 1 and 3 (resubmit failed ones), then the group",
        "# Prints the two job ids. Extra sbatch options: SBATCH_EXTRA='--qos=...' submit.sh",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f'ARRAY=${{1:-0-{n_tasks - 1}}}',
        'jid=$(sbatch --parsable ${SBATCH_EXTRA:-} --array="$ARRAY" participant.sbatch)',
        'gid=$(sbatch --parsable ${SBATCH_EXTRA:-} --dependency=afterok:"${jid%%;*}" '
        'group.sbatch)',
        'echo "${jid%%;*} ${gid%%;*}"',
    ]


def _write_file(path: Path, text: str, mode: int) -> Path:
    """Write ``text`` to ``path`` with ``mode``, atomically (OutputError if it cannot)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.chmod(mode)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path} ({err.strerror}).") from err
    return path


def run_from_args(args: argparse.Namespace) -> int:
    files = write_jobs(args)
    n = len(files["tasks.tsv"].read_text().splitlines()) - 1
    print(f"{n} array tasks (see {files['tasks.tsv']}); submit with: bash {files['submit.sh']}")
    return EXIT_OK
