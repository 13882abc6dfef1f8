#!/usr/bin/env bash
# tiercached on a local Redis Cluster of three masters (no replicas), over
# TCP loopback (issue 10): GET misses and SETs at -P 16 -c 50 through
# tiercached, and redis-benchmark --cluster straight at the cluster as the
# anchor (the same requests with no proxy, no invalidation, no L1).
# Usage: daemon/bench_cluster.sh [path/to/tiercached]...
#   each tiercached given is measured in turn (e.g. before and after a
#   change), against the same cluster.
# Env: TCD_BENCH_N (requests per run, default 200000), TCD_BENCH_REPS (3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${TCD_BENCH_N:-200000}
REPS=${TCD_BENCH_REPS:-3}
[ $# -gt 0 ] || set -- "$ROOT/.dev/build-release/daemon/tiercached"
for t in "$@"; do [ -x "$t" ] || { echo "no tiercached at $t" >&2; exit 2; }; done

. "$ROOT/daemon/bench_common.sh"
bench_workdir tcd-bench-cluster

# A node's cluster bus listens on its port + 10000: both must be free.
nodeport() {
  python3 - <<'PY'
import random, socket
while True:
    p = random.randint(20000, 50000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass
PY
}
ports=()
for i in 0 1 2; do
  p=$(nodeport)
  mkdir -p "$WORK/n$i"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$WORK/n$i/nodes.conf" --cluster-node-timeout 5000 \
    --save '' --appendonly no --dir "$WORK/n$i" --logfile "$WORK/n$i/log" \
    --daemonize no &
  PIDS+=("$!")
  ports+=("$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 200); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" \
  "127.0.0.1:${ports[2]}" --cluster-replicas 0 --cluster-yes >"$WORK/create.log" 2>&1
for _ in $(seq 400); do
  ok=1
  for p in "${ports[@]}"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
  done
  [ $ok = 1 ] && break
  sleep 0.05
done
url="redis-cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"

# bench PORT TEST [args] -> "rps p50" ("failed failed" if it failed)
bench() {
  local port=$1 test=$2 out; shift 2
  if out=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -P 16 -c 50 \
             -n "$N" -r 1000000 "$@" --csv 2>>"$WORK/bench.err"); then
    awk -F'"' -v t="$test" 'toupper($2) == toupper(t) {print $4, $10; f=1}
      END {if (!f) print "failed failed"}' <<<"$out"
  else
    echo "failed failed"
  fi
}

printf '%-44s %-6s %12s %9s\n' "-P 16 -c 50, 3 masters" test "req/s" "p50 ms"
for test in get set; do
  : >"$WORK/anchor.$test"
  for _ in $(seq "$REPS"); do
    bench "${ports[0]}" "$test" --cluster >>"$WORK/anchor.$test"
  done
  printf '%-44s %-6s %12.0f %9s\n' "redis-benchmark --cluster (no proxy)" "$test" \
    "$(cut -d' ' -f1 "$WORK/anchor.$test" | median)" \
    "$(cut -d' ' -f2 "$WORK/anchor.$test" | median)"
done
for tcd in "$@"; do
  for p in "${ports[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
  tport=$(freeport)
  "$tcd" --port "$tport" --redis-url "$url" --log-level warn 2>"$WORK/tcd.log" &
  pid=$!
  for _ in $(seq 400); do redis-cli -p "$tport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  for test in get set; do
    : >"$WORK/tcd.$test"
    for _ in $(seq "$REPS"); do
      # GET: keys never set (-r over a million), so each is an L1 miss.
      bench "$tport" "$test" >>"$WORK/tcd.$test"
    done
    printf '%-44s %-6s %12.0f %9s\n' "$tcd" \
      "$test" "$(cut -d' ' -f1 "$WORK/tcd.$test" | median)" \
      "$(cut -d' ' -f2 "$WORK/tcd.$test" | median)"
  done
  redis-cli -p "$tport" info tiercached 2>/dev/null |
    grep -E 'tiercached_commands_(pipelined|in_loop)' | tr -d '\r' | sed 's/^/  /'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
