#!/usr/bin/env bash
# redis-cli's own modes through tiercached and through plain redis-server:
# --scan, --bigkeys, --stat, MONITOR, -n 2. Results compared.
source "$(dirname "$0")/lib.sh"
start_redis
start_tiercached a
start_plain_redis
TCD=(redis-cli -s "$WORK/a.sock")
PLAIN=(redis-cli -s "$WORK/plain.sock")
failed=0
row() { # row NAME CMD...: "same" when CMD succeeds
  local name=$1; shift
  if "$@"; then echo "| redis-cli $name | same |"
  else echo "| redis-cli $name | DIFFERENT |"; failed=$((failed + 1)); fi
}

for cli in TCD PLAIN; do
  declare -n c=$cli
  # Up to 200 bytes: larger than tiercache's own small string keys (the
  # bus's clock and epoch), which --bigkeys through tiercached also sees.
  for i in $(seq 1 40); do "${c[@]}" set "rc:k:$i" "$(printf 'v%.0s' $(seq $((5 * i))))" >/dev/null; done
  "${c[@]}" rpush rc:list a b c >/dev/null
  "${c[@]}" hset rc:hash f1 1 f2 2 >/dev/null
done

# --scan (the application's keys; tiercached's own __tiercache:* keys are
# documented as visible).
a=$("${TCD[@]}" --scan --pattern 'rc:*' | sort)
b=$("${PLAIN[@]}" --scan --pattern 'rc:*' | sort)
scan_same() { [ "$a" = "$b" ] && [ "$(echo "$a" | wc -l)" = 42 ]; }
row "--scan --pattern" scan_same

# --bigkeys: the same biggest string and list.
big() { "$@" --bigkeys 2>&1 | grep -E "^Biggest (string|list) " | sort; }
a=$(big "${TCD[@]}"); b=$(big "${PLAIN[@]}")
big_same() { [ -n "$a" ] && [ "$a" = "$b" ]; }
row "--bigkeys" big_same

# --stat: a few samples, no negative number anywhere (the counters it
# takes differences of come from Redis's INFO, never from a pool client).
# (line-buffered: redis-cli does not flush its --stat lines into a pipe)
stat=$(timeout 4 stdbuf -oL "${TCD[@]}" --stat -i 0.5 2>&1 || true)
lines=$(echo "$stat" | grep -cE '^ *[0-9]+ +[0-9.]+[KMG]? +[0-9]' || true)
stat_ok() { ! echo "$stat" | grep -qE '(^| |\()-[0-9]' && [ "$lines" -ge 2 ]; }
row "--stat (no negative numbers)" stat_ok

# MONITOR: shows a command run through another connection.
"${TCD[@]}" monitor >"$WORK/monitor.out" 2>&1 &
MON=$!
PIDS+=("$MON")
saw_monitor() {
  "${TCD[@]}" set rc:monitored 1 >/dev/null
  grep -q '"rc:monitored"' "$WORK/monitor.out"
}
wait_for "MONITOR output" saw_monitor
row "MONITOR" true

# -n 2: another database, as in Redis.
for cli in TCD PLAIN; do
  declare -n c=$cli
  "${c[@]}" -n 2 set rc:db two >/dev/null
done
a="$("${TCD[@]}" -n 2 get rc:db) $("${TCD[@]}" -n 2 dbsize) $("${TCD[@]}" get rc:db)"
b="$("${PLAIN[@]}" -n 2 get rc:db) $("${PLAIN[@]}" -n 2 dbsize) $("${PLAIN[@]}" get rc:db)"
db_same() { [ "$a" = "$b" ] &&
  [ "$(redis-cli -s "$WORK/redis.sock" -n 2 get rc:db)" = two ]; }
row "-n 2" db_same

echo "$((5 - failed)) passed, $failed failed"
[ "$failed" = 0 ]
