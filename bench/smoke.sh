#!/usr/bin/env bash
# bench-smoke: run `tc-bench --quick` against a private redis-server and check
# that it produced every figure issues 4 and 12 name (--quick has no
# 1M-key rows). Never judges the figures.
#   usage: smoke.sh path/to/tc-bench
set -euo pipefail
BENCH=$1
DIR=$(mktemp -d /tmp/tc-bench-smoke.XXXXXX)
REDIS_PID=""
cleanup() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --unixsocket "$DIR/redis.sock" \
  --unixsocketperm 700 --save '' --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" --daemonize no &
REDIS_PID=$!
for _ in $(seq 100); do
  if python3 - "$PORT" <<'PY' 2>/dev/null; then break; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
  sleep 0.1
done

export REDIS_URL="redis://127.0.0.1:$PORT"
export TC_BENCH_UNIX="$DIR/redis.sock"
PLOT=()
command -v gnuplot >/dev/null && PLOT=(--plot "$DIR/bench.png")
"$BENCH" --quick --json "$DIR/bench.json" "${PLOT[@]}"
# The unix-socket path, on one short section.
"$BENCH" --quick --unix --only latency --keys 2000 >/dev/null

python3 - "$DIR/bench.json" <<'PY'
import json, math, sys
required = """l1_get_p50_ns l1_get_p99_ns floor_get_p50_ns l2_get_p50_us
l2_get_p99_us raw_get_p50_us raw_get_p99_us l1_mops_1t l1_mops_2t
pubsub_raw_p50_us pubsub_raw_p99_us inval_p50_us inval_p99_us
write_async_p50_us write_strict_p50_us l1_overhead_bytes
hit_ratio_policy_zipf10_1pct hit_ratio_lru_zipf10_1pct
hit_ratio_policy_scan_1pct hit_ratio_lru_scan_1pct
l1_hit_ns_1k_1t l1_hit_ns_100k_1t lfht_hit_ns_1k_1t lfht_hit_ns_100k_1t
oa_hit_ns_1k_1t oa_hit_ns_100k_1t l1_mops_1k_1t l1_mops_1k_2t
l1_mops_100k_1t l1_mops_100k_2t lfht_mops_1k_1t lfht_mops_1k_2t
lfht_mops_100k_1t lfht_mops_100k_2t l1_reader_max_us_during_invalidate_1m
l1_reader_max_us_during_fill zstd_ratio_64k zstd_decompress_us_64k
stampede_loader_calls_local stampede_loader_calls_coordinated
fleet_cluster_pubsub_busiest_cpu_us_100 fleet_cluster_sharded_busiest_cpu_us_100
fleet_cluster_single_busiest_cpu_us_100""".split()
with open(sys.argv[1]) as f:
    d = json.load(f)
bad = [k for k in required
       if not isinstance(d.get(k), (int, float)) or not math.isfinite(d[k])]
if bad:
    sys.exit("missing or non-numeric figures: " + " ".join(bad))
print("bench-smoke: all %d required figures present" % len(required))
PY
if [ ${#PLOT[@]} -gt 0 ]; then
  [ -s "$DIR/bench.png" ] || { echo "bench-smoke: no plot written" >&2; exit 1; }
fi
