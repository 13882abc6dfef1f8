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
