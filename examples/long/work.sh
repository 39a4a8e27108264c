#!/usr/bin/env bash
# work.sh OUTPUT UNITS [INPUT...]: does UNITS units of work (TICK seconds
# each, default 1), printing its progress, then writes OUTPUT from the
# inputs. OUTPUT appears only when the work is complete: it is written to a
# temporary file and renamed, so an interrupted step leaves nothing that
# looks finished.
set -eu -o pipefail
out=$1 units=$2
shift 2
tick=${TICK:-1}
mkdir -p "$(dirname "$out")"
trap 'echo "stopped at unit $i of $units" >&2; rm -f "$out.tmp"; exit 130' INT TERM
for ((i = 1; i <= units; i++)); do
  echo "$(basename "$out"): unit $i of $units"
  sleep "$tick"
done
{ echo "$out made of $units units"; cat "$@" /dev/null; } > "$out.tmp"
mv "$out.tmp" "$out"
