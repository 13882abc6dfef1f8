#!/usr/bin/env bash
# tiercached vs redis-server, side by side in one run (issue 5 targets):
#   redis-benchmark -t get -P 16 -c 50   and   -P 1 -c 50
# against tiercached serving L1 hits and against the redis-server behind it,
# both over unix sockets. Prints requests/s, p50/p99 and the ratios.
# Then (issue 9 targets) over TCP: GET misses and SETs at -P 16 -c 50
# through tiercached against nutcracker proxying the same redis-server
# (req/s, p50, CPU per request of the proxy process), and forwarded INCR,
# HSET and a 10-command MULTI (bench_multi.py) p50 at -P 1 -c 1 against
# redis-server directly; then the same writes with one C client
# (tcd-bench-lat) against the floor: the transaction tiercached sends,
# sent to redis-server directly; and the memory tiercached spends per
# cached entry against redis-server's per key (bench_memory.py).
# Usage: daemon/bench.sh [path/to/tiercached]   (./dev bench --daemon)
# Env: TCD_BENCH_N (requests per run, default 300000), TCD_BENCH_REPS (3),
# TCD_BENCH_MEM_N (keys of the memory-per-entry row, default 200000),
# TCD_BENCH_LAT_N (requests per -P 1 -c 1 latency run, default 20000: one
# round trip each, so TCD_BENCH_N of them took minutes per row, and the
# whole run outlasted the caller's patience before the latency rows).
# A redis-benchmark run that fails prints "failed" in its row (with its
# stderr in the log) instead of ending the script silently.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TCD=${1:-$ROOT/.dev/build-release/daemon/tiercached}
N=${TCD_BENCH_N:-300000}
LAT_N=${TCD_BENCH_LAT_N:-20000}
REPS=${TCD_BENCH_REPS:-3}
[ -x "$TCD" ] || { echo "no tiercached at $TCD" >&2; exit 2; }

. "$ROOT/daemon/bench_common.sh"
bench_workdir tcd-bench

port=$(freeport)
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$WORK/redis.sock" \
  --unixsocketperm 700 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" --daemonize no &
PIDS+=("$!")
for _ in $(seq 200); do redis-cli -s "$WORK/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

tport=$(freeport)
# Long L1 TTL: every GET of the benchmark's key is an L1 hit.
"$TCD" --socket "$WORK/tcd.sock" --port "$tport" \
  --redis-url "unix://$WORK/redis.sock" \
  --default-ttl 3600 --l1-ttl-ms 3600000 --log-level warn 2>"$WORK/tcd.log" &
TCD_PID=$!
PIDS+=("$TCD_PID")
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

# ---- Issue 9: memory of the daemon per cached entry ----------------------
# 200,000 keys written to redis-server, each read once through tiercached
# (an L1 fill); growth of tiercached's RSS per entry against redis-server's
# used_memory per key for the same keys.
echo
/usr/bin/python3 "$ROOT/daemon/bench_memory.py" "$WORK/tcd.sock" "$TCD_PID" \
  "$WORK/redis.sock" "${TCD_BENCH_MEM_N:-200000}" || echo "memory row failed"

# ---- Issue 9: forwarded commands and L1 misses, against nutcracker -------
# nutcracker (twemproxy) proxies the same redis-server; everything over TCP
# loopback here (nutcracker has no unix-socket upstream in this setup).
command -v nutcracker >/dev/null || { echo "nutcracker not installed: no proxy rows"; exit 0; }
nport=$(freeport)
cat >"$WORK/nut.yml" <<YML
alpha:
  listen: 127.0.0.1:$nport
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$port:1
YML
# -s: its stats port (default 22222) would clash with any other nutcracker.
nutcracker -c "$WORK/nut.yml" -s "$(freeport)" -o "$WORK/nut.log" &
NUT_PID=$!
PIDS+=("$NUT_PID")
for _ in $(seq 200); do redis-cli -p "$nport" ping >/dev/null 2>&1 && break; sleep 0.05; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

