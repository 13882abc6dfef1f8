#!/usr/bin/env bash
# Node clients from npm (node-redis 4, cache-manager + ioredis store,
# rate-limiter-flexible; installed by tests/daemon/setup.sh) through
# tiercached and through plain redis-server, results compared.
source "$(dirname "$0")/lib.sh"
MODS="$HERE/../daemon/node_modules"
[ -d "$MODS/rate-limiter-flexible" ] || bash "$HERE/../daemon/setup.sh"
[ -d "$MODS/rate-limiter-flexible" ] || die "npm packages not installed"
start_redis
start_tiercached a
start_plain_redis
NODE_PATH="$MODS" node "$HERE/node_clients.js" "$WORK/a.sock" "$WORK/plain.sock"
