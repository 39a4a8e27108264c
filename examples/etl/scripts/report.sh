#!/usr/bin/env bash
# A Markdown report from the totals and the cleaning log.
set -eu -o pipefail
totals=$1 log=$2
echo "# Sales report"
echo
echo "## Data quality"
sed 's/^/- /' "$log" | sort
echo
echo "## Revenue by region"
echo
echo "| region | revenue | units |"
echo "|---|---:|---:|"
awk -F, '{ r[$1] += $3; u[$1] += $4 } END { for (k in r) printf "| %s | %.2f | %d |\n", k, r[k], u[k] }' "$totals" | sort
echo
echo "## Best seller per region"
echo
awk -F, '!best[$1]++ { printf "- %s: %s (%.2f)\n", $1, $2, $3 }' "$totals"
