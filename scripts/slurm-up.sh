#!/usr/bin/env bash
# Starts a single-node Slurm cluster on localhost for stepwise's Slurm tests:
# munged, slurmctld and slurmd, no cgroups, no accounting database. Installs
# the Debian packages first when they are missing (needs root).
#
# Idempotent: daemons already answering are reused, and only the daemons this
# script starts are recorded (pid files in $STEPWISE_SLURM_RUN), so that
# scripts/slurm-down.sh stops exactly those and nothing else.
# It exits 0 only once a trivial batch job has run to COMPLETED.
#
#   STEPWISE_SLURM_CPUS  CPUs the node advertises (default: 64). Each test job
#                        takes one, so this is how many run at once; they
#                        mostly sleep, so more than the real cores is fine.
#   STEPWISE_SLURM_RUN   where the pid records go (default /run/stepwise-slurm)
set -euo pipefail

CPUS=${STEPWISE_SLURM_CPUS:-64}
RUN=${STEPWISE_SLURM_RUN:-/run/stepwise-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
START=$SECONDS

say() { echo "slurm-up: [$((SECONDS - START))s] $*" >&2; }
fail() { say "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "run me as root (I install packages and start daemons)"

# Whether pid $1 is a live process. A dead daemon that nobody reaped yet is a
# zombie: it still answers `kill -0`, so read its state instead.
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
# The pid in file $1 if it is a live process named $2.
pid_of() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" | tr -dc 0-9)
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && running "$pid" || return 1
  echo "$pid"
}
# Runs "$@" every 0.2 s until it succeeds or $1 seconds pass.
retry_for() {
  local limit=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $limit ] || return 1
    sleep 0.2
  done
}

# 1. Packages.
missing=()
for pkg in munge slurmctld slurmd slurm-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be old or absent on a fresh machine.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi
install -d -m 0755 "$RUN"

# 2. munge: slurm authenticates every message with it.
if [ ! -s /etc/munge/munge.key ]; then
  say "creating a munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
# munged refuses a key that anyone but munge can read.
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
munge_answers() { munge -n | unmunge >/dev/null; }
if munge_answers 2>/dev/null; then
  say "munged already answers"
else
  # A socket or pid file left by an unclean stop makes munged refuse to start.
  pid_of /run/munge/munged.pid munged >/dev/null ||
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
  retry_for 10 munge_answers || fail "munged does not answer (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$RUN/munged.pid"
  say "started munged (pid $(cat "$RUN/munged.pid"))"
fi

# 3. slurm.conf for one node on localhost.
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
MEM=$(( ${MEM:-2048} * 9 / 10 ))
conf=$(mktemp)
cat >"$conf" <<CONF
# Written by stepwise's scripts/slurm-up.sh: one node on localhost.
ClusterName=stepwise-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups in a container: track job processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd, so plain sacct has nothing to read: finished jobs are known to
# squeue/scontrol for MinJobAge seconds, and to sacct -c through this log.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
# By default a batch job waits up to 3 s to be scheduled.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
# Cancelled and timed-out jobs get SIGKILL this soon after SIGTERM.
KillWait=5
MinJobAge=3600
# Take the node line below as given, even if the hardware differs.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$conf" "$CONF"; then
  install -m 0644 "$conf" "$CONF"
  changed=1
  say "wrote $CONF (node $NODE, $CPUS CPUs)"
fi
rm -f "$conf"

# 4. The daemons.
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do running "$1" || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
ctld=$(pid_of /run/slurm/slurmctld.pid slurmctld || true)
slurmd_pid=$(pid_of /run/slurm/slurmd.pid slurmd || true)
if [ $changed = 1 ] && [ -n "$ctld$slurmd_pid" ]; then
  # A node's definition cannot change by `scontrol reconfigure`.
  say "configuration changed: restarting the daemons"
  [ -n "$slurmd_pid" ] && stop "$slurmd_pid"
  [ -n "$ctld" ] && stop "$ctld"
  ctld="" slurmd_pid=""
fi
ctld_answers() { scontrol ping | grep -q 'is UP'; }
if [ -z "$ctld" ]; then
  slurmctld
  retry_for 20 ctld_answers || fail "slurmctld does not answer (see /var/log/slurm/slurmctld.log)"
  cp /run/slurm/slurmctld.pid "$RUN/slurmctld.pid"
  say "started slurmctld (pid $(cat "$RUN/slurmctld.pid"))"
else
  say "slurmctld already runs (pid $ctld)"
fi
if [ -z "$slurmd_pid" ]; then
  slurmd
  retry_for 10 pid_of /run/slurm/slurmd.pid slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"
  cp /run/slurm/slurmd.pid "$RUN/slurmd.pid"
  say "started slurmd (pid $(cat "$RUN/slurmd.pid"))"
else
  say "slurmd already runs (pid $slurmd_pid)"
fi

# 5. The node must take jobs; an unclean stop can leave it DOWN or DRAINED.
node_usable() { sinfo -h -n "$NODE" -o '%T' | grep -qE '^(idle|mixed|allocated|completing)$'; }
if ! retry_for 20 node_usable; then
  say "node is $(sinfo -h -n "$NODE" -o '%T %E'): resuming it"
  scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
  retry_for 20 node_usable || fail "node $NODE is not usable: $(sinfo -h -n "$NODE" -o '%T %E')"
fi

# 6. A real job must run.
job=$(sbatch --parsable -J stepwise-slurm-up -o /dev/null --wrap true) || fail "sbatch failed"
job_over() { squeue -h -t all -j "$job" -o '%T' | grep -qvE '^(PENDING|CONFIGURING|RUNNING|COMPLETING)$'; }
retry_for 60 job_over || fail "test job $job did not finish in 60 s: $(squeue -h -t all -j "$job" -o '%T %r')"
state=$(squeue -h -t all -j "$job" -o '%T')
[ "$state" = COMPLETED ] || fail "test job $job ended $state"
say "ready: partition $(sinfo -h -o '%P %a, %c CPUs' | head -n1)"
