#!/usr/bin/env bash
# make api-check (also part of make test): schemathesis generates requests from
# /openapi.json of a running debug seatrush (against the dev stack, from the SEATRUSH_*
# environment) with every check it has, and fails on any 5xx, any response the document does
# not describe (status, content type, headers, body schema), schema-invalid data accepted,
# valid data refused, auth ignored, or a created resource that cannot be read.
#
# Generated calls reach the core, not only the authentication in front of it: each operation
# gets the credentials its `security` names (the caller's identity, their ACTIVE Queue-Token,
# the admin key), and path and body ids are drawn, most of the time, from a schedule, its
# seats, the caller and reservations that exist (scripts/api-check.toml). The stateful phase
# follows the document's links (a hold to its read, cancel and payment). Afterwards
# scripts/api-check-coverage.py prints the statuses each operation got and fails unless every
# operation was answered past its auth checks (something other than 401/403).
#
# API_CHECK_EXAMPLES (default 500, about 12 000 requests in all) sets the cases per operation
# and phase, API_CHECK_MIN_REQUESTS the fewest requests the run must make (10 000 with the
# default examples, else none), API_CHECK_SEED the
# seed (random by default; schemathesis prints it), and API_CHECK_HAR keeps every request and
# answer as a HAR file there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.dev/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4.32,<5'
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
out=$(mktemp -d)
har=${API_CHECK_HAR:-$out/requests.har}
SEATRUSH_HTTP_ADDR=127.0.0.1:$port SEATRUSH_LOG=warn target/debug/seatrush &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 600); do curl -sf "$base/health" >/dev/null && break; sleep 0.2; done

call() { # <method> <path> <body> [header...]: the answer's data, failing on a non-2xx
  local method=$1 path=$2 body=$3; shift 3
  curl -sf -X "$method" -H 'Content-Type: application/json' "$@" "$base$path" -d "$body"
}
admin() { call "$1" "$2" "$3" -H 'X-Admin-Key: dev-admin-key'; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['data']['$1'])"; }

# The caller, a schedule open now with 200 seats at 1 000 KRW, and the caller's ACTIVE token
# for it, with a balance. The caller makes every request: their rate is lifted (still
# counted), and so is the seat limit.
user=$(admin POST /api/v1/admin/users '{"name":"api-check"}' | field userId)
venue=$(admin POST /api/v1/admin/venues '{"name":"API Check Hall"}' | field venueId)
concert=$(admin POST /api/v1/admin/concerts '{"title":"API Check Live"}' | field concertId)
open=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%S.000Z); close=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)
created=$(admin POST "/api/v1/admin/concerts/$concert/schedules" \
  "{\"venueId\":$venue,\"performanceDate\":\"2026-12-24\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"$open\",\"bookingCloseAt\":\"$close\",\"seatCount\":200,\"price\":1000}")
schedule=$(field scheduleId <<<"$created")
seats=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["data"]["seatIds"])))' <<<"$created")
first_seat=${seats%%,*}
# A second schedule for the generated settings changes, so they do not pause the caller's
# schedule or spend their request rate.
tuned=$(admin POST "/api/v1/admin/concerts/$concert/schedules" \
  "{\"venueId\":$venue,\"performanceDate\":\"2026-12-25\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"$open\",\"bookingCloseAt\":\"$close\",\"seatCount\":10,\"price\":1000}" | field scheduleId)
queue() { admin PUT "/api/v1/admin/schedules/$schedule/queue" "$1" >/dev/null; }
queue '{"userRequestsPerSecond":1000000,"maxSeatsPerUser":200,"holdTtlSeconds":86400,"activeTtlSeconds":86400}'
identity=$(target/debug/seatrush sign-user-token "$user" --ttl-seconds 86400)
as_user=(-H "Authorization: Bearer $identity")
token=$(call POST /api/v1/queue/tokens "{\"userId\":$user,\"scheduleId\":$schedule}" "${as_user[@]}" | field token)
leave_token=$(call POST /api/v1/queue/tokens "{\"userId\":$user,\"scheduleId\":$tuned}" "${as_user[@]}" | field token)
as_user+=(-H "Queue-Token: $token")
call POST "/api/v1/users/$user/balance/charge" '{"amount":10000000}' "${as_user[@]}" >/dev/null
hold() { call POST /api/v1/reservations "{\"userId\":$user,\"scheduleId\":$schedule,\"seatIds\":[$1]}" "${as_user[@]}" | field reservationId; }
# A hold for the day, whose id no generated request knows: a payment retires the payer's
# token unless they hold seats still, and this one keeps the token live for the whole run.
hold "$first_seat" >/dev/null
# Later holds last 5 s, so seats held by generated requests come back. Reservations in two
# more states for the id dictionary: one paid, one cancelled.
queue '{"holdTtlSeconds":5}'
paid=$(hold "$((first_seat + 1))")
call POST /api/v1/payments "{\"userId\":$user,\"reservationId\":$paid,\"paymentMethod\":\"BALANCE\"}" "${as_user[@]}" >/dev/null
cancelled=$(hold "$((first_seat + 2))")
call DELETE "/api/v1/reservations/$cancelled" '' "${as_user[@]}" >/dev/null
seats=${seats#*,}

sed -e "s/@IDENTITY@/$identity/; s/@TOKEN@/$token/; s/@LEAVE_TOKEN@/$leave_token/; s/@USER@/$user/; s/@VENUE@/$venue/" \
  -e "s/@CONCERT@/$concert/; s/@SCHEDULE@/$schedule/; s/@TUNED@/$tuned/; s/@SEATS@/$seats/" \
  -e "s/@RESERVATIONS@/$paid, $cancelled/; s/@OPEN@/$open/; s/@CLOSE@/$close/" scripts/api-check.toml >"$out/schemathesis.toml"

status=0
export SCHEMATHESIS_HOOKS=scripts.api_check_hooks
"$venv/bin/schemathesis" --config-file "$out/schemathesis.toml" run "$base/openapi.json" \
  --checks all --max-examples "${API_CHECK_EXAMPLES:-500}" --seed "${API_CHECK_SEED:-$RANDOM}" \
  --no-color --report har --report-har-path "$har" || status=$?
min_requests=${API_CHECK_MIN_REQUESTS:-$([ -z "${API_CHECK_EXAMPLES:-}" ] && echo 10000 || echo 0)}
python3 scripts/api-check-coverage.py api/openapi.json "$har" "$min_requests" || status=1
exit $status
