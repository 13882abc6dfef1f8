#!/usr/bin/env bash
# redis-py (Debian python3-redis) through tiercached and through plain
# redis-server, results compared (compat.py). Two async and two strict
# daemons share one redis-server; the plain one is separate.
source "$(dirname "$0")/lib.sh"
$PY -c 'import redis' 2>/dev/null || die "python3-redis not installed (apt)"
start_redis
start_tiercached a --lease-ms 2000
start_tiercached b --lease-ms 2000
start_tiercached sa --coherence strict --lease-ms 2000
start_tiercached sb --coherence strict --lease-ms 2000
start_plain_redis
$PY "$HERE/compat.py" "$WORK/a.sock" "$WORK/b.sock" "$WORK/sa.sock" \
  "$WORK/sb.sock" "$WORK/redis.sock" "$WORK/plain.sock"
