#!/usr/bin/env bash
# tiercached vs redis-server, side by side in one run (issue 5 targets):
#   redis-benchmark -t get -P 16 -c 50   and   -P 1 -c 50
# against tiercached serving L1 hits and against the redis-server behind it,
# both over unix sockets. Prints requests/s, p50/p99 and the ratios.
# Usage: daemon/bench.sh [path/to/tiercached]   (./dev bench --daemon)
# Env: TCD_BENCH_N (requests per run, default 300000), TCD_BENCH_REPS (3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TCD=${1:-$ROOT/.dev/build-release/daemon/tiercached}
N=${TCD_BENCH_N:-300000}
REPS=${TCD_BENCH_REPS:-3}
[ -x "$TCD" ] || { echo "no tiercached at $TCD" >&2; exit 2; }

WORK=$(mktemp -d /tmp/tcd-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$WORK/redis.sock" \
  --unixsocketperm 700 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" --daemonize no &
PIDS+=("$!")
for _ in $(seq 200); do redis-cli -s "$WORK/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Long L1 TTL: every GET of the benchmark's key is an L1 hit.
"$TCD" --socket "$WORK/tcd.sock" --redis-url "unix://$WORK/redis.sock" \
  --default-ttl 3600 --l1-ttl-ms 3600000 --log-level warn 2>"$WORK/tcd.log" &
PIDS+=("$!")
for _ in $(seq 200); do redis-cli -s "$WORK/tcd.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

# redis-benchmark's GET reads the literal key "key:__rand_int__" (no -r).
val=$(head -c 3 /dev/zero | tr '\0' x)
redis-cli -s "$WORK/tcd.sock" set key:__rand_int__ "$val" >/dev/null
redis-cli -s "$WORK/tcd.sock" get key:__rand_int__ >/dev/null

# run SOCK P -> "rps p50 p99" (from redis-benchmark --csv)
run() {
  redis-benchmark -s "$1" -t get -P "$2" -c 50 -n "$N" --csv 2>/dev/null |
    awk -F'"' '/^"GET"/ {print $4, $10, $14}'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-10s %-12s %12s %9s %9s\n' config server "req/s" "p50 ms" "p99 ms"
for P in 16 1; do
  : >"$WORK/r.$P"; : >"$WORK/t.$P"
  for _ in $(seq "$REPS"); do  # interleaved, so drift hits both alike
    run "$WORK/redis.sock" "$P" >>"$WORK/r.$P"
    run "$WORK/tcd.sock" "$P" >>"$WORK/t.$P"
  done
  for who in r t; do
    name=redis-server; [ $who = t ] && name=tiercached
    rps=$(cut -d' ' -f1 "$WORK/$who.$P" | median)
    p50=$(cut -d' ' -f2 "$WORK/$who.$P" | median)
    p99=$(cut -d' ' -f3 "$WORK/$who.$P" | median)
    printf '%-10s %-12s %12.0f %9s %9s\n' "-P $P -c 50" "$name" "$rps" "$p50" "$p99"
    eval "${who}_rps_$P=$rps"
  done
done
hits=$(redis-cli -s "$WORK/tcd.sock" info tiercache | tr -d '\r' |
  awk -F: '/^l1_hits:/ {h=$2} /^l1_misses:/ {m=$2} END {print h, m}')
echo
awk -v t16="$t_rps_16" -v r16="$r_rps_16" -v t1="$t_rps_1" -v r1="$r_rps_1" \
  'BEGIN { printf "ratio tiercached/redis-server: -P 16: %.2fx   -P 1: %.2fx\n", t16/r16, t1/r1 }'
echo "tiercached L1 hits/misses during the run: $hits (median of $REPS runs of $N requests each)"
