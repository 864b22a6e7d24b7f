#!/usr/bin/env bash
# make bench: a release seatrush against the dev stack (its own database and Redis db). For
# each Redis durability setting (appendfsync everysec, then always), wrk -t1 -c64 against
# each endpoint at full speed and again at half the rate it reached (for latency under a
# known load), with the GET /health ceiling measured first and last (the ratios are to
# their mean, so drift during the run does not tilt them), then the flash sale
# (bench/flashsale/), and with everysec the same sale again with a fair opening (the users
# arrive in the pre-queue of a SHUFFLE_AT_OPEN queue, shuffled when booking opens).
# bench/report.py prints the tables and writes the dated report and chart under
# bench/results/.
#
# The full-speed runs are made in BENCH_ROUNDS rounds (5), each endpoint once a round between
# two /health runs, and the tables give each endpoint's medians over the rounds, its ratio to
# the /health runs beside it included: the machine's speed drifts, and a single run can be
# off by a third.
#
# With everysec, after its rounds (the `ha` run): `make stack-ha`'s replica and Sentinels
# started, and BENCH_ROUNDS rounds of /health, holds, charges and payments, made once by a
# seatrush on the plain Redis URL and once by one that reaches Redis through the Sentinels
# and has a replica confirm every write (`WAIT 1`), on the same Redis, database and replica.
# Then the replica and Sentinels stop again. Then the `history` run: BENCH_ROUNDS rounds of
# /health, token issuance and holds alternating between the main server and one whose Redis
# holds 5 000 finished schedules (background work must follow live work, not history).
# Then the `crowd` run: holds at scale. BENCH_CROWD (500 000) users take ACTIVE tokens on a
# schedule of 100 000 seats (bench/crowd.rs), and each round holds by `seatIds` and by
# `quantity` there, a different user per request, each beside the same run by one user on a
# fresh schedule of its own (the plain holds run), 2 s each, in alternating order (the
# variants, and one user or the crowd first); the crowd's holds expire between runs.
#
# Once, after those: the queue of one schedule filled with 1 000 000 WAITING users (the
# `waiting` run), measured for Redis bytes per waiting user (outbox drained), seatrush's RSS,
# and the status of the user at the back of that queue. Then the `opening` run: as many
# users in the pre-queue of a SHUFFLE_AT_OPEN schedule, and its opening's shuffle timed, with
# the longest Redis command meanwhile (Redis's slow log). Then the `streams` run
# (bench/streams.rs): BENCH_STREAMS users (100 000, or as many as the open-files limit lets
# seatrush and the client hold) join a paused queue and each opens its event stream;
# seatrush's RSS per stream, /health with and without them open, and the delay of the
# `active` events once the queue admits them.
#
# Settings (environment): BENCH_FSYNC (durability settings, "everysec always"), BENCH_RUNS
# (endpoints, "tokens status seats holds charge payments ha history crowd waiting opening
# streams"),
# BENCH_ROUNDS, BENCH_FINISHED (finished schedules in the history run, 5000), BENCH_CROWD
# (ACTIVE users in the crowd run, 500000),
# BENCH_WAITING (users in the waiting run, 1000000), BENCH_REDIS_MAXMEMORY (Redis's memory
# limit during the bench, 8gb), BENCH_FLASH=0 (no flash sale),
# BENCH_DURATION (8s), BENCH_USERS, BENCH_FLASH_USERS/SEATS/RATE, BENCH_OPENING_IN (seconds
# from the fair-opening sale's start to its opening, 20), and BENCH_PROFILE=1: a
# flamegraph of seatrush per full-speed run (perf at 199 Hz, which costs throughput, so such
# a run writes bench/results/flamegraphs/*.svg, and the stacks as *.folded, and no report).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="$PWD/bench"
PORT=${BENCH_PORT:-8089}
DURATION=${BENCH_DURATION:-8s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
USERS=${BENCH_USERS:-1000000}
DB=seatrush_bench
REDIS_DB=3
HISTORY_REDIS_DB=5 # the history run's second server (the tests use 1, 2 and 4)
ALL_RUNS="tokens status seats holds charge payments ha history crowd waiting opening streams"
ROUNDS=${BENCH_ROUNDS:-5}
WAITING=${BENCH_WAITING:-1000000}
STREAMS=${BENCH_STREAMS:-100000}
FINISHED=${BENCH_FINISHED:-5000}
CROWD=${BENCH_CROWD:-500000}
RUNS=${BENCH_RUNS:-$ALL_RUNS}
ALL_FSYNCS="everysec always"
FSYNCS=${BENCH_FSYNC:-$ALL_FSYNCS}
FLASH=${BENCH_FLASH:-1}
OPENING_IN=${BENCH_OPENING_IN:-20}
PROFILE=${BENCH_PROFILE:-}
INFERNO=$PWD/.dev/tools/bin
# shellcheck source=bench/common.sh
. bench/common.sh

ensure_wrk
raise_open_files
cargo build --release --quiet --bin seatrush --example flashsale --example streams --example crowd
if [ -n "$PROFILE" ]; then
  command -v perf >/dev/null || { echo "BENCH_PROFILE needs perf (linux-perf)" >&2; exit 1; }
  [ -x "$INFERNO/inferno-flamegraph" ] ||
    cargo install --quiet --locked --root .dev/tools inferno --no-default-features --features cli
fi

"${SQL[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;"
redis-cli -p 6390 -n "$REDIS_DB" FLUSHDB >/dev/null
# The runs leave their schedules' queues behind (every token run issues a few hundred
# thousand tokens on a schedule of its own; the crowd, waiting and opening runs add 2.5
# million more): together past the dev stack's 2 GB, whose `OOM` would fail the later runs.
# Redis gets BENCH_REDIS_MAXMEMORY (8gb) for the bench and its own limit back afterwards.
stack_maxmemory=$(redis-cli -p 6390 CONFIG GET maxmemory | sed -n 2p)
# compact_aof: rewrites Redis's AOF now (and before each round), so Redis does not fork to
# rewrite it in the middle of a run: a fork of a Redis holding a gigabyte, and its child
# writing it out, take CPU the runs are measured with. A run it happens in anyway is marked.
compact_aof() {
  redis-cli -p 6390 BGREWRITEAOF >/dev/null
  while redis-cli -p 6390 INFO persistence | grep -q '^aof_rewrite_in_progress:1'; do sleep 0.2; done
}
forks() { redis-cli -p 6390 INFO stats | awk -F: '/^total_forks:/ {print $2 + 0}'; }
compact_aof

export SEATRUSH_HTTP_ADDR=127.0.0.1:$PORT
export SEATRUSH_REDIS_URL=redis://127.0.0.1:6390/$REDIS_DB
export SEATRUSH_MYSQL_PRIMARY_URL=mysql://seatrush:seatrush@127.0.0.1:3316/$DB
export SEATRUSH_MYSQL_REPLICA_URL=mysql://seatrush:seatrush@127.0.0.1:3317/$DB
export SEATRUSH_LOG=warn

./target/release/seatrush &
server=$!
ha_server="" # the server of an `ha` run's variant, while it runs
history_server="" # the second server of the `history` run, while it runs
out=$(mktemp -d)
# Whatever happens, the server stops and the dev Redis goes back to fsyncing every second
# and to its own memory limit, once the runs' data is gone (a whole bench leaves gigabytes,
# past that limit: the dev stack would refuse every write with `OOM`). The raw results of
# a run that failed are kept.
trap 'exit_status=$?; kill $server $ha_server $history_server 2>/dev/null; kill -CONT $server 2>/dev/null
  wait $server 2>/dev/null || true
  redis-cli -p 6390 CONFIG SET appendfsync everysec >/dev/null
  redis-cli -p 6390 -n "$REDIS_DB" FLUSHDB >/dev/null
  redis-cli -p 6390 -n "$HISTORY_REDIS_DB" FLUSHDB >/dev/null
  redis-cli -p 6390 CONFIG SET maxmemory "$stack_maxmemory" >/dev/null
  if [ "$exit_status" = 0 ]; then rm -rf "$out"; else echo "bench: raw results kept in $out" >&2; fi' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
redis-cli -p 6390 CONFIG SET maxmemory "${BENCH_REDIS_MAXMEMORY:-8gb}" >/dev/null
base=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

add_users "$DB" "$USERS"
add_concert
# Token issuance takes a new user per request, each with their own identity (its runs are
# on schedules of their own, so they may use any user).
identities "$out/identities" "$USERS"
export BENCH_AUTH_FILE=$out/identities

# cpu_ticks: a reading of the clock and of the CPU time (clock ticks) used so far by
# seatrush, Redis, the MariaDB primary and replica, and the whole machine (busy, all cores).
cpu_ticks() {
  local pids=("$server" "$(cat .dev/redis/redis.pid)" "$(cat .dev/primary.pid)" "$(cat .dev/replica.pid)")
  echo "$(date +%s%N) $(for p in "${pids[@]}"; do awk '{printf "%d ", $14 + $15}' "/proc/$p/stat"; done)" \
    "$(awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)"
}
# cpu_shares <cpu_ticks reading>: each one's share of one core since then, in %.
cpu_shares() {
  echo "$1 $(cpu_ticks)" | awk -v hz="$(getconf CLK_TCK)" '{
    s = ($7 - $1) / 1e9 * hz / 100
    other = ($12 - $6) - ($8 - $2) - ($9 - $3) - ($10 - $4) - ($11 - $5)
    printf "CPU seatrush=%.0f redis=%.0f mysql=%.0f replica=%.0f other=%.0f\n",
      ($8 - $2) / s, ($9 - $3) / s, ($10 - $4) / s, ($11 - $5) / s, other / s }'
}

