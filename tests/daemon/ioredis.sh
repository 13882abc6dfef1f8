#!/usr/bin/env bash
# ioredis (from npm, installed by tests/daemon/setup.sh) against tiercached.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$HERE/node_modules/ioredis" ] || bash "$HERE/setup.sh"
[ -d "$HERE/node_modules/ioredis" ] || die "ioredis not installed (npm)"
start_redis
start_tiercached a
start_tiercached b
NODE_PATH="$HERE/node_modules" node "$HERE/ioredis_test.js" \
  "$WORK/a.sock" "$WORK/b.sock"
start_tiercached big
NODE_PATH="$HERE/node_modules" node "$HERE/ioredis_big_value.js" \
  "$WORK/big.sock"
