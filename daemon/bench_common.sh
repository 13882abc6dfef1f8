# Shell helpers daemon/bench.sh and daemon/bench_cluster.sh share (sourced,
# not run; one copy instead of one per script):
#   bench_workdir NAME   a private temp dir /tmp/NAME.XXXXXX in $WORK, and
#                        $PIDS: at exit every pid in it is killed and
#                        awaited, and $WORK removed
#   freeport             a free TCP port on 127.0.0.1
#   median               the median of the numbers on stdin, one a line
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
