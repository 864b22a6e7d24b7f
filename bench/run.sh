#!/usr/bin/env bash
# make bench: a release seatrush against the dev stack (its own database and Redis db). For
# each Redis durability setting (appendfsync everysec, then always; BENCH_FSYNC picks), wrk
# -t1 -c64 against each endpoint, with the GET /health ceiling measured first and last (the
# ratios are to their mean, so drift during the run does not tilt them), then the flash sale
# (bench/flashsale.rs). bench/report.py prints the tables and writes the dated report and
# chart under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="$PWD/bench"
PORT=${BENCH_PORT:-8089}
DURATION=${BENCH_DURATION:-8s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
USERS=${BENCH_USERS:-1000000}
DB=seatrush_bench
REDIS_DB=3
SQL=(mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush)

command -v wrk >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y -qq wrk >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null; }
}
cargo build --release --quiet --bin seatrush --example flashsale

"${SQL[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;"
redis-cli -p 6390 -n "$REDIS_DB" FLUSHDB >/dev/null
# Compact the AOF now, so Redis does not fork to rewrite it in the middle of a run.
redis-cli -p 6390 BGREWRITEAOF >/dev/null
while redis-cli -p 6390 INFO persistence | grep -q '^aof_rewrite_in_progress:1'; do sleep 0.2; done

export SEATRUSH_HTTP_ADDR=127.0.0.1:$PORT
export SEATRUSH_REDIS_URL=redis://127.0.0.1:6390/$REDIS_DB
export SEATRUSH_MYSQL_PRIMARY_URL=mysql://seatrush:seatrush@127.0.0.1:3316/$DB
export SEATRUSH_MYSQL_REPLICA_URL=mysql://seatrush:seatrush@127.0.0.1:3317/$DB
export SEATRUSH_LOG=warn
./target/release/seatrush &
server=$!
out=$(mktemp -d)
# Whatever happens, the server stops and the dev Redis goes back to fsyncing every second.
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true
  redis-cli -p 6390 CONFIG SET appendfsync everysec >/dev/null; rm -rf "$out"' EXIT
base=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

admin() { curl -sf -X "$1" -H 'X-Admin-Key: dev-admin-key' -H 'Content-Type: application/json' "$base$2" ${3:+-d "$3"}; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['data']['$1'])"; }

# Users in bulk (MariaDB's sequence engine), picked up by the server's user directory.
"${SQL[@]}" "$DB" -e "INSERT INTO users (name) SELECT CONCAT('bench-', seq) FROM seq_1_to_$USERS;
  INSERT INTO user_balances (user_id) SELECT id FROM users;"
venue=$(admin POST /api/v1/admin/venues '{"name":"Bench Arena"}' | json venueId)
concert=$(admin POST /api/v1/admin/concerts '{"title":"Bench Live"}' | json concertId)
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z); close=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)
new_schedule() { # <seatCount> [price]: prints "scheduleId firstSeatId"
  admin POST "/api/v1/admin/concerts/$concert/schedules" \
    "{\"venueId\":$venue,\"performanceDate\":\"2026-12-25\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"$now\",\"bookingCloseAt\":\"$close\",\"seatCount\":$1,\"price\":${2:-50000}}" \
    | python3 -c "import json,sys; d=json.load(sys.stdin)['data']; print(d['scheduleId'], d['seatIds'][0])"
}
token() { # <userId> <scheduleId>
  curl -sf -XPOST "$base/api/v1/queue/tokens" -d "{\"userId\":$1,\"scheduleId\":$2}" | json token
}

