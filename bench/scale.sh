#!/usr/bin/env bash
# make bench-scale: release seatrush instances on the dev Redis Cluster behind nginx
# (scripts/scale.sh), all through nginx on 127.0.0.1:8080, in one run:
#   1. GET /health straight to one instance (no nginx), for nginx's own cost;
#   2. GET /health and token issuance with one instance behind nginx, then with three, then
#      with one again (each ratio is three's figure to the mean of the two with one, so
#      drift during the run does not tilt it), the write-behind settled before each run;
#   3. the flash sale (bench/flashsale/) on three instances, with buying in full swing:
#      instance 2 killed with kill -9 once a quarter of the seats are sold and started again,
#      instance 3 killed once half are sold (two chances to cut requests off mid-flight): it
#      must still sell out with no seat sold twice, the queue's limits held across the
#      instances, each charge in the ledger once, and MySQL equal to Redis after the drain;
#   4. how the keys spread over the cluster's masters (scripts/cluster-keys.sh).
# wrk -t1 -c64 for BENCH_DURATION (8s) per run. Settings: BENCH_USERS, BENCH_FLASH_USERS/
# SEATS/RATE (as bench/run.sh: the whole sale, 100 000 users for 10 000 seats), BENCH_FLASH=0
# (steps 1, 2 and 4). The run fails if nginx ran out of connections (it then answers 500
# itself): its event streams are capped (deploy/nginx.conf) so that cannot happen.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="$PWD/bench"
DURATION=${BENCH_DURATION:-8s}
USERS=${BENCH_USERS:-1000000}
FLASH=${BENCH_FLASH:-1}
DB=seatrush_bench_scale
CLUSTER_PORTS=(6391 6392 6393)
# shellcheck source=bench/common.sh
. bench/common.sh

ensure_wrk
raise_open_files
cargo build --release --quiet --bin seatrush --example flashsale

# A clean start: no set left running (it may serve another database), an empty database and
# an empty cluster (the cluster is the application's dev cluster; `make test-cluster`
# empties it again before it runs).
scripts/scale.sh down >/dev/null
"${SQL[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;"
for port in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$port" FLUSHALL >/dev/null; done
export SCALE_DB=$DB SCALE_DEMO=0 SEATRUSH_LOG=warn
out=$(mktemp -d)
killer=""
trap '[ -z "$killer" ] || kill "$killer" 2>/dev/null || true; scripts/scale.sh down >/dev/null; rm -rf "$out"' EXIT
scripts/scale.sh up 1
base=http://127.0.0.1:8080
add_users "$DB" "$USERS"
# Token issuance signs each new user's identity (issue_token.lua reads line n for user n).
identities "$out/identities" "$USERS"
export BENCH_AUTH_FILE=$out/identities
add_concert
sleep 2 # the user directory picks up the new users within a second

# run <name> <url> <script> [env...]: one wrk run; prints "name req/s p50 p99 non-2xx".
run() {
  local name=$1 url=$2 script=$3; shift 3
  env "$@" wrk -t1 -c64 -d"$DURATION" -s "bench/$script" "$url" | grep '^RESULT' | sed 's/^RESULT //' \
    | python3 -c '
import sys
f = dict(kv.split("=") for kv in sys.stdin.read().split())
print("%s|%.0f|%.2f|%.2f|%s" % (sys.argv[1], int(f["requests"]) / float(f["seconds"]),
      int(f["p50"]) / 1000, int(f["p99"]) / 1000, f["bad"]))' "$name" | tee -a "$out/runs"
}
# tokens <instances>: token issuance on a schedule of its own, new users from $next_user.
next_user=1
tokens() {
  local schedule
  read -r schedule _ <<<"$(new_schedule 10000)"
  admin PUT "/api/v1/admin/schedules/$schedule/queue" '{"maxWaitingUsers":2000000,"maxActiveUsers":1000}' >/dev/null
  run "POST /api/v1/queue/tokens, $1" "$base" issue_token.lua \
    BENCH_SCHEDULE="$schedule" BENCH_FIRST_USER="$next_user"
  # The next run's users follow this one's, with a margin for requests in flight at its end.
  next_user=$((next_user + $(tail -1 "$out/runs" | cut -d'|' -f2) * ${DURATION%s} * 2 + 1000))
}

