#!/usr/bin/env bash
# redis-cli (one-shot commands and --pipe) and redis-benchmark against
# tiercached: clients nobody here wrote.
source "$(dirname "$0")/lib.sh"
start_redis
start_tiercached a
CLI=(redis-cli -s "$WORK/a.sock")

expect() { # expect WANT ARGS...
  local want=$1; shift
  local got
  got=$("${CLI[@]}" "$@" 2>&1)
  [ "$got" = "$want" ] || die "redis-cli $*: got '$got', want '$want'"
}
expect PONG ping
expect OK set greeting hello
expect hello get greeting
expect hello get greeting
expect 1 exists greeting
expect 1 del greeting
expect "" get greeting
expect "ERR unknown command 'nosuch', with args beginning with: 'a' " nosuch a
expect OK set ttlkey v ex 100
"${CLI[@]}" ttl ttlkey | grep -Eq '^(100|99)$' || die "ttl"
"${CLI[@]}" info | grep -q '^# Tiercache' || die "INFO has no Tiercache section"

# Interactive-style: commands on stdin, one per line (inline protocol).
out=$(printf 'set k1 v1\nget k1\nmget k1 nokey\n' | "${CLI[@]}")
[ "$out" = "$(printf 'OK\nv1\nv1\n')" ] || die "stdin session: $out"

# Mass insertion with --pipe.
for i in $(seq 1 20000); do
  printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' \
    ${#i} "$i" $((${#i} + 2)) "v:$i"
done >"$WORK/pipe.txt"
out=$("${CLI[@]}" --pipe <"$WORK/pipe.txt")
echo "$out" | grep -q "errors: 0, replies: 20000" || die "--pipe: $out"
expect v:12345 get 12345
[ "$(redis-cli -s "$WORK/redis.sock" get 12345)" = v:12345 ] ||
  die "value not in L2"

# Warming from a file (README, "Warming"): TC.SETMANY lines of 500 keys,
# one transaction and one invalidation each, piped in; --pipe's reply count
# is the progress. Another tiercached holding a stale copy drops it.
start_tiercached b
redis-cli -s "$WORK/b.sock" set warm:7 stale >/dev/null
[ "$(redis-cli -s "$WORK/b.sock" get warm:7)" = stale ] || die "b: no copy"
awk 'BEGIN {
  for (b = 0; b < 20; b++) {
    printf "*%d\r\n$10\r\nTC.SETMANY\r\n$5\r\n60000\r\n", 2 + 1000
    for (i = b * 500; i < (b + 1) * 500; i++) {
      k = "warm:" i; v = "w" i
      printf "$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
    }
  }
}' >"$WORK/warm.txt"
out=$("${CLI[@]}" --pipe <"$WORK/warm.txt")
echo "$out" | grep -q "errors: 0, replies: 20" || die "TC.SETMANY --pipe: $out"
expect w9999 get warm:9999
for _ in $(seq 300); do # poll up to 30 s
  [ "$(redis-cli -s "$WORK/b.sock" get warm:7)" = w7 ] && break
  sleep 0.1
done
[ "$(redis-cli -s "$WORK/b.sock" get warm:7)" = w7 ] ||
  die "b kept its stale copy after the batch"
"${CLI[@]}" pttl warm:5 | grep -Eq '^[1-9][0-9]*$' || die "warm TTL"
expect "ERR wrong number of arguments for 'tc.setmany' command" \
  tc.setmany 0 k

# redis-benchmark: short runs, every reply checked by the tool. It has no
# built-in MGET test (-t mget selects nothing), so MGET runs as a custom
# command over ten keys.
keys=()
for _ in $(seq 10); do keys+=("key:__rand_int__"); done
bench=$( (redis-benchmark -s "$WORK/a.sock" -t get,set -n 3000 -c 20 -q \
            -r 1000 &&
          redis-benchmark -s "$WORK/a.sock" -n 3000 -c 20 -q -r 1000 \
            MGET "${keys[@]}") 2>&1 | tr '\r' '\n' | grep -v '^WARNING' ||
          true)
echo "$bench" | grep 'requests per second'
for t in GET SET MGET; do
  echo "$bench" | grep -q "^$t.*: .* requests per second" ||
    die "redis-benchmark $t did not complete: $bench"
done
if echo "$bench" | grep -qi "error"; then
  die "redis-benchmark reported errors: $bench"
fi
echo "redis-cli and redis-benchmark: OK"