# settle: waits until the write-behind has drained and the replica has caught up, so one
# run's deferred work does not land in the next run. Prints how long that took.
settle() {
  local started=$SECONDS
  for _ in $(seq 1200); do
    local backlog primary replica
    backlog=$(curl -sf "$base/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["outboxBacklog"])')
    primary=$("${SQL[@]}" -N -e "SELECT @@gtid_binlog_pos")
    replica=$(mariadb --no-defaults -h127.0.0.1 -P3317 -useatrush -pseatrush -N -e "SELECT @@gtid_slave_pos")
    if [ "$backlog" = 0 ] && [ "$primary" = "$replica" ]; then
      echo $((SECONDS - started)); return
    fi
    sleep 0.25
  done
  echo "timeout"
}

# measure <appendfsync setting>: every wrk run and the flash sale, on schedules of its own.
measure() {
  local fsync=$1
  redis-cli -p 6390 CONFIG SET appendfsync "$fsync" >/dev/null
  # Token issuance: a new user per request, on a schedule that admits 1 000 at a time.
  local schedule list_schedule list_token hold_schedule first_seat hold_token charge_token
  read -r schedule _ <<<"$(new_schedule 10000)"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" '{"maxWaitingUsers":2000000,"maxActiveUsers":1000}' >/dev/null
  # Seat listing: a 50-seat schedule (a concert hall's section), read with an ACTIVE token.
  read -r list_schedule _ <<<"$(new_schedule 50)"
  list_token=$(token "$USERS" "$list_schedule")
  # Holds: 100 000 seats at 1 KRW, one user holding a new seat per request (seat limit
  # lifted, holds and token kept for an hour); the payment run then pays those holds in
  # order, from a balance of 10 000 000.
  read -r hold_schedule first_seat <<<"$(new_schedule 100000 1)"
  admin PUT "/api/v1/admin/schedules/$hold_schedule/queue" \
    '{"maxSeatsPerUser":1000000,"holdTtlSeconds":3600,"activeTtlSeconds":3600}' >/dev/null
  hold_token=$(token "$hold_user" "$hold_schedule")
  curl -sf -XPOST "$base/api/v1/users/$hold_user/balance/charge" -H "Queue-Token: $hold_token" \
    -d '{"amount":10000000}' >/dev/null
  # Charges: 1 KRW per request for one user, with a token of the listing schedule.
  charge_token=$(token "$charge_user" "$list_schedule")
  settle >/dev/null

  run() { # <name> <script> [env...]; RUN_DURATION=… in the env list shortens one run
    local name=$1 script=$2; shift 2
    local line duration=$DURATION
    for kv in "$@"; do [[ $kv == RUN_DURATION=* ]] && duration=${kv#RUN_DURATION=}; done
    line=$(env "$@" BENCH_SCHEDULE="$schedule" wrk -t1 -c"$CONNECTIONS" -d"$duration" \
      -s "bench/$script" "$base" | grep '^RESULT')
    echo "$name $line" >>"$out/$fsync.wrk"
    echo "$name: write-behind drained and settled $(settle) s after the run" >>"$out/$fsync.drains"
  }
  run "GET /health" health.lua
  run "POST /api/v1/queue/tokens" issue_token.lua BENCH_FIRST_USER=1
  run "GET /api/v1/queue/tokens/me" queue_status.lua BENCH_STATUS_TOKEN="$list_token"
  run "GET …/seats (50 seats)" list_seats.lua BENCH_CONCERT="$concert" \
    BENCH_LIST_SCHEDULE="$list_schedule" BENCH_LIST_TOKEN="$list_token"
  # 2 s, so the 100 000 seats outlast the run and every request is a real hold.
  run "POST /api/v1/reservations" hold_seats.lua BENCH_HOLD_SCHEDULE="$hold_schedule" \
    BENCH_HOLD_USER="$hold_user" BENCH_HOLD_TOKEN="$hold_token" BENCH_FIRST_SEAT="$first_seat" \
    RUN_DURATION=2s
  run "POST …/balance/charge" charge.lua BENCH_CHARGE_USER="$charge_user" \
    BENCH_CHARGE_TOKEN="$charge_token"
  # 2 s, so the run pays holds the hold run made (it makes more than this one can pay).
  run "POST /api/v1/payments" pay.lua BENCH_HOLD_SCHEDULE="$hold_schedule" \
    BENCH_HOLD_USER="$hold_user" BENCH_HOLD_TOKEN="$hold_token" RUN_DURATION=2s
  run "GET /health (again)" health.lua

  # The flash sale: FLASH_USERS users (not used above) race for FLASH_SEATS seats of a new
  # schedule, admitted FLASH_RATE a second (twice that may be active at once); holds last
  # 10 s, so seats whose buyer walks away come back during the sale.
  local flash_schedule
  read -r flash_schedule _ <<<"$(new_schedule "$FLASH_SEATS")"
  admin PUT "/api/v1/admin/schedules/$flash_schedule/queue" \
    "{\"maxWaitingUsers\":1000000,\"maxActiveUsers\":$((2 * FLASH_RATE)),\"admissionPerSecond\":$FLASH_RATE,\"holdTtlSeconds\":10}" >/dev/null
  echo "appendfsync $fsync: flash sale"
  FLASHSALE_JSON="$out/$fsync.flash.json" ./target/release/examples/flashsale "$base" \
    "$concert" "$flash_schedule" $((USERS / 2 + 1)) "$FLASH_USERS" "$FLASH_RATE"
  settle >/dev/null
}

FLASH_USERS=${BENCH_FLASH_USERS:-100000}
FLASH_SEATS=${BENCH_FLASH_SEATS:-10000}
FLASH_RATE=${BENCH_FLASH_RATE:-2000}
hold_user=$((USERS - 1))
charge_user=$((USERS - 2))
settle >/dev/null
sleep 2 # the user directory picks up the new users within a second
for fsync in ${BENCH_FSYNC:-everysec always}; do
  measure "$fsync"
done

venv=.dev/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'matplotlib>=3.8,<4'
fi
"$venv/bin/python" bench/report.py "$out" \
  "wrk -t1 -c$CONNECTIONS -d$DURATION (holds and payments 2 s), release build; $(nproc) cores \
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)) shared by wrk, seatrush, Redis \
$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) and MariaDB \
$(mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush -N -e 'SELECT VERSION()')."
