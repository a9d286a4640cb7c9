#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian's packages (slurm-wlm, munge), for the tests
# and for trying `sde study run --executor slurm` locally. Run as root.
#   bash scripts/slurm-cluster.sh start    install (once), configure and start munged, slurmctld and slurmd;
#                                          returns when the node takes jobs; does nothing when it already does
#   bash scripts/slurm-cluster.sh stop     stop the daemons (jobs still queued are lost)
#   bash scripts/slurm-cluster.sh status   sinfo, or "not running" (exit 1)
# The cluster: one node (this machine: its CPUs and memory as `slurmd -C` reads them), one CPU-only partition `cpu`
# (the default) with a 12-hour time limit, enforced at submission; no GPUs, no accounting database (status comes
# from the queue, as on many small clusters). Logs: /var/log/slurm/.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
PARTITION_MAX_TIME=12:00:00

running() { timeout 10 sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

configure() {
  local node host
  node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=... RealMemory=...
  host=${node%% *}
  host=${host#NodeName=}
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > "$CONF.tmp" <<EOF
# Written by sde-kit's scripts/slurm-cluster.sh: a single-node test cluster.
ClusterName=sde-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
EnforcePartLimits=ALL
KillWait=5
MinJobAge=300
$node State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=$PARTITION_MAX_TIME State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  runuser -u munge -- /usr/sbin/munged
}

start() {
  if running; then echo "slurm: already running"; sinfo; return; fi
  install
  configure
  start_munge
  pkill -x slurmctld 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true
  slurmctld -c   # -c: a clean start, no jobs from an earlier cluster
  slurmd
  for _ in $(seq 120); do
    if running; then echo "slurm: running"; sinfo; return; fi
    sleep 0.5
  done
  echo "slurm: the node did not come up; see /var/log/slurm/" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  exit 1
}

stop() {
  scontrol shutdown 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  echo "slurm: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then sinfo; else echo "slurm: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
