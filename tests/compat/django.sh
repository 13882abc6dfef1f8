#!/usr/bin/env bash
# Django's cache framework with django-redis (Debian python3-django-redis)
# through tiercached and through plain redis-server, results compared.
source "$(dirname "$0")/lib.sh"
$PY -c 'import django_redis' 2>/dev/null ||
  die "python3-django-redis not installed (apt)"
start_redis
start_tiercached a
start_plain_redis
$PY "$HERE/django_compat.py" "$WORK/a.sock" "$WORK/plain.sock"
