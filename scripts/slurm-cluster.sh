#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests and for trying the Slurm profile.
#
#   scripts/slurm-cluster.sh install   apt-get install slurm-wlm and munge when missing (root)
#   scripts/slurm-cluster.sh start     install if needed, write the config, start munged,
#                                      slurmctld and slurmd on localhost, wait for the node
#   scripts/slurm-cluster.sh status    sinfo and squeue (exit 1 when not running)
#   scripts/slurm-cluster.sh stop      cancel the cluster's jobs, stop the daemons it started
#   scripts/slurm-cluster.sh env       print the `export SLURM_CONF=...` line for client commands
#
# Everything lives under $CORTEXSCALE_SLURM_DIR (default /tmp/cortexscale-slurm): slurm.conf,
# state, spool, pid files and daemon logs; /etc/slurm/slurm.conf is a symbolic link to that
# slurm.conf while the cluster runs (jobs' inner srun needs the default path), removed by
# `stop`. An /etc/slurm/slurm.conf not written by this script stops `start`.
# Needs root (slurmd runs jobs as their user and munged needs its key). Debian/Ubuntu only.
# Settings: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none (no cgroups needed),
# SelectType=select/cons_tres, accounting off (job status through squeue, so MinJobAge=600
# keeps finished jobs visible to squeue long enough for the executor to see how they ended).
set -euo pipefail

DIR="${CORTEXSCALE_SLURM_DIR:-/tmp/cortexscale-slurm}"
CONF="$DIR/slurm.conf"
SYS_CONF=/etc/slurm/slurm.conf
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/cortexscale-munged.pid"
export SLURM_CONF="$CONF"

log() { echo "slurm-cluster: $*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (slurmd, munged)"; exit 2
  fi
}

installed() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null && command -v sbatch >/dev/null
}

do_install() {
  if installed; then return 0; fi
  need_root
  command -v apt-get >/dev/null || { log "no apt-get: install slurm-wlm and munge by hand"; exit 2; }
  log "installing slurm-wlm and munge with apt-get (about 30 s)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
  local host cpus mem_kb mem_mb
  host="$(hostname -s)"
  cpus="$(nproc --all)"
  mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
  mem_mb=$(( mem_kb * 9 / 10 / 1024 ))   # leave 10% to the system
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat > "$CONF" <<EOF
# Written by scripts/slurm-cluster.sh: a one-node test cluster.
ClusterName=cortexscale
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${CORTEXSCALE_SLURMCTLD_PORT:-6817}
SlurmdPort=${CORTEXSCALE_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
KillWait=30
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  if pid_alive "$MUNGE_PID"; then return 0; fi
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  mkdir -p "$MUNGE_RUN" /var/log/munge /var/lib/munge
  chown munge:munge "$MUNGE_RUN" /var/log/munge /var/lib/munge
  # munged writes its own pid file; it daemonises
  runuser -u munge -- munged --pid-file="$MUNGE_PID" --force
}

do_start() {
  need_root
  do_install
  mkdir -p "$DIR"
  if ! pid_alive "$DIR/slurmctld.pid" && pgrep -x slurmctld >/dev/null; then
    log "another slurmctld is running on this machine; stop it first"; exit 1
  fi
  write_conf
  # The plugin's job step (snakemake-executor-plugin-slurm-jobstep 2.8) removes SLURM_CONF
  # from the environment of the `srun` it runs inside each job, so the config must also be
  # at the default path. A slurm.conf there that this script did not write is left alone.
  if [ -e "$SYS_CONF" ] && ! grep -q "^# Written by scripts/slurm-cluster.sh" "$SYS_CONF"; then
    log "$SYS_CONF exists and was not written by this script; not starting"; exit 1
  fi
  mkdir -p "$(dirname "$SYS_CONF")"
  ln -sfn "$CONF" "$SYS_CONF"
  start_munge
  pid_alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  pid_alive "$DIR/slurmd.pid" || slurmd -f "$CONF"
  # wait until the node takes jobs
  local i state
  for i in $(seq 1 60); do
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)"
    case "$state" in
      idle|mix|alloc|idle~) log "up: node $(hostname -s) $state; export SLURM_CONF=$CONF"; return 0 ;;
      down*|drain*|fail*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  log "the node did not come up; logs in $DIR/log"; tail -n 20 "$DIR/log/"*.log >&2 || true
  exit 1
}

stop_pidfile() {
  local f="$1" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

do_stop() {
  if [ -f "$CONF" ] && pid_alive "$DIR/slurmctld.pid"; then
    scancel --full --quiet --signal=KILL $(squeue -h -o '%i' 2>/dev/null) 2>/dev/null || true
    sleep 1
  fi
  stop_pidfile "$DIR/slurmd.pid"
  stop_pidfile "$DIR/slurmctld.pid"
  # slurmstepd processes of jobs that outlived slurmd (none normally)
  local pid
  for pid in $(pgrep -x slurmstepd || true); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  stop_pidfile "$MUNGE_PID"
  if [ -L "$SYS_CONF" ] && [ "$(readlink "$SYS_CONF")" = "$CONF" ]; then rm -f "$SYS_CONF"; fi
  log "stopped"
}

do_status() {
  if ! pid_alive "$DIR/slurmctld.pid" || ! pid_alive "$DIR/slurmd.pid"; then
    log "not running"; return 1
  fi
  sinfo
  squeue
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
