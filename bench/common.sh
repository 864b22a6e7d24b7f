# Sourced by bench/run.sh and bench/scale.sh: wrk, a benchmark database with users in bulk,
# and the admin calls that set up schedules on the seatrush (or nginx) at $base.

SQL=(mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush)

log() { printf 'bench: %s\n' "$*"; }
LOGS="the output above"
# shellcheck source=scripts/processes.sh
. scripts/processes.sh

ensure_wrk() { command -v wrk >/dev/null || apt_install wrk; }

# The flash sale's waiting users each hold an event stream open: seatrush and the load client
# need an open-files limit above the number of users (raised as far as the system lets us).
raise_open_files() { ulimit -n 524288 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }

# Users 1..<n> with empty balances (MariaDB's sequence engine), in the database seatrush
# migrated; its user directory picks them up within a second.
add_users() { # <database> <n>
  "${SQL[@]}" "$1" -e "INSERT INTO users (name) SELECT CONCAT('bench-', seq) FROM seq_1_to_$2;
    INSERT INTO user_balances (user_id) SELECT id FROM users;"
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

admin() { curl -sf -X "$1" -H 'X-Admin-Key: dev-admin-key' -H 'Content-Type: application/json' "$base$2" ${3:+-d "$3"}; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['data']['$1'])"; }

# A venue and a concert for new_schedule, whose schedules are open from now for a day.
add_concert() {
  venue=$(admin POST /api/v1/admin/venues '{"name":"Bench Arena"}' | json venueId)
  concert=$(admin POST /api/v1/admin/concerts '{"title":"Bench Live"}' | json concertId)
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z); close=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)
}
new_schedule() { # <seatCount> [price] [bookingOpenAt]: prints "scheduleId firstSeatId"
  admin POST "/api/v1/admin/concerts/$concert/schedules" \
    "{\"venueId\":$venue,\"performanceDate\":\"2026-12-25\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"${3:-$now}\",\"bookingCloseAt\":\"$close\",\"seatCount\":$1,\"price\":${2:-50000}}" \
    | python3 -c "import json,sys; d=json.load(sys.stdin)['data']; print(d['scheduleId'], d['seatIds'][0])"
}
# sign <userId>: the user's identity (a day's), as the ticketing site's login would give it.
sign() { ./target/release/seatrush sign-user-token "$1" --ttl-seconds 86400; }
# identities <file> <n>: the identities of users 1..n, line k user k's (for issue_token.lua).
identities() { ./target/release/seatrush sign-user-token 1 --count "$2" --ttl-seconds 86400 >"$1"; }
token() { # <userId> <scheduleId>
  curl -sf -XPOST "$base/api/v1/queue/tokens" -H "Authorization: Bearer $(sign "$1")" \
    -d "{\"userId\":$1,\"scheduleId\":$2}" | json token
}

# The flash sale's schedule: FLASH_SEATS seats, admitted FLASH_RATE a second (twice that may
# be active at once); holds last 3 s, so seats whose buyer walks away come back within the
# sale. Prints its id. With an argument: booking opens that many seconds from now, and the
# queue is shuffled at the opening (a fair opening: everyone who arrives before it is in the
# pre-queue).
flash_schedule() { # [seconds until the opening]
  local schedule order="" opens=$now
  if [ -n "${1:-}" ]; then
    opens=$(date -u -d "+$1 seconds" +%Y-%m-%dT%H:%M:%S.000Z)
    order=',"queueOrder":"SHUFFLE_AT_OPEN"'
  fi
  read -r schedule _ <<<"$(new_schedule "$FLASH_SEATS" 50000 "$opens")"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" \
    "{\"maxWaitingUsers\":1000000,\"maxActiveUsers\":$((2 * FLASH_RATE)),\"admissionPerSecond\":$FLASH_RATE,\"holdTtlSeconds\":3$order}" >/dev/null
  echo "$schedule"
}
FLASH_USERS=${BENCH_FLASH_USERS:-100000}
FLASH_SEATS=${BENCH_FLASH_SEATS:-10000}
FLASH_RATE=${BENCH_FLASH_RATE:-2000}
