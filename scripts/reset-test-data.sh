#!/usr/bin/env bash
# Empties the test database and the test Redis dbs (1, 2) so that `make test` starts clean.
set -euo pipefail
mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush \
  -e "DROP DATABASE IF EXISTS seatrush_test; CREATE DATABASE seatrush_test;"
for db in 1 2; do redis-cli -p 6390 -n "$db" FLUSHDB >/dev/null; done