# bench PORT TEST P C [args] -> "rps p50" ("failed failed" if it failed;
# its stderr is in $WORK/bench.err). BENCH_N: requests (default N).
bench() {
  local port=$1 test=$2 p=$3 c=$4 out; shift 4
  if out=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -P "$p" \
             -c "$c" -n "${BENCH_N:-$N}" "$@" --csv 2>>"$WORK/bench.err"); then
    awk -F'"' -v t="$test" 'toupper($2) == toupper(t) {print $4, $10; f=1}
      END {if (!f) print "failed failed"}' <<<"$out"
  else
    echo "failed failed"
  fi
}

echo
printf '%-30s %-12s %12s %9s %12s\n' "forwarded (TCP)" server "req/s" "p50 ms" "CPU us/req"
for row in "get:16:50:-r 1000000" "set:16:50:-r 1000000"; do
  IFS=: read -r test P C extra <<<"$row"
  for who in nut tcd; do : >"$WORK/$who.$test"; done
  for _ in $(seq "$REPS"); do
    for who in nut tcd; do
      pp=$nport pid=$NUT_PID
      [ $who = tcd ] && pp=$tport pid=$TCD_PID
      c0=$(cpu_ticks "$pid")
      out=$(bench "$pp" "$test" "$P" "$C" $extra)
      c1=$(cpu_ticks "$pid")
      echo "$out $(( (c1 - c0) * tick_us / N ))" >>"$WORK/$who.$test"
    done
  done
  for who in nut tcd; do
    name=nutcracker; [ $who = tcd ] && name=tiercached
    rps=$(cut -d' ' -f1 "$WORK/$who.$test" | median)
    p50=$(cut -d' ' -f2 "$WORK/$who.$test" | median)
    cpu=$(cut -d' ' -f3 "$WORK/$who.$test" | median)
    label="$(echo "$test" | tr a-z A-Z) -P $P -c $C"
    [ "$test" = get ] && label="$label (L1 misses)"
    printf '%-30s %-12s %12.0f %9s %12s\n' "$label" "$name" "$rps" "$p50" "$cpu"
    eval "${who}_${test}_rps=$rps"
  done
done
awk -v a="$tcd_get_rps" -v b="$nut_get_rps" -v c="$tcd_set_rps" -v d="$nut_set_rps" \
  'BEGIN { printf "ratio tiercached/nutcracker req/s: GET misses %.2fx, SET %.2fx\n", a/b, c/d }'

# -P 1 -c 1: each request one round trip through the proxy. nutcracker's
# p50 is the same hop without tiercache (no invalidation, no L1): the
# floor any proxy on this machine pays.
echo
printf '%-24s %12s %12s %12s %8s %8s\n' "latency, -P 1 -c 1" "redis p50" \
  "tcd p50" "nut p50" "tcd" "nut"
row() { # LABEL: medians of $WORK/{d,f,n}.x -> a row, ratios over redis
  local d f n
  d=$(median <"$WORK/d.x"); f=$(median <"$WORK/f.x"); n=$(median <"$WORK/n.x")
  awk -v l="$1" -v d="$d" -v f="$f" -v n="$n" 'BEGIN {
    r1 = (d + 0 > 0 && f + 0 > 0) ? sprintf("%.2fx", f / d) : "-"
    r2 = (d + 0 > 0 && n + 0 > 0) ? sprintf("%.2fx", n / d) : "-"
    printf "%-24s %12s %12s %12s %8s %8s\n", l, d, f, n, r1, r2 }'
}
for test in incr hset; do
  : >"$WORK/d.x"; : >"$WORK/f.x"; : >"$WORK/n.x"
  for _ in $(seq "$REPS"); do
    BENCH_N=$LAT_N bench "$port" "$test" 1 1 -r 1000 | cut -d' ' -f2 >>"$WORK/d.x"
    BENCH_N=$LAT_N bench "$tport" "$test" 1 1 -r 1000 | cut -d' ' -f2 >>"$WORK/f.x"
    BENCH_N=$LAT_N bench "$nport" "$test" 1 1 -r 1000 | cut -d' ' -f2 >>"$WORK/n.x"
  done
  row "$(echo "$test" | tr a-z A-Z) (forwarded)"
