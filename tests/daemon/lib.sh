# Shared by the shell-driven daemon tests: a private redis-server and
# tiercached processes in a temp dir, stopped by pid on any exit.
set -euo pipefail
TIERCACHED=${1:?usage: $0 path/to/tiercached}
WORK=$(mktemp -d /tmp/tcd-sh.XXXXXX)
PIDS=()
TCD_PIDS=()
cleanup() {
  local rc=$? p st
  # tiercached gets SIGTERM (a sanitizer build then checks for leaks) and
  # must exit 0; redis-server is simply killed.
  for p in "${TCD_PIDS[@]+"${TCD_PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${TCD_PIDS[@]+"${TCD_PIDS[@]}"}"; do
    st=0
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || st=$?
    if [ "$st" != 0 ]; then echo "FAIL: tiercached pid $p exited $st" >&2; rc=1; fi
  done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  if grep -l -E "Sanitizer|runtime error:" "$WORK"/*.log 2>/dev/null; then
    cat "$WORK"/*.log >&2
    rc=1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

die() { echo "FAIL: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_for DESC CMD...: poll CMD until it succeeds, up to 15 s.
wait_for() {
  local desc=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "timed out waiting for $desc"
}

start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
    --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" \
    --daemonize no &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_for redis-server redis-cli -s "$WORK/redis.sock" ping
}

# start_tiercached NAME [flags...]: socket at $WORK/NAME.sock
start_tiercached() {
  local name=$1; shift
  "$TIERCACHED" --socket "$WORK/$name.sock" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT" --log-level warn "$@" \
    2>>"$WORK/$name.log" &
  TCD_PIDS+=("$!")
  wait_for "tiercached $name" redis-cli -s "$WORK/$name.sock" ping
}
