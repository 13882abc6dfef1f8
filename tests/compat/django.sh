#!/usr/bin/env bash
# Django's cache framework with django-redis (Debian python3-django-redis)
# through tiercached and through plain redis-server, results compared.
source "$(dirname "$0")/../daemon/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
$PY -c 'import django_redis' 2>/dev/null ||
  die "python3-django-redis not installed (apt)"
start_redis
start_tiercached a
redis-server --port 0 --unixsocket "$WORK/plain.sock" --unixsocketperm 700 \
  --save '' --appendonly no --dir "$WORK" --logfile "$WORK/plain.log" \
  --daemonize no &
PIDS+=("$!")
wait_for plain-redis redis-cli -s "$WORK/plain.sock" ping
$PY "$HERE/django_compat.py" "$WORK/a.sock" "$WORK/plain.sock"
