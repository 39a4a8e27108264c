#!/usr/bin/env bash
# Remakes docs/report.png: the HTML report of examples/branches, in headless
# Chromium, after two runs (its flaky `upload` retried in each) and an edit
# to one fetched page (so three steps are stale and two will rerun).
# Needs Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q
bin=$PWD/target/debug/stepwise
docs=$PWD/docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/branches/. "$work"/
rm -rf "$work/.stepwise" "$work/out"
cd "$work"
"$bin" run -j 4 -q
"$bin" forget index --downstream
"$bin" run -j 4 -q
echo "page 1, edited" > out/pages/1.txt
"$bin" report -o report.html
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1280,1880 \
  --screenshot="$docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png"