# measure <label>: /health and tokens through nginx, each after the write-behind settled.
measure() {
  settle >/dev/null
  run "GET /health, $1" "$base" health.lua
  settle >/dev/null
  tokens "$1"
}
run "GET /health, 1 instance, no nginx" http://127.0.0.1:8081 health.lua
measure "1 instance"
scripts/scale.sh up 3
measure "3 instances"
scripts/scale.sh up 1
measure "1 instance (again)"

echo
echo "wrk -t1 -c64 -d$DURATION through nginx $(nginx -v 2>&1 | cut -d/ -f2) on 127.0.0.1:8080;" \
  "$(nproc) cores shared by wrk, nginx, seatrush, Redis Cluster (3 masters) and MariaDB"
python3 - "$out/runs" <<'EOF'
import sys
rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1])]
by_name = {r[0]: float(r[1]) for r in rows}
print("| run | req/s | p50 ms | p99 ms | non-2xx | 3 instances / 1 |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for name, rps, p50, p99, bad in rows:
    ratio = ""
    if "3 instances" in name:
        one = name.replace("3 instances", "1 instance")
        ones = [by_name[n] for n in (one, one + " (again)") if n in by_name]
        ratio = "%.2f" % (float(rps) / (sum(ones) / len(ones)))
    print("| %s | %s | %s | %s | %s | %s |" % (name, rps, p50, p99, bad, ratio))
EOF

if [ "$FLASH" = 1 ]; then
  echo
  scripts/scale.sh up 3
  settle >/dev/null
  schedule=$(flash_schedule)
  echo "flash sale on 3 instances: kill -9 of instance 2 at $((FLASH_SEATS / 4)) seats sold," \
    "of instance 3 at $((FLASH_SEATS / 2))"
  sold() {
    admin GET "/api/v1/admin/schedules/$schedule/queue" 2>/dev/null | json soldSeats 2>/dev/null || echo 0
  }
  started=$SECONDS
  kill_at() { # <seats sold> <instance>
    until (($(sold) >= $1)) || ((SECONDS - started > 600)); do sleep 0.2; done
    echo "$(sold) seats sold, $((SECONDS - started)) s in: kill -9 instance $2"
    scripts/scale.sh kill "$2" >/dev/null
  }
  (
    kill_at $((FLASH_SEATS / 4)) 2
    scripts/scale.sh up 3 >/dev/null
    echo "instance 2 started again, $((SECONDS - started)) s in"
    kill_at $((FLASH_SEATS / 2)) 3
  ) &
  killer=$!
  SEATRUSH_REDIS_URL=redis://127.0.0.1:6391,redis://127.0.0.1:6392,redis://127.0.0.1:6393 \
    SEATRUSH_MYSQL_PRIMARY_URL=mysql://seatrush:seatrush@127.0.0.1:3316/$DB \
    ./target/release/examples/flashsale "$base" "$concert" "$schedule" \
    $((USERS / 2 + 1)) "$FLASH_USERS" "$FLASH_RATE"
  wait "$killer"
  scripts/scale.sh status
  echo "nginx passed $(grep -c 'upstream=[^ ]*, ' .dev/scale/nginx.log || true) requests on to" \
    "another instance after the first failed"
  echo "nginx's answers since it started, by status: $(grep -oE '" [0-9]{3} ' .dev/scale/nginx.log \
    | sort | uniq -c | awk '{printf "%s%s ×%s", (NR > 1 ? ", " : ""), $3, $1}')"
  echo "event streams nginx refused at its cap: $(grep -c 'limiting connections by zone "event_streams"' \
    .dev/scale/nginx.log || true)"
  short=$(grep -c 'worker_connections are not enough' .dev/scale/nginx.log || true)
  if [ "$short" -gt 0 ]; then
    echo "FAILED: nginx ran out of connections $short times" >&2
    exit 1
  fi
fi

echo
scripts/cluster-keys.sh
