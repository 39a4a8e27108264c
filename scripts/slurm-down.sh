#!/usr/bin/env bash
# Stops what scripts/slurm-up.sh started, by the pids it recorded in
# $STEPWISE_SLURM_RUN (default /run/stepwise-slurm); never by name, so a
# cluster that was already running before slurm-up.sh is left alone.
# Jobs still queued or running are cancelled first when we started the
# controller: their processes would outlive slurmd otherwise.
# Packages, configuration and job state stay.
set -uo pipefail
RUN=${STEPWISE_SLURM_RUN:-/run/stepwise-slurm}
START=$SECONDS
say() { echo "slurm-down: [$((SECONDS - START))s] $*" >&2; }

running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
pid_of() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" | tr -dc 0-9)
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && running "$pid" || return 1
  echo "$pid"
}
stop() { # $1: the daemon's name, which is also its record's
  local pid
  if pid=$(pid_of "$RUN/$1.pid" "$1"); then
    kill -TERM "$pid"
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then say "$1 ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; fi
    say "stopped $1 (pid $pid)"
  else
    say "$1: not started by slurm-up.sh, or already stopped"
  fi
  rm -f "$RUN/$1.pid"
}

if pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null; then
  jobs=$(squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// }" ]; then
    say "cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi
stop slurmd
stop slurmctld
stop munged
exit 0
