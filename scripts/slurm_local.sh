#!/usr/bin/env bash
# A real single-node Slurm on this machine, without systemd, for the Slurm tests and for
# trying `mtalab sweep --launcher slurm` by hand. Everything (munge key and socket, Slurm's
# state, spool, logs, pid files, slurm.conf) lives in one directory; the daemons are
# stopped by the pids in their pid files.
#
#   scripts/slurm_local.sh start DIR     start munged, slurmctld, slurmd in DIR (created);
#                                        prints the line to export: SLURM_CONF=DIR/slurm.conf
#   scripts/slurm_local.sh stop DIR      cancel every job, stop the daemons (TERM, then KILL)
#   scripts/slurm_local.sh run CMD ...   start in a temporary directory, run CMD with
#                                        SLURM_CONF exported, stop and remove it on exit
#                                        (an EXIT trap: also when CMD fails or is killed);
#                                        CMD's exit code. 77 (skipped) when the Slurm or munge
#                                        daemons are not installed or this is not root.
#
# Needs root (munged runs as the munge user, slurmd as root) and the Debian packages
# slurmctld slurmd slurm-client munge (scripts/setup.sh installs them). The ports are
# picked free, so two such clusters (two engineers, two test runs) can share a machine.
# Why each setting: ../docs or the comments below; measured in shared/design/slurm-local.md.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin  # munged, slurmctld and slurmd live in sbin

die() { echo "slurm_local: $*" >&2; exit 1; }

missing_tools() {
  local t
  for t in munged slurmctld slurmd sbatch squeue scontrol scancel runuser; do
    command -v "$t" >/dev/null 2>&1 || echo "$t"
  done
}

port_busy() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# Two consecutive free ports (slurmctld, slurmd) from a start that differs per process.
free_ports() {
  local p=$((20000 + ($$ * 7) % 20000)) n
  for ((n = 0; n < 200; ++n, p += 2)); do
    ((p > 60000)) && p=20000
    if ! port_busy "$p" && ! port_busy $((p + 1)); then echo "$p"; return; fi
  done
  die "no two free ports found for slurmctld and slurmd"
}

write_conf() {  # dir port
  local dir=$1 port=$2 host cpus mem
  host=$(hostname -s)
  cpus=$(nproc --all)  # not nproc: it honours OMP_NUM_THREADS, which scripts/test.sh sets to 1
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  # cred_expire=10: also how long a requeued job waits before it may start again (the
  # default 120 s made a requeue take ~150 s). batch_sched_delay=0: a batch job starts
  # ~1 s after sbatch instead of ~3 s. proctrack/linuxproc and task/affinity need no
  # cgroups. MinJobAge: finished jobs stay visible to squeue/scontrol for 5 minutes (there
  # is no accounting database, so sacct knows nothing).
  cat >"$dir/slurm.conf" <<EOF
ClusterName=mtalab$port
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
MailProg=/bin/true
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local dir=$1 host port t
  [[ $(id -u) -eq 0 ]] || die "needs root (munged runs as the munge user, slurmd as root)"
  local miss
  miss=$(missing_tools | tr '\n' ' ')
  [[ -z $miss ]] || die "missing: $miss(install slurmctld slurmd slurm-client munge: scripts/setup.sh)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  # munged refuses a socket directory that is group/world-writable or not traversable.
  chown munge:munge "$dir/munge"
  chmod 711 "$dir/munge"
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chown munge:munge "$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  runuser -u munge -- munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munge.seed" --log-file="$dir/munge/munged.log"
  port=$(free_ports)
  write_conf "$dir" "$port"
  export SLURM_CONF=$dir/slurm.conf
  host=$(hostname -s)
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N "$host"
  # Ready when the node is idle (0.1-0.25 s measured).
  for ((t = 0; t < 300; ++t)); do
    if [[ $(sinfo -h -n "$host" -o %t 2>/dev/null) == idle ]]; then
      echo "SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.1
  done
  echo "slurm_local: the node did not become idle within 30 s; the logs:" >&2
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" "$dir/munge/munged.log" >&2 || true
  return 1
}

# TERM to the daemons of these pid files, KILL to any still there after 5 s.
stop_pid_files() {
  local f pid t alive
  local -a pids=()
  for f in "$@"; do
    [[ -s $f ]] && pid=$(cat "$f") && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for ((t = 0; t < 50; ++t)); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm_local: pid $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)) ignored SIGTERM for 5 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

stop() {
  local dir=$1 t
  [[ -d $dir ]] || return 0
  export SLURM_CONF=$dir/slurm.conf
  # Jobs first: slurmstepd outlives slurmd, and with it the jobs' processes.
  if [[ -s $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    scancel --full --quiet --user=root 2>/dev/null || true
    for ((t = 0; t < 100; ++t)); do  # up to KillWait (5 s) and then some
      [[ -z $(squeue -h -t RUNNING,COMPLETING,SUSPENDED -o %i 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
  stop_pid_files "$dir/slurmd.pid" "$dir/slurmctld.pid"
  stop_pid_files "$dir/munge/munged.pid"  # last: the others authenticate through it
}

case "${1:-}" in
  start) [[ $# -eq 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  run)
    shift
    [[ $# -ge 1 ]] || die "usage: $0 run CMD [ARGS...]"
    if [[ $(id -u) -ne 0 ]]; then echo "slurm_local: skipped: needs root" >&2; exit 77; fi
    miss=$(missing_tools | tr '\n' ' ')
    if [[ -n $miss ]]; then echo "slurm_local: skipped: missing $miss(scripts/setup.sh installs them)" >&2; exit 77; fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/mtalab_slurm.XXXXXX")
    trap 'stop "$dir"; rm -rf "$dir"' EXIT
    trap 'exit 130' INT TERM  # through the EXIT trap: the daemons are stopped
    start "$dir" >/dev/null || { tail -n 30 "$dir"/*.log >&2 || true; exit 1; }
    export SLURM_CONF=$dir/slurm.conf
    set +e
    "$@"
    rc=$?
    set -e
    if ((rc != 0)); then
      echo "slurm_local: '$*' exited $rc; the last lines of slurmctld.log and slurmd.log:" >&2
      tail -n 15 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    fi
    exit "$rc"
    ;;
  *) die "usage: $0 start DIR | stop DIR | run CMD [ARGS...]" ;;
esac
