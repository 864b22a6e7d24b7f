#!/usr/bin/env bash
# Part of make test: docker-compose.yml against the Compose Specification's JSON schema
# (check-jsonschema's built-in copy), since Docker itself is not needed to run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.dev/check-jsonschema
if [ ! -x "$venv/bin/check-jsonschema" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'check-jsonschema>=0.29,<1'
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