done
# A 10-command transaction (MULTI, 10 x INCR, EXEC in one write; key
# multi10): redis-benchmark sends one command per request, so a small
# client (daemon/bench_multi.py) times it on every side alike.
# (nutcracker refuses MULTI: no row for it.)
: >"$WORK/d.x"; : >"$WORK/f.x"; : >"$WORK/n.x"
MULTI_N=$((LAT_N / 10 > 500 ? LAT_N / 10 : 500))
for _ in $(seq "$REPS"); do
  python3 "$ROOT/daemon/bench_multi.py" 127.0.0.1 "$port" "$MULTI_N" >>"$WORK/d.x" ||
    echo failed >>"$WORK/d.x"
  python3 "$ROOT/daemon/bench_multi.py" 127.0.0.1 "$tport" "$MULTI_N" >>"$WORK/f.x" ||
    echo failed >>"$WORK/f.x"
done
row "MULTI x10 (forwarded)"

# The floor. A write through tiercached must carry its invalidation: it
# reaches redis-server as MULTI, the write, HSET of its stamp, PUBLISH,
# EXEC. tcd-bench-lat (daemon/bench_lat.c: one client in C, one request at
# a time) sends that transaction to redis-server directly ("floor": no
# proxy hop), and the plain command to redis-server, nutcracker and
# tiercached, so every column is the same client's p50 in microseconds.
# What tiercached adds of its own is what it costs above the floor plus
# the hop (nutcracker's p50 over direct).
LAT=$(dirname "$TCD")/tcd-bench-lat
if [ -x "$LAT" ]; then
  echo
  printf '%-22s %9s %9s %9s %9s %11s %9s\n' "same client, p50 us" direct floor \
    nutcracker tiercached "floor/dir" "tcd/dir"
  for pair in incr:floor multi10:floor10; do
    IFS=: read -r plain fl <<<"$pair"
    : >"$WORK/d.x"; : >"$WORK/fl.x"; : >"$WORK/n.x"; : >"$WORK/f.x"
    ln=$LAT_N; [ "$plain" = multi10 ] && ln=$MULTI_N
    for _ in $(seq "$REPS"); do
      "$LAT" 127.0.0.1 "$port" "$ln" "$plain" | cut -d' ' -f1 >>"$WORK/d.x" || echo failed >>"$WORK/d.x"
      "$LAT" 127.0.0.1 "$port" "$ln" "$fl" | cut -d' ' -f1 >>"$WORK/fl.x" || echo failed >>"$WORK/fl.x"
      [ "$plain" = incr ] && { "$LAT" 127.0.0.1 "$nport" "$ln" "$plain" | cut -d' ' -f1 >>"$WORK/n.x" || echo failed >>"$WORK/n.x"; }
      "$LAT" 127.0.0.1 "$tport" "$ln" "$plain" | cut -d' ' -f1 >>"$WORK/f.x" || echo failed >>"$WORK/f.x"
    done
    d=$(median <"$WORK/d.x"); fl=$(median <"$WORK/fl.x"); f=$(median <"$WORK/f.x")
    nn=$(median <"$WORK/n.x"); nn=${nn:--}
    awk -v l="$(echo "$plain" | tr a-z A-Z)" -v d="$d" -v fl="$fl" -v n="$nn" -v f="$f" 'BEGIN {
      r1 = (d + 0 > 0 && fl + 0 > 0) ? sprintf("%.2fx", fl / d) : "-"
      r2 = (d + 0 > 0 && f + 0 > 0) ? sprintf("%.2fx", f / d) : "-"
      printf "%-22s %9s %9s %9s %9s %11s %9s\n", l, d, fl, n, f, r1, r2 }'
  done
fi
# (nutcracker refuses CONFIG: redis-benchmark warns, harmlessly)
if grep -qv "Could not fetch server CONFIG" "$WORK/bench.err" 2>/dev/null; then
  echo "redis-benchmark said:"
  grep -v "Could not fetch server CONFIG" "$WORK/bench.err" | sort -u | head -5
fi
exit 0
