#!/usr/bin/env bash
# Compile the README's usage example against the built library and run it
# against a throwaway redis-server (stopped by its pid, also on failure).
set -euo pipefail
readme=$1 incdir=$2 libdir=$3
work=$(mktemp -d /tmp/tc-readme.XXXXXX)
pid=""
cleanup() { if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

sed -n '/<!-- example:begin -->/,/<!-- example:end -->/p' "$readme" |
  sed '1,2d;$d' | sed '$d' >"$work/app.c"
grep -q tc_cache_create "$work/app.c" || { echo "example not found"; exit 1; }
${CC:-cc} -std=c11 -Wall -Wextra -Werror -I"$incdir" "$work/app.c" \
  -L"$libdir" -ltiercache -Wl,-rpath,"$libdir" -o "$work/app" ${SAN_FLAGS:-}

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

out=$(env -i PATH="$PATH" REDIS_URL="redis://127.0.0.1:$port" "$work/app")
expected=$'alice\n{"id":"7"}'
if [ "$out" != "$expected" ]; then
  printf 'unexpected output:\n%s\n' "$out"; exit 1
fi
# The example's pattern invalidation removed its key from Redis.
[ "$(redis-cli -p "$port" exists myapp:user:42)" = 0 ] || { echo "user:42 left"; exit 1; }
echo "README example: compiled, ran, output as expected"