# measure <appendfsync setting>: every wrk run and the flash sale, on schedules of its own.
measure() {
  local fsync=$1
  redis-cli -p 6390 CONFIG SET appendfsync "$fsync" >/dev/null
  local schedule="" list_schedule list_token charge_token holds_full=() holds_half
  # Token issuance: a new user per request, on a schedule of each round's that admits 1 000
  # at a time.
  token_schedule() {
    read -r schedule _ <<<"$(new_schedule 10000)"
    admin PUT "/api/v1/admin/schedules/$schedule/queue" '{"maxWaitingUsers":2000000,"maxActiveUsers":1000}' >/dev/null
  }
  # token_schedule_done: once measured, the token schedule's queue is paused. Its few hundred
  # thousand WAITING users would otherwise be admitted (and expire) for the rest of the
  # bench, about 25 queues' admission work beside every later run.
  token_schedule_done() {
    [ -z "$schedule" ] || admin PUT "/api/v1/admin/schedules/$schedule/queue" '{"paused":true}' >/dev/null
  }
  # Seat listing: a 50-seat schedule (a concert hall's section), read with an ACTIVE token.
  read -r list_schedule _ <<<"$(new_schedule 50)"
  # One user makes every request of a run here: the per-user rate is counted but lifted, and
  # the token lasts a day, through all the rounds.
  admin PUT "/api/v1/admin/schedules/$list_schedule/queue" '{"userRequestsPerSecond":1000000000,"activeTtlSeconds":86400}' >/dev/null
  list_token=$(token "$USERS" "$list_schedule")
  # A venue's 10 000 seats: the listing's and the seat map's bytes on the wire, plain and
  # gzip (once, into $out/listing), and the listing's 304 path (If-None-Match with the
  # current tag: nothing changes the schedule meanwhile).
  local big_schedule big_token big_tag
  read -r big_schedule _ <<<"$(new_schedule 10000)"
  admin PUT "/api/v1/admin/schedules/$big_schedule/queue" '{"userRequestsPerSecond":1000000000,"activeTtlSeconds":86400}' >/dev/null
  big_token=$(token "$USERS" "$big_schedule")
  big_listing() { # <query> [curl options]: the listing of the 10 000 seats
    curl -sf "$base/api/v1/concerts/$concert/schedules/$big_schedule/seats$1" \
      -H "Authorization: Bearer $(sign "$USERS")" -H "Queue-Token: $big_token" "${@:2}"
  }
  big_tag=$(big_listing "" -o /dev/null -D - | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}')
  if [ "$fsync" = everysec ]; then
    {
      echo "listing_plain $(big_listing "" -o /dev/null -w '%{size_download}')"
      echo "listing_gzip $(big_listing "" -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}')"
      echo "map_plain $(big_listing "?view=map" -o /dev/null -w '%{size_download}')"
      echo "map_gzip $(big_listing "?view=map" -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}')"
      echo "not_modified_status $(big_listing "" -H "If-None-Match: $big_tag" -o /dev/null -w '%{http_code}' || true)"
    } >"$out/listing"
  fi
  # Holds: a schedule of 100 000 seats at 1 KRW for each round's full-speed run and one for
  # the half-rate run; one user holds a new seat per request (seat limit lifted, holds and
  # tokens kept for an hour). The payment runs then pay those holds in order, from a balance
  # of 10 000 000.
  hold_schedule() { # prints the wrk settings of a new hold schedule
    local schedule first_seat token
    read -r schedule first_seat <<<"$(new_schedule 100000 1)"
    admin PUT "/api/v1/admin/schedules/$schedule/queue" \
      '{"maxSeatsPerUser":1000000,"holdTtlSeconds":3600,"activeTtlSeconds":3600,"userRequestsPerSecond":1000000000}' >/dev/null
    token=$(token "$hold_user" "$schedule")
    echo "BENCH_HOLD_SCHEDULE=$schedule BENCH_FIRST_SEAT=$first_seat BENCH_HOLD_TOKEN=$token BENCH_HOLD_USER=$hold_user"
  }
  read -ra holds_half <<<"$(hold_schedule)"
  curl -sf -XPOST "$base/api/v1/users/$hold_user/balance/charge" \
    -H "Authorization: Bearer $(sign "$hold_user")" \
    -H "Queue-Token: ${holds_half[2]#BENCH_HOLD_TOKEN=}" -d '{"amount":10000000}' >/dev/null
  # Charges: 1 KRW per request for one user, with a token of the listing schedule.
  charge_token=$(token "$charge_user" "$list_schedule")
  settle >/dev/null

  # run <key> <name> <script> [env...]: one wrk run, unless BENCH_RUNS leaves <key> out (the
  # /health runs are always made). RUN_DURATION=… in the env list shortens it. Records the
  # RESULT line, the CPU each process used during it, how long the write-behind took to
  # settle after it (and whether Redis forked during it), and with BENCH_PROFILE a flamegraph
  # of seatrush.
  run() {
    local key=$1 name=$2 script=$3; shift 3
    # An `ha-…` run is made when BENCH_RUNS names `ha`, whatever else it names.
    if [[ $key == ha-* ]]; then
      [[ " $RUNS " == *" ha "* ]] || return 0
      key=health
    fi
    if [[ $key == history-* || $key == crowd-* ]]; then
      [[ " $RUNS " == *" ${key%%-*} "* ]] || return 0
      key=health
    fi
    [[ $key == health || " $RUNS " == *" $key "* ]] || return 0
    local line duration=$DURATION before forks_before note="" perf=""
    for kv in "$@"; do [[ $kv == RUN_DURATION=* ]] && duration=${kv#RUN_DURATION=}; done
    if [ -n "$PROFILE" ] && [[ $name != *"half rate"* ]]; then
      perf record -q -F 199 --call-graph dwarf,32768 -p "$server" -o "$out/perf.data" \
        -- sleep "${duration%s}" 2>/dev/null &
      perf=$!
    fi
    before=$(cpu_ticks)
    forks_before=$(forks)
    line=$(env "$@" BENCH_SCHEDULE="$schedule" wrk -t1 -c"$CONNECTIONS" -d"$duration" \
      -s "bench/$script" "$base" | grep '^RESULT')
    echo "$name $(cpu_shares "$before")" >>"$out/$fsync.cpu"
    echo "$name $line" >>"$out/$fsync.wrk"
    if [ -n "$perf" ]; then
      wait "$perf" || true
      # Named after the run: "GET /health (again)" -> everysec-get-health-again.
      local graph
      graph=bench/results/flamegraphs/$fsync-$(echo "$name" | tr -cs 'a-zA-Z0-9' - \
        | tr 'A-Z' 'a-z' | sed 's/^-//; s/-$//')
      mkdir -p bench/results/flamegraphs
      perf script -i "$out/perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" \
        >"$graph.folded"
      "$INFERNO/inferno-flamegraph" --title "seatrush: $name (appendfsync $fsync)" \
        <"$graph.folded" >"$graph.svg"
    fi
    [ "$(forks)" = "$forks_before" ] || note=" (Redis forked during it: an AOF rewrite)"
    echo "$name: write-behind drained and settled $(settle) s after the run$note" >>"$out/$fsync.drains"
  }
  # requests <name>: how many requests that run made last (the half-rate token run takes new
  # users after them, with a margin for requests in flight when wrk stopped).
  requests() { grep -F "$1 RESULT" "$out/$fsync.wrk" | tail -1 | sed 's/.*requests=\([0-9]*\).*/\1/'; }
  # half_rate <key> <name> <script> [env...]: the run again, at half the median rate its
  # rounds reached (requests leave on a fixed schedule: see bench/report.lua), for latency
  # at that load.
  half_rate() {
    local key=$1 name=$2 script=$3; shift 3
    [[ " $RUNS " == *" $key "* ]] || return 0
    local rate
    rate=$(grep -F "$name RESULT" "$out/$fsync.wrk" | python3 -c '
import statistics, sys
rates = []
for line in sys.stdin:
    f = dict(kv.split("=") for kv in line.split()[-6:])
    rates.append(int(f["requests"]) / float(f["seconds"]))
print(round(statistics.median(rates) / 2))')
    run "$key" "$name @ half rate" "$script" BENCH_RATE="$rate" "$@"
  }
  local list_auth hold_auth charge_auth
  list_auth="Bearer $(sign "$USERS")"
  hold_auth="Bearer $(sign "$hold_user")"
  charge_auth="Bearer $(sign "$charge_user")"
  local status=(BENCH_STATUS_TOKEN="$list_token" BENCH_AUTH="$list_auth")
  local seats=(BENCH_CONCERT="$concert" BENCH_LIST_SCHEDULE="$list_schedule"
    BENCH_LIST_TOKEN="$list_token" BENCH_AUTH="$list_auth")
  local unchanged=(BENCH_CONCERT="$concert" BENCH_LIST_SCHEDULE="$big_schedule"
    BENCH_LIST_TOKEN="$big_token" BENCH_AUTH="$list_auth" BENCH_IF_NONE_MATCH="$big_tag")
  local charges=(BENCH_CHARGE_USER="$charge_user" BENCH_CHARGE_TOKEN="$charge_token"
    BENCH_AUTH="$charge_auth")
  # ha_rounds: the `ha` run (above), into $out/ha.*. The main server pauses meanwhile
  # (SIGSTOP, once the write-behind has settled), and each variant gets a server of its own,
  # started for its runs and stopped after (SIGTERM: it flushes its outbox first), so every
  # run has one seatrush, the one measured, and no idle instance's flusher runs beside it.
  ha_rounds() {
    [[ " $RUNS " == *" ha "* ]] || return 0
    local fsync=ha round variant
    scripts/stack.sh ha-up
    settle >/dev/null
    kill -STOP "$server"
    for round in $(seq "$ROUNDS"); do
      echo "replica attached: round $round of $ROUNDS"
      compact_aof
      for variant in plain confirmed; do ha_variant "$variant"; done
    done
    kill -CONT "$server"
    scripts/stack.sh ha-down
  }
  # ha_variant <plain|confirmed>: /health, holds, charges and payments on a server of their
  # own, on the plain Redis URL or through the Sentinels with a replica confirming writes.
  ha_variant() {
    local url=redis://127.0.0.1:6390/$REDIS_DB suffix="" holds
    if [ "$1" = confirmed ]; then
      url="redis+sentinel://127.0.0.1:26390,127.0.0.1:26391,127.0.0.1:26392/seatrush?db=$REDIS_DB"
      suffix=", a replica confirms (WAIT 1)"
    fi
    # (run, settle and the setup below see this server as `base` and `server`)
    local base=http://127.0.0.1:$((PORT + 1)) server
    SEATRUSH_HTTP_ADDR=127.0.0.1:$((PORT + 1)) SEATRUSH_REDIS_URL=$url ./target/release/seatrush &
    server=$!
    ha_server=$server
    for _ in $(seq 100); do curl -sf "$base/ready" >/dev/null && break; sleep 0.1; done
    read -ra holds <<<"$(hold_schedule)"
    run health "GET /health" health.lua
    run ha-holds "POST /api/v1/reservations$suffix" hold_seats.lua "${holds[@]}" \
      RUN_DURATION=1s BENCH_AUTH="$hold_auth"
    run ha-charge "POST …/balance/charge$suffix" charge.lua "${charges[@]}"
    run ha-payments "POST /api/v1/payments$suffix" pay.lua "${holds[@]}" RUN_DURATION=1s \
      BENCH_AUTH="$hold_auth"
    kill "$server"
    wait "$server" || true
    ha_server=""
  }

  # history_rounds: the `history` run (above), into $out/history.*. A second server has a
  # Redis and a database of its own, holding $FINISHED (5 000) finished schedules (booking opened and
  # closed days ago, made through its admin API); each round runs /health, token issuance
  # and holds on the main server and then on that one, each pausing (SIGSTOP) while the
  # other runs.
  history_rounds() {
    [[ " $RUNS " == *" history "* ]] || return 0
    local fsync=history round variant db=${DB}_history history_redis=$HISTORY_REDIS_DB
    local history_base=http://127.0.0.1:$((PORT + 2)) history_concert history_venue
    "${SQL[@]}" -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;"
    redis-cli -p 6390 -n "$history_redis" FLUSHDB >/dev/null
    SEATRUSH_HTTP_ADDR=127.0.0.1:$((PORT + 2)) SEATRUSH_REDIS_URL=redis://127.0.0.1:6390/$history_redis \
      SEATRUSH_MYSQL_PRIMARY_URL=mysql://seatrush:seatrush@127.0.0.1:3316/$db \
      SEATRUSH_MYSQL_REPLICA_URL=mysql://seatrush:seatrush@127.0.0.1:3317/$db \
      ./target/release/seatrush &
    history_server=$!
    for _ in $(seq 100); do curl -sf "$history_base/ready" >/dev/null && break; sleep 0.1; done
    add_users "$db" "$USERS"
    (
      local base=$history_base
      add_concert
      echo "$venue $concert" >"$out/history.concert"
      local opened closed
      opened=$(date -u -d '-3 days' +%Y-%m-%dT%H:%M:%S.000Z)
      closed=$(date -u -d '-2 days' +%Y-%m-%dT%H:%M:%S.000Z)
      seq "$FINISHED" | xargs -P 8 -I{} curl -sf -o /dev/null -X POST -H 'X-Admin-Key: dev-admin-key' \
        -H 'Content-Type: application/json' "$base/api/v1/admin/concerts/$concert/schedules" \
        -d "{\"venueId\":$venue,\"performanceDate\":\"2026-12-25\",\"performanceTime\":\"19:00:00\",\"bookingOpenAt\":\"$opened\",\"bookingCloseAt\":\"$closed\",\"seatCount\":10,\"price\":50000}"
      settle >/dev/null
    )
    read -r history_venue history_concert <"$out/history.concert"
    # Past their close with nothing live, they are set aside and then retired from the
    # registries at once; their seats and settings stay in Redis.
    echo "history: $FINISHED finished schedules, $(redis-cli -p 6390 -n "$history_redis" DBSIZE) keys in the second server's Redis, $(redis-cli -p 6390 -n "$history_redis" SCARD seatrush:live) of them live"
    for round in $(seq "$ROUNDS"); do
      echo "history: round $round of $ROUNDS"
      compact_aof
      kill -STOP "$history_server"
      history_variant "" ""
      kill -CONT "$history_server"
      kill -STOP "$server"
      history_variant ", $FINISHED finished schedules" "$history_server"
      kill -CONT "$server"
    done
    kill "$history_server"
    wait "$history_server" || true
    history_server=""
  }
  # history_variant <name suffix> [server]: /health, token issuance and holds on the main
  # server, or on the one named, with its own concert.
  history_variant() {
    local suffix=$1 holds base=$base server=$server concert=$concert venue=$venue
    if [ -n "$2" ]; then
      base=$history_base server=$2 concert=$history_concert venue=$history_venue
    fi
    token_schedule
    read -ra holds <<<"$(hold_schedule)"
    settle >/dev/null
    run health "GET /health" health.lua
    run history-tokens "POST /api/v1/queue/tokens$suffix" issue_token.lua BENCH_FIRST_USER=1
    token_schedule_done
    run history-holds "POST /api/v1/reservations$suffix" hold_seats.lua "${holds[@]}" \
      RUN_DURATION=1s BENCH_AUTH="$hold_auth"
  }

  # crowd_rounds: the `crowd` run (above), into $out/crowd.*. The crowd's schedule holds for
  # 3 s, longer than a run, so no hold expires during one, and every seat comes back before
  # the next (waited for, and the write-behind settled); the one-user runs each take a fresh
  # schedule of their own.
  crowd_rounds() {
    [[ " $RUNS " == *" crowd "* ]] || return 0
    local fsync=crowd round variant schedule seat file=$out/crowd.users single
    read -r schedule seat <<<"$(new_schedule 100000 1)"
    admin PUT "/api/v1/admin/schedules/$schedule/queue" \
      "{\"maxActiveUsers\":$CROWD,\"admissionPerSecond\":$CROWD,\"activeTtlSeconds\":86400,\"holdTtlSeconds\":3,\"userRequestsPerSecond\":1000000000}" >/dev/null
    ./target/release/examples/crowd "$base" "$schedule" 1 "$CROWD" "$file"
    echo "crowd: write-behind settled $(settle) s after the tokens"
    local crowd=(BENCH_HOLD_SCHEDULE="$schedule" BENCH_FIRST_SEAT="$seat" BENCH_CROWD_FILE="$file")
    local variants=(seatIds quantity) who=(one crowd)
    for round in $(seq "$ROUNDS"); do
      echo "crowd: round $round of $ROUNDS"
      compact_aof
      run health "GET /health" health.lua
      for variant in "${variants[@]}"; do
        local quantity=()
        [ "$variant" = quantity ] && quantity=(BENCH_QUANTITY=1)
        read -ra single <<<"$(hold_schedule)"
        settle >/dev/null
        for w in "${who[@]}"; do
          if [ "$w" = one ]; then
            run crowd-holds "POST /api/v1/reservations ($variant, one user)" hold_seats.lua \
              "${single[@]}" "${quantity[@]}" RUN_DURATION=2s BENCH_AUTH="$hold_auth"
          else
            run crowd-holds "POST /api/v1/reservations ($variant, $CROWD ACTIVE users)" \
              hold_seats.lua "${crowd[@]}" "${quantity[@]}" RUN_DURATION=2s
            released "$schedule"
          fi
        done
      done
      # The next round makes the runs in the other order.
      variants=("${variants[1]}" "${variants[0]}") who=("${who[1]}" "${who[0]}")
    done
    run health "GET /health (again)" health.lua
  }
  # released <schedule>: waits until none of its seats is held (up to a minute) and the
  # write-behind has settled.
  released() {
    local held
    for _ in $(seq 600); do
      held=$(redis-cli -p 6390 -n "$REDIS_DB" HGET "{s:$1}:stats" heldSeats)
      [ "${held:-0}" -le 0 ] && break
      sleep 0.1
    done
    [ "${held:-0}" -le 0 ] || echo "crowd: $held seats of schedule $1 still held after a minute"
    settle >/dev/null
  }

  local round
  for round in $(seq "$ROUNDS"); do
    echo "appendfsync $fsync: round $round of $ROUNDS"
    compact_aof
    [[ " $RUNS " == *" tokens "* ]] && token_schedule
    [[ " $RUNS " == *" holds "* || " $RUNS " == *" payments "* ]] && read -ra holds_full <<<"$(hold_schedule)"
    run health "GET /health" health.lua
    run tokens "POST /api/v1/queue/tokens" issue_token.lua BENCH_FIRST_USER=1
    token_schedule_done
    run status "GET /api/v1/queue/tokens/me" queue_status.lua "${status[@]}"
    run seats "GET …/seats (50 seats)" list_seats.lua "${seats[@]}"
    run seats "GET …/seats (10 000 seats, unchanged: 304)" list_seats.lua "${unchanged[@]}"
    # 1 s, so the 100 000 seats outlast the run (up to 100 000 holds/s) and every request is
    # a real hold.
    run holds "POST /api/v1/reservations" hold_seats.lua "${holds_full[@]}" RUN_DURATION=1s \
      BENCH_AUTH="$hold_auth"
    run charge "POST …/balance/charge" charge.lua "${charges[@]}"
    # 1 s, so the run pays holds the hold run made (payments are slower than holds).
    run payments "POST /api/v1/payments" pay.lua "${holds_full[@]}" RUN_DURATION=1s \
      BENCH_AUTH="$hold_auth"
  done
  run health "GET /health (again)" health.lua

  # At half the rate: the token run on the last round's schedule (paused: issuance is the
  # same), with users after its own.
  half_rate tokens "POST /api/v1/queue/tokens" issue_token.lua \
    BENCH_FIRST_USER=$(($(requests "POST /api/v1/queue/tokens") + 4 * CONNECTIONS))
  half_rate status "GET /api/v1/queue/tokens/me" queue_status.lua "${status[@]}"
  half_rate seats "GET …/seats (50 seats)" list_seats.lua "${seats[@]}"
  # 2 s each: at half the rate the seats and holds outlast them.
  half_rate holds "POST /api/v1/reservations" hold_seats.lua "${holds_half[@]}" RUN_DURATION=2s \
    BENCH_AUTH="$hold_auth"
  half_rate charge "POST …/balance/charge" charge.lua "${charges[@]}"
  half_rate payments "POST /api/v1/payments" pay.lua "${holds_half[@]}" RUN_DURATION=2s \
    BENCH_AUTH="$hold_auth"

  [ "$fsync" = everysec ] && ha_rounds
  [ "$fsync" = everysec ] && history_rounds
  [ "$fsync" = everysec ] && crowd_rounds

  [ "$FLASH" = 1 ] || return 0
  # The flash sale: FLASH_USERS users (not used above) race for the seats.
  local flash_schedule
  flash_schedule=$(flash_schedule)
  echo "appendfsync $fsync: flash sale"
  FLASHSALE_JSON="$out/$fsync.flash.json" ./target/release/examples/flashsale "$base" \
    "$concert" "$flash_schedule" $((USERS / 2 + 1)) "$FLASH_USERS" "$FLASH_RATE"
  settle >/dev/null
  [ "$fsync" = everysec ] || return 0
  # The same sale with a fair opening: the users (others again) arrive in the pre-queue of a
  # queue whose booking opens OPENING_IN seconds later, and are shuffled at the opening.
  flash_schedule=$(flash_schedule "$OPENING_IN")
  echo "appendfsync $fsync: flash sale with a fair opening (booking opens in $OPENING_IN s)"
  FLASHSALE_JSON="$out/$fsync.fair.json" ./target/release/examples/flashsale "$base" \
    "$concert" "$flash_schedule" $((USERS / 2 + 1 + FLASH_USERS)) "$FLASH_USERS" "$FLASH_RATE"
  settle >/dev/null
}

# streams: STREAMS users (fewer when the open-files limit, the same for seatrush and the
# client, cannot hold them) join a paused queue admitting 2 000 a second and each opens its
# event stream; writes what bench/streams.rs measured to $out/streams.json.
streams() {
  [[ " $RUNS " == *" streams "* ]] || return 0
  local schedule n=$STREAMS room=$(($(ulimit -n) - 3072))
  [ "$room" -lt "$n" ] && n=$room
  echo "streams: $n users open the queue's event stream"
  read -r schedule _ <<<"$(new_schedule 100)"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" \
    "{\"maxWaitingUsers\":$n,\"maxActiveUsers\":$n,\"admissionPerSecond\":2000,\"paused\":true}" >/dev/null
  STREAMS_JSON="$out/streams.json" ./target/release/examples/streams "$base" "$schedule" 1 "$n" "$server"
  settle >/dev/null
}

# waiting: one paused schedule's queue filled with WAITING users (users 1..WAITING, the last
# one on its own, so its token is at hand), the outbox drained; writes what it measured to
# $out/waiting.
waiting() {
  [[ " $RUNS " == *" waiting "* ]] || return 0
  echo "waiting: $WAITING users join one queue"
  redis-cli -p 6390 CONFIG SET appendfsync everysec >/dev/null
  local schedule rss_before memory_before token
  read -r schedule _ <<<"$(new_schedule 100)"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" \
    "{\"maxWaitingUsers\":$((2 * WAITING)),\"paused\":true}" >/dev/null
  settle >/dev/null
  rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$server/status"; }
  used_memory() { redis-cli -p 6390 INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
  rss_before=$(rss)
  memory_before=$(used_memory)
  local started=$SECONDS wrk_pid
  # wrk runs out its duration even after the script stops its thread, so it is interrupted
  # (and then reports) once the queue holds every user it sent.
  env BENCH_SCHEDULE="$schedule" BENCH_FIRST_USER=1 BENCH_LAST_USER=$((WAITING - 1)) \
    wrk -t1 -c"$CONNECTIONS" -d600s -s bench/issue_token.lua "$base" >"$out/waiting.wrk" &
  wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null &&
    [ "$(redis-cli -p 6390 -n "$REDIS_DB" ZCARD "{s:$schedule}:waiting")" -lt $((WAITING - 1)) ]; do
    sleep 0.5
  done
  echo "issued_s $((SECONDS - started))" >"$out/waiting"
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  grep '^RESULT' "$out/waiting.wrk" | sed 's/^/issuance /' >>"$out/waiting"
  token=$(token "$WAITING" "$schedule")
  echo "waiting: drained to MySQL after $(settle) s"
  # The request-rate hashes of the last two seconds go at the next admission ticks.
  sleep 3
  local keys=(waiting tokens users outbox active ended rate:0 rate:1)
  {
    echo "schedule $schedule"
    echo "waiting_users $(redis-cli -p 6390 -n "$REDIS_DB" ZCARD "{s:$schedule}:waiting")"
    echo "used_memory_before $memory_before"
    echo "used_memory_after $(used_memory)"
    for key in "${keys[@]}"; do
      echo "key_$key $(redis-cli -p 6390 -n "$REDIS_DB" MEMORY USAGE "{s:$schedule}:$key" SAMPLES 0)"
    done
    echo "rss_before $rss_before"
    echo "rss_after $(rss)"
    echo "back_position $(curl -sf "$base/api/v1/queue/tokens/me" -H "Authorization: Bearer $(sign "$WAITING")" \
      -H "Queue-Token: $token" | json queuePosition)"
  } >>"$out/waiting"
  # The status of the user at the back, again and again.
  env BENCH_STATUS_TOKEN="$token" BENCH_AUTH="Bearer $(sign "$WAITING")" \
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/queue_status.lua "$base" | grep '^RESULT' \
    | sed 's/^/back_status /' >>"$out/waiting"
}

# opening: WAITING users (1 000 000) join the pre-queue of a SHUFFLE_AT_OPEN schedule whose
# booking opens once they all can have (a second per 10 000 users, and 30 s more), and the
# opening's shuffle is measured (bench/crowd.rs, bench/flashsale/opening.rs): how long after
# the opening it was done, and the longest Redis command meanwhile. Writes $out/opening.json.
opening() {
  [[ " $RUNS " == *" opening "* ]] || return 0
  local schedule opens_s=$(($(date +%s) + WAITING / 10000 + 30))
  echo "opening: $WAITING users join a pre-queue; booking opens in $((opens_s - $(date +%s))) s"
  redis-cli -p 6390 CONFIG SET appendfsync everysec >/dev/null
  read -r schedule _ <<<"$(new_schedule 100 50000 "$(date -u -d "@$opens_s" +%Y-%m-%dT%H:%M:%S.000Z)")"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" \
    "{\"maxWaitingUsers\":$((2 * WAITING)),\"queueOrder\":\"SHUFFLE_AT_OPEN\",\"paused\":true}" >/dev/null
  ./target/release/examples/crowd "$base" "$schedule" 1 "$WAITING" /dev/null $((opens_s * 1000)) \
    | tee "$out/opening.log"
  grep '^opening ' "$out/opening.log" | cut -d' ' -f2- >"$out/opening.json"
  echo "opening: drained to MySQL after $(settle) s"
}

hold_user=$((USERS - 1))
charge_user=$((USERS - 2))
settle >/dev/null
sleep 2 # the user directory picks up the new users within a second
for fsync in $FSYNCS; do
  measure "$fsync"
done
waiting
opening
streams

if [ -n "$PROFILE" ]; then
  echo "flamegraphs: $(ls bench/results/flamegraphs/*.svg | xargs)"
  exit 0
fi
venv=.dev/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'matplotlib>=3.8,<4'
fi
# A run of some endpoints or settings only prints its tables; a whole one writes the report.
partial=""
[ "$RUNS" = "$ALL_RUNS" ] && [ "$FSYNCS" = "$ALL_FSYNCS" ] && [ "$FLASH" = 1 ] || partial=--partial
"$venv/bin/python" bench/report.py $partial "$out" \
  "wrk -t1 -c$CONNECTIONS -d$DURATION (full-speed holds and payments 1 s), release build; $(nproc) cores \
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)) shared by wrk, seatrush, Redis \
$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) and MariaDB \
$(mariadb --no-defaults -h127.0.0.1 -P3316 -useatrush -pseatrush -N -e 'SELECT VERSION()')."
