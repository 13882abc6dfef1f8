#!/usr/bin/env bash
# The tiercache management tool against a real redis-server and real
# tiercached processes: health (exit codes with Redis and the daemon up and
# down), clear by pattern, prefix and tag (gone from Redis and from another
# instance's L1, observed through that instance), warm from a file (every
# key set, progress after each batch) and from a key list, and live stats
# whose rates move with the traffic.
# usage: cli.sh path/to/tiercached path/to/tiercache
source "$(dirname "$0")/../daemon/lib.sh"
TC=${2:?usage: $0 path/to/tiercached path/to/tiercache}
start_redis
URL="redis://127.0.0.1:$REDIS_PORT"
# L1 copies that would outlive the whole test: only an invalidation can
# make the daemons stop answering them.
start_tiercached a --l1-ttl-ms 600000
start_tiercached b --l1-ttl-ms 600000
A=(redis-cli -s "$WORK/a.sock")
B=(redis-cli -s "$WORK/b.sock")
R=(redis-cli -p "$REDIS_PORT")
# The tool, against Redis directly or a daemon; its stderr is kept for the
# sanitizer scan.
direct() { REDIS_URL=$URL "$TC" "$@" 2>>"$WORK/cli.log"; }
via_a() { "$TC" --daemon "$WORK/a.sock" "$@" 2>>"$WORK/cli.log"; }

# expect_rc WANT CMD...: run CMD, which must exit WANT.
expect_rc() {
  local want=$1 rc=0; shift
  "$@" >"$WORK/out" || rc=$?
  [ "$rc" = "$want" ] || die "$* exited $rc, want $want: $(cat "$WORK/out")"
}

# b answers KEY, which must be WANT, from its L1: the GET made its l1_hits
# grow. Until b's bus holds its lease (a daemon just started), GETs go to
# Redis, so held_by_b waits for that.
l1_hits() { "${B[@]}" info tiercache | tr -d '\r' | sed -n 's/^l1_hits://p'; }
l1_answers() {
  local key=$1 want=$2 before
  before=$(l1_hits)
  [ "$("${B[@]}" get "$key")" = "$want" ] || die "b: $key is not $want"
  [ "$(l1_hits)" -gt "$before" ]
}
held_by_b() { wait_for "b to answer $1 from L1" l1_answers "$1" "$2"; }
gone_from_b() { [ -z "$("${B[@]}" get "$1")" ]; }
gone_from_redis() { [ -z "$("${R[@]}" get "$1")" ]; }

echo "# health: all up"
expect_rc 0 via_a health
grep -q '^healthy' "$WORK/out" || die "health output: $(cat "$WORK/out")"
expect_rc 0 direct health

echo "# health: a daemon with a password, from a file or the environment"
echo 's3cret-pass' >"$WORK/pass"
start_tiercached c --requirepass-file "$WORK/pass"
expect_rc 0 "$TC" --daemon "$WORK/c.sock" --password-file "$WORK/pass" health
expect_rc 0 env TIERCACHE_PASSWORD=s3cret-pass "$TC" --daemon "$WORK/c.sock" health
expect_rc 2 "$TC" --daemon "$WORK/c.sock" health 2>>"$WORK/cli.log"
grep -q NOAUTH "$WORK/cli.log" || die "no NOAUTH reported without the password"

echo "# usage errors"
expect_rc 64 direct clear
expect_rc 64 direct stats --pattern 'x*'
expect_rc 64 "$TC" --redis-url "redis://:secret@127.0.0.1:$REDIS_PORT" health
expect_rc 0 "$TC" --help
grep -q '1 degraded' "$WORK/out" || die "--help does not name the exit codes"

