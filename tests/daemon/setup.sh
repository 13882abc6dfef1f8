#!/usr/bin/env bash
# Run by ./dev before building: the Node clients the daemon and compat
# tests use (package.json).
# Idempotent and quiet; a failure only makes the ioredis test fail.
set -u
cd "$(dirname "$0")"
missing=0
for m in ioredis redis cache-manager cache-manager-ioredis-yet \
  rate-limiter-flexible; do
  [ -d "node_modules/$m" ] || missing=1
done
if [ "$missing" = 0 ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "[tests/daemon] npm not found: daemon-ioredis will fail" >&2
  exit 0
fi
npm install --no-audit --no-fund --no-package-lock --silent >/dev/null 2>&1 ||
  echo "[tests/daemon] npm install failed: daemon-ioredis and compat-node will fail" >&2
exit 0
