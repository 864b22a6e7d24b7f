#!/usr/bin/env bash
# make api-check (also part of make test): schemathesis generates requests from
# /openapi.json of a running debug seatrush (against the dev stack, from the SEATRUSH_*
# environment) and fails on any 5xx or any response the document does not describe:
# status, content type, headers and body schema. Requests carry the admin key, one user's
# identity and that user's ACTIVE Queue-Token, so generated calls get past authentication.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.dev/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4.3,<5'
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
SEATRUSH_HTTP_ADDR=127.0.0.1:$port SEATRUSH_LOG=warn target/debug/seatrush &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -sf "$base/health" >/dev/null && break; sleep 0.2; done

admin() { curl -sf -X POST -H 'X-Admin-Key: dev-admin-key' -H 'Content-Type: application/json' "$base$1" -d "$2"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['data']['$1'])"; }
user=$(admin /api/v1/admin/users '{"name":"api-check"}' | field userId)
venue=$(admin /api/v1/admin/venues '{"name":"API Check Hall"}' | field venueId)
concert=$(admin /api/v1/admin/concerts '{"title":"API Check Live"}' | field concertId)
open=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%S.000Z); close=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)
schedule=$(admin "/api/v1/admin/concerts/$concert/schedules" \
  "{\"venueId\":$venue,\"performanceDate\":\"2026-12-24\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"$open\",\"bookingCloseAt\":\"$close\",\"seatCount\":50,\"price\":50000}" \
  | field scheduleId)
# One user makes every generated request: their request rate is lifted (still counted).
curl -sf -X PUT -H 'X-Admin-Key: dev-admin-key' "$base/api/v1/admin/schedules/$schedule/queue" \
  -d '{"userRequestsPerSecond":1000000}' >/dev/null
identity="Authorization: Bearer $(target/debug/seatrush sign-user-token "$user")"
token=$(curl -sf -X POST -H "$identity" "$base/api/v1/queue/tokens" \
  -d "{\"userId\":$user,\"scheduleId\":$schedule}" | field token)

"$venv/bin/schemathesis" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${API_CHECK_EXAMPLES:-30}" --no-color \
  -H 'X-Admin-Key: dev-admin-key' -H "$identity" -H "Queue-Token: $token"