for mode in direct via_a; do
  echo "# clear by pattern ($mode): Redis and b's L1"
  "${B[@]}" set "user:$mode:1" one >/dev/null
  "${B[@]}" set "user:$mode:2" two >/dev/null
  "${B[@]}" set "keep:$mode" kept >/dev/null
  held_by_b "user:$mode:1" one
  held_by_b "user:$mode:2" two
  expect_rc 0 $mode clear --pattern "user:$mode:*"
  gone_from_redis "user:$mode:1" || die "user:$mode:1 still in Redis"
  gone_from_redis "user:$mode:2" || die "user:$mode:2 still in Redis"
  wait_for "b to drop user:$mode:1" gone_from_b "user:$mode:1"
  wait_for "b to drop user:$mode:2" gone_from_b "user:$mode:2"
  [ "$("${B[@]}" get "keep:$mode")" = kept ] || die "keep:$mode was cleared"

  echo "# clear by prefix ($mode)"
  "${B[@]}" set "pre:$mode:x" x >/dev/null
  held_by_b "pre:$mode:x" x
  expect_rc 0 $mode clear --prefix "pre:$mode:"
  gone_from_redis "pre:$mode:x" || die "pre:$mode:x still in Redis"
  wait_for "b to drop pre:$mode:x" gone_from_b "pre:$mode:x"

  echo "# clear by tag ($mode)"
  "${B[@]}" tc.set "t:$mode:1" v1 TAGS "runs-$mode" >/dev/null
  "${B[@]}" tc.set "t:$mode:2" v2 TAGS "runs-$mode" other >/dev/null
  "${B[@]}" tc.set "t:$mode:3" v3 TAGS unrelated >/dev/null
  held_by_b "t:$mode:1" v1
  held_by_b "t:$mode:2" v2
  expect_rc 0 $mode clear --tag "runs-$mode"
  grep -q "cleared 2 key(s) tagged runs-$mode" "$WORK/out" ||
    die "clear --tag output: $(cat "$WORK/out")"
  gone_from_redis "t:$mode:1" || die "t:$mode:1 still in Redis"
  wait_for "b to drop t:$mode:1" gone_from_b "t:$mode:1"
  wait_for "b to drop t:$mode:2" gone_from_b "t:$mode:2"
  [ "$("${B[@]}" get "t:$mode:3")" = v3 ] || die "an untagged key was cleared"

  echo "# warm from a file ($mode)"
  for i in $(seq 1200); do printf 'w:%s:%d\tvalue %d\n' "$mode" "$i" "$i"; done \
    >"$WORK/warm.txt"
  "${B[@]}" set "w:$mode:7" old >/dev/null
  held_by_b "w:$mode:7" old
  rc=0
  target=()
  [ "$mode" = via_a ] && target=(--daemon "$WORK/a.sock")
  REDIS_URL=$URL "$TC" "${target[@]+"${target[@]}"}" \
    warm --file "$WORK/warm.txt" --batch 500 --ttl-ms 600000 \
    >"$WORK/out" 2>"$WORK/progress" || rc=$?
  cat "$WORK/progress" >>"$WORK/cli.log"
  [ "$rc" = 0 ] || die "warm exited $rc: $(cat "$WORK/progress")"
  for p in "500/1200" "1000/1200" "1200/1200"; do
    grep -q "warm: $p keys" "$WORK/progress" ||
      die "no progress line $p: $(cat "$WORK/progress")"
  done
  grep -q "warmed 1200 key(s)" "$WORK/out" || die "warm: $(cat "$WORK/out")"
  [ "$("${R[@]}" dbsize)" -ge 1200 ] || die "dbsize after warm"
  for i in 1 499 500 501 1200; do
    [ "$("${R[@]}" get "w:$mode:$i")" = "value $i" ] || die "w:$mode:$i not set"
  done
  ttl=$("${R[@]}" pttl "w:$mode:1")
  [ "$ttl" -gt 500000 ] || die "warm --ttl-ms: PTTL $ttl"
  wait_for "b to drop its old w:$mode:7" \
    bash -c "[ \"\$(redis-cli -s '$WORK/b.sock' get w:$mode:7)\" = 'value 7' ]"
done

echo "# warm a key list into a daemon's L1"
printf 'w:direct:1\nw:direct:2\nnever:there\n' >"$WORK/keys.txt"
expect_rc 0 via_a warm --keys "$WORK/keys.txt"
grep -q "warmed 2 key(s) into the daemon's L1 (1 absent" "$WORK/out" ||
  die "warm --keys: $(cat "$WORK/out")"
expect_rc 64 direct warm --keys "$WORK/keys.txt"

# stats --interval: lines while idle, then while traffic runs.
# column $3 is get/s, $6 inval/s.
stats_moves() { # stats_moves COLUMN TRAFFIC-CMD... (the tool's args in STATS)
  local col=$1; shift
  # Emptied here, not by the background job's own redirection: that one
  # runs after the fork, and a wait below that still saw the previous
  # call's lines would start the traffic before any idle line.
  : >"$WORK/stats"
  "${STATS[@]}" stats --interval 0.3 --count 40 >>"$WORK/stats" \
    2>>"$WORK/cli.log" &
  local pid=$!
  # Two idle lines first.
  wait_for "two idle stats lines" \
    bash -c "[ \$(grep -c '^[0-9]' '$WORK/stats') -ge 2 ]"
  while kill -0 "$pid" 2>/dev/null; do "$@" >/dev/null; done
  wait "$pid" || die "stats exited non-zero"
  head -1 "$WORK/stats" | grep -q 'get/s' || die "no header: $(head -1 "$WORK/stats")"
  awk -v c="$col" '/^[0-9]/ && NR <= 3 { if ($c != "0.0") bad = 1 }
                   END { exit bad }' "$WORK/stats" ||
    die "idle lines show traffic: $(cat "$WORK/stats")"
  awk -v c="$col" '/^[0-9]/ && $c + 0 > 0 { moved = 1 } END { exit !moved }' \
    "$WORK/stats" || die "the rates never moved: $(cat "$WORK/stats")"
}
echo "# stats through a daemon: get/s and l1_hit% move with GETs"
"${A[@]}" set hot v >/dev/null
STATS=("$TC" --daemon "$WORK/a.sock")
stats_moves 3 "${A[@]}" -r 200 get hot
awk '/^[0-9]/ && $3 + 0 > 0 && $4 ~ /^[0-9.]+$/ { ok = 1 } END { exit !ok }' \
  "$WORK/stats" || die "no l1_hit% with traffic: $(cat "$WORK/stats")"
echo "# stats against Redis: inval/s moves with writes through a daemon"
STATS=(env "REDIS_URL=$URL" "$TC")
stats_moves 6 "${A[@]}" -r 50 set hot v
awk '/^[0-9]/ && $6 + 0 > 0 && $7 ~ /^</ && $8 ~ /^</ { ok = 1 } END { exit !ok }' \
  "$WORK/stats" || die "no lag percentiles with invalidations: $(cat "$WORK/stats")"

echo "# health: Redis down"
kill -9 "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
degraded() { rc=0; via_a health >/dev/null || rc=$?; [ "$rc" = 1 ]; }
wait_for "health to say degraded" degraded
expect_rc 2 direct health --timeout-ms 300

echo "# health: daemon down"
kill -TERM "${TCD_PIDS[0]}"
wait "${TCD_PIDS[0]}" || die "tiercached a exited non-zero"
TCD_PIDS=("${TCD_PIDS[@]:1}")
expect_rc 2 via_a health
echo "ok"
