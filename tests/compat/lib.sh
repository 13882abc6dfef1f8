# Shared by the compat suites: tests/daemon/lib.sh (a private redis-server
# behind tiercached, processes stopped by pid on any exit) plus a second,
# plain redis-server to compare against, at $WORK/plain.sock.
source "$(dirname "${BASH_SOURCE[0]}")/../daemon/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3

# start_plain_redis: the redis-server that results are compared with.
start_plain_redis() {
  redis-server --port 0 --unixsocket "$WORK/plain.sock" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$WORK" --logfile "$WORK/plain.log" \
    --daemonize no &
  PIDS+=("$!")
  wait_for plain-redis redis-cli -s "$WORK/plain.sock" ping
}
