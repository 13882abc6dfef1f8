#!/usr/bin/env bash
# Run by ./dev before building: the Node client the daemon tests use.
# Idempotent and quiet; a failure only makes the ioredis test fail.
set -u
cd "$(dirname "$0")"
if [ -d node_modules/ioredis ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "[tests/daemon] npm not found: daemon-ioredis will fail" >&2
  exit 0
fi
npm install --no-audit --no-fund --no-package-lock --silent >/dev/null 2>&1 ||
  echo "[tests/daemon] npm install ioredis failed: daemon-ioredis will fail" >&2
exit 0
