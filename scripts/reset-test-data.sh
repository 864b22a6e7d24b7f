#!/usr/bin/env bash
# Empties the test database and the test Redis so that `make test` starts clean: dbs 1 and 2
# of the dev Redis, or with `cluster`, every node of both dev clusters (make test-cluster).
set -euo pipefail
mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush \
  -e "DROP DATABASE IF EXISTS seatrush_test; CREATE DATABASE seatrush_test;"
if [ "${1:-}" = cluster ]; then
  for port in 6391 6392 6393 6394 6395 6396; do redis-cli -p "$port" FLUSHALL >/dev/null; done
else
  for db in 1 2; do redis-cli -p 6390 -n "$db" FLUSHDB >/dev/null; done
fi
