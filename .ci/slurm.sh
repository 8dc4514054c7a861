#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests marked `slurm`: `.ci/slurm.sh up|down`.
#
# up:   installs Debian's slurmctld, slurmd, slurm-client and munge when missing, writes a
#       one-node configuration with two fake GPUs (character devices: Slurm rejects plain files
#       in gres.conf), starts munged, slurmctld and slurmd without systemd (whichever is not
#       running yet, so `up` is idempotent and restarts a killed daemon), waits (bounded) until
#       the node is idle and prints one line. It never fails CI by itself: when something does
#       not work it says why and exits 0, and the tests skip with a reason.
# down: stops the daemons it started (by their pid files).
#
# Needs root (apt-get, mknod, daemons). No accounting (slurmdbd): the backend says what it
# cannot know without it. KillWait is Slurm's default (30 s): what a preempted supervisor gets.
set -uo pipefail

ACTION=${1:-up}
STATE=${BACKPROP_SLURM_STATE:-/var/lib/backprop-slurm}
CONF_DIR=/etc/slurm
RUN_DIR=/run/backprop-slurm
WAIT_S=${BACKPROP_SLURM_WAIT_S:-60}

say() { echo "slurm: $*"; }

pid_alive() { # pid file -> 0 when its process is alive
  local pid
  [[ -s $1 ]] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)) && kill -0 "$pid" 2>/dev/null
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  if [[ $(id -u) != 0 ]]; then
    say "not installed and not root: cannot install"
    return 1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    slurmctld slurmd slurm-client munge >/dev/null) || {
    say "apt-get install of slurmctld slurmd slurm-client munge failed"
    return 1
  }
}

configure() {
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  mkdir -p "$STATE"/gpu "$STATE"/ctld "$STATE"/slurmd "$RUN_DIR" "$CONF_DIR" /var/log/slurm
  for i in 0 1; do
    # Fake GPUs: character devices (/dev/null's numbers); plain files are refused by slurmd.
    [[ -c $STATE/gpu/gpu$i ]] || { rm -f "$STATE/gpu/gpu$i" && mknod "$STATE/gpu/gpu$i" c 1 3; }
  done
  cat >"$CONF_DIR/slurm.conf.new" <<EOF
# Written by backprop's .ci/slurm.sh: a one-node test cluster with two fake GPUs.
ClusterName=backprop
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
ReturnToService=2
MinJobAge=300
KillWait=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host CPUs=$cpus RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$CONF_DIR/gres.conf.new" <<EOF
Name=gpu File=$STATE/gpu/gpu[0-1]
EOF
  mv "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"
  mv "$CONF_DIR/gres.conf.new" "$CONF_DIR/gres.conf"
  if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null
  chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
}

start() {
  if ! pid_alive /run/munge/munged.pid; then
    su -s /bin/sh munge -c /usr/sbin/munged || { say "munged did not start"; return 1; }
  fi
  if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    slurmctld || { say "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; return 1; }
  fi
  if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    slurmd || { say "slurmd did not start (see /var/log/slurm/slurmd.log)"; return 1; }
  fi
}

wait_idle() {
  local end state host
  host=$(hostname -s)
  end=$((SECONDS + WAIT_S))
  while ((SECONDS < end)); do
    state=$(sinfo -h -N -n "$host" -o %t 2>/dev/null | head -1)
    case $state in
    idle | mix | alloc)
      echo "slurm: up: node $host $state, 2 fake GPUs, partition debug ($(sinfo -V 2>/dev/null))"
      return 0
      ;;
    down* | drain* | fail*)
      scontrol update nodename="$host" state=resume >/dev/null 2>&1
      ;;
    esac
    sleep 0.5
  done
  say "node $host not idle after ${WAIT_S}s (state: ${state:-no answer}); slurm tests will skip"
  return 1
}

stop_pidfile() {
  local pid
  pid_alive "$1" || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}

case $ACTION in
up)
  install && configure && start && wait_idle
  exit 0
  ;;
down)
  stop_pidfile "$RUN_DIR/slurmd.pid"
  stop_pidfile "$RUN_DIR/slurmctld.pid"
  stop_pidfile /run/munge/munged.pid
  say "down"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
