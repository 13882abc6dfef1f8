#!/usr/bin/env bash
# Short libFuzzer run of the request parser. New inputs go to a temp dir,
# the seed corpus in the repo is only read.
set -euo pipefail
fuzzer=$1 corpus=$2
work=$(mktemp -d /tmp/tcd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$fuzzer" -max_total_time="${TCD_FUZZ_SECONDS:-20}" -timeout=10 \
  -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
  "$work" "$corpus" 2>&1 | tail -25
