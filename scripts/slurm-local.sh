#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests (tests/e2e/test_slurm.py) and for trying
# the HPC recipes of docs/hpc.md without a cluster. Everything (munge key and socket, slurm.conf,
# state, spool, logs) lives in DIR, on ports picked free at start; nothing under /etc or /var
# is used, and `stop` ends only the daemons whose pids `start` wrote into DIR.
#
#   scripts/slurm-local.sh start DIR   # prints: export SLURM_CONF=DIR/slurm.conf
#   SLURM_CONF=DIR/slurm.conf sbatch ... / squeue / sacct-less: scontrol show job ID
#   scripts/slurm-local.sh stop DIR
#
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge) and root (slurmd
# runs jobs as their submitting user). Exit 2: SLURM could not be set up here (the reason on
# stderr); exit 1: it was set up but did not come up.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 64; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
  local name pidf pid
  for name in slurmd slurmctld munged; do
    pidf=$dir/$name.pid
    [ -s "$pidf" ] || continue
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
  done
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

start() {
  local missing=""
  for exe in munged slurmctld slurmd sbatch; do
    command -v "$exe" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$exe" >/dev/null 2>&1 \
      || missing="$missing $exe"
  done
  if [ -n "$missing" ]; then
    echo "SLURM is not installed (missing:$missing): apt-get install slurm-wlm munge" >&2
    exit 2
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "a private SLURM cluster needs root here (slurmd switches to the job's user)" >&2
    exit 2
  fi
  export PATH=$PATH:/usr/sbin
  stop
  umask 022
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 700 "$dir/munge"
  # 1. munge: a private key and socket
  [ -s "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 \
    status=none
  chmod 400 "$dir/munge/munge.key"
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" --force
  # 2. slurm.conf: this node's CPUs and memory as slurmd sees them
  local node cpus mem host
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  cat > "$dir/slurm.conf" <<CONF
# one-node cluster written by scripts/slurm-local.sh
ClusterName=bidsdecode
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
# memory requests are enforced: the step is polled every second and killed above its --mem
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
MailProg=/bin/true
ReturnToService=2
# keep finished jobs visible to scontrol for an hour (the tests read their states)
MinJobAge=3600
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  # 3. the daemons (they fork; their pids land in DIR)
  slurmctld -i
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "export SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.5
  done
  echo "SLURM did not come up within 30 s; logs in $dir/log:" >&2
  tail -n 5 "$dir"/log/*.log >&2 || true
  sinfo >&2 || true
  stop
  exit 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
