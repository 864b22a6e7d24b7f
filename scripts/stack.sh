#!/usr/bin/env bash
# The dev stack: Redis (6390, AOF) and a MariaDB primary (3316) with a GTID replica (3317),
# all on loopback, with their data under .dev/. `up` is idempotent; `down` stops only the
# processes whose pid files live under .dev/. `cluster-up` adds two 3-master Redis Clusters
# (6391-6393 for the application, 6394-6396 for tests that need a Redis of their own).
# `ha-up` adds Redis high availability: a replica of the dev Redis on 6397 and three Sentinels
# on 26390-26392 watching it under the master name `seatrush`; `ha-down` stops them and makes
# the dev Redis on 6390 the master again, as the rest of the stack expects.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dev="$root/.dev"
REDIS_PORT=6390
REPLICA_REDIS_PORT=6397
SENTINEL_PORTS=(26390 26391 26392)
MASTER_NAME=seatrush
CLUSTERS=("6391 6392 6393" "6394 6395 6396")
PRIMARY_PORT=3316
REPLICA_PORT=3317
DB_USER=seatrush
DB_PASS=seatrush
REPL_USER=repl
REPL_PASS=repl

log() { printf 'stack: %s\n' "$*"; }
LOGS="$dev/*.log"
# shellcheck source=scripts/processes.sh
. "$root/scripts/processes.sh"

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# PONG, not the LOADING error Redis answers while it replays its AOF.
redis_ready() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

# redis_server <port> <dir> [option...]: a dev Redis (AOF on, noeviction) on loopback.
redis_server() {
  local port=$1 dir=$2; shift 2
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --appendonly yes --appendfsync "${SEATRUSH_REDIS_APPENDFSYNC:-everysec}" --save "" \
    --maxmemory 2gb --maxmemory-policy noeviction --auto-aof-rewrite-min-size 1gb --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@"
}

redis_up() {
  mkdir -p "$dev/redis"
  if alive "$dev/redis/redis.pid"; then wait_for "redis" redis_ready; return; fi
  require_free "$REDIS_PORT" redis
  redis_server "$REDIS_PORT" "$dev/redis"
  wait_for "redis" redis_ready
  log "redis on 127.0.0.1:$REDIS_PORT"
}

# High availability (make stack-ha): a replica of the dev Redis and three Sentinels. Started
# fresh, the Sentinels watch the dev Redis as the master; once running they keep whatever
# failovers made of the pair (a failover test brings the old master back as a replica).
ha_up() {
  up
  local dir="$dev/redis-replica" port
  mkdir -p "$dir"
  if ! alive "$dir/redis.pid"; then
    require_free "$REPLICA_REDIS_PORT" "redis replica"
    redis_server "$REPLICA_REDIS_PORT" "$dir" --replicaof 127.0.0.1 "$REDIS_PORT"
  fi
  wait_for "redis replica" redis_cli_ping "$REPLICA_REDIS_PORT"
  for port in "${SENTINEL_PORTS[@]}"; do
    dir="$dev/sentinel-$port"
    mkdir -p "$dir"
    alive "$dir/sentinel.pid" && continue
    require_free "$port" "redis sentinel"
    # Sentinel rewrites its file as it learns the topology; a fresh start begins from the
    # dev Redis as the master. A master is down after 1 s without an answer (a production
    # setting would allow more), so tests see a failover within a few seconds.
    cat >"$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
dir $dir
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
sentinel monitor $MASTER_NAME 127.0.0.1 $REDIS_PORT 2
sentinel down-after-milliseconds $MASTER_NAME 1000
sentinel failover-timeout $MASTER_NAME 5000
sentinel parallel-syncs $MASTER_NAME 1
CONF
    redis-server "$dir/sentinel.conf" --sentinel
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    wait_for "redis sentinel $port" sentinel_sees_replica "$port"
  done
  # A replica confirms writes (WAIT) only once its first full copy has loaded.
  wait_for "redis replica to copy the master" replica_in_sync
  log "redis replica on 127.0.0.1:$REPLICA_REDIS_PORT, sentinels on 127.0.0.1 ports $(IFS=,; echo "${SENTINEL_PORTS[*]}") (master name $MASTER_NAME)"
}

# The Sentinel on <port> knows the master and at least one replica of it.
sentinel_sees_replica() {
  redis-cli -p "$1" sentinel replicas "$MASTER_NAME" 2>/dev/null | grep -q '^name$'
}

# One of the pair is a replica whose link to its master is up (its first copy loaded).
replica_in_sync() {
  local port
  for port in "$REDIS_PORT" "$REPLICA_REDIS_PORT"; do
    redis-cli -p "$port" info replication 2>/dev/null | grep -q '^master_link_status:up' && return 0
  done
  return 1
}

# Stops the Sentinels and the replica; the dev Redis on 6390 is then the master again (if a
# failover had made it a replica, it holds the promoted master's data).
ha_down() {
  local port
  for port in "${SENTINEL_PORTS[@]}"; do
    stop_pid "$dev/sentinel-$port/sentinel.pid" "redis sentinel $port"
  done
  if alive "$dev/redis/redis.pid" && redis-cli -p "$REDIS_PORT" role 2>/dev/null | head -1 | grep -q slave; then
    redis-cli -p "$REDIS_PORT" replicaof no one >/dev/null
    log "redis on 127.0.0.1:$REDIS_PORT is the master again"
  fi
  stop_pid "$dev/redis-replica/redis.pid" "redis replica"
}

# One Redis Cluster of three masters (no replicas: losing a master is out of scope here),
# each node with its AOF under .dev/cluster-<port>/.
cluster_up() { # <ports...>
  local port
  for port in "$@"; do
    local dir="$dev/cluster-$port"
    mkdir -p "$dir"
    if ! alive "$dir/redis.pid"; then
      require_free "$port" "redis cluster node"
      redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --cluster-enabled yes \
        --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --appendonly yes --appendfsync "${SEATRUSH_REDIS_APPENDFSYNC:-everysec}" --save "" \
        --maxmemory-policy noeviction --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    fi
    wait_for "redis cluster node $port" redis_cli_ping "$port"
  done
  if ! redis-cli -p "$1" cluster info | grep -q 'cluster_state:ok'; then
    local nodes=()
    for port in "$@"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    wait_for "redis cluster on $*" cluster_ok "$@"
  fi
  log "redis cluster on 127.0.0.1 ports $(IFS=,; echo "$*")"
}

redis_cli_ping() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = "PONG" ]; }

# Every node sees the cluster as ok (slots assigned and agreed on).
cluster_ok() {
  local port
  for port in "$@"; do redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || return 1; done
}

clusters_up() {
  ensure_packages
  local ports
  for ports in "${CLUSTERS[@]}"; do
    # shellcheck disable=SC2086 # the ports are words
    cluster_up $ports
  done
}

clusters_down() {
  local ports port
  for ports in "${CLUSTERS[@]}"; do
    for port in $ports; do stop_pid "$dev/cluster-$port/redis.pid" "redis cluster node $port"; done
  done
}

# mariadb_sql <name> <sql>: runs SQL as root over the instance's socket.
mariadb_sql() { mariadb --no-defaults --socket="$dev/$1.sock" -uroot -e "$2"; }

mariadb_up() { # <name> <port> <server-id>
  local name=$1 port=$2 id=$3 data="$dev/$1"
  local fresh=0
  if alive "$dev/$name.pid"; then
    wait_for "mariadb $name" mariadb_sql "$name" "SELECT 1"
    return 1
  fi
  require_free "$port" "mariadb $name"
  if [ ! -d "$data/mysql" ]; then
    mkdir -p "$data"
    mariadb-install-db --no-defaults --datadir="$data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dev/$name-install.log" 2>&1
    fresh=1
  fi
  local extra=()
  [ "$name" = replica ] && extra+=(--read-only=1)
  nohup mariadbd --no-defaults --datadir="$data" --user="$(id -un)" \
    --port="$port" --bind-address=127.0.0.1 --socket="$dev/$name.sock" \
    --pid-file="$dev/$name.pid" --log-error="$dev/$name.log" \
    --server-id="$id" --log-bin=mysql-bin --binlog-format=ROW --gtid-strict-mode=1 \
    --log-slave-updates=1 --skip-name-resolve --innodb-buffer-pool-size=256M \
    --max-connections=500 --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    "${extra[@]}" >/dev/null 2>&1 &
  wait_for "mariadb $name" mariadb_sql "$name" "SELECT 1"
  log "mariadb $name on 127.0.0.1:$port"
  [ "$fresh" -eq 1 ]
}

replication_up() {
  local running
  running=$(mariadb --no-defaults --socket="$dev/replica.sock" -uroot -N -e \
    "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='SLAVES_RUNNING'" 2>/dev/null || echo 0)
  [ "$running" = "1" ] && return
  mariadb_sql replica "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT,
    MASTER_USER='$REPL_USER', MASTER_PASSWORD='$REPL_PASS', MASTER_USE_GTID=slave_pos,
    MASTER_CONNECT_RETRY=1; START SLAVE;"
  log "replica follows the primary (GTID)"
}

up() {
  ensure_packages
  mkdir -p "$dev"
  redis_up
  local primary_fresh=0
  mariadb_up primary "$PRIMARY_PORT" 1 && primary_fresh=1
  mariadb_up replica "$REPLICA_PORT" 2 || true
  if [ "$primary_fresh" -eq 1 ]; then
    # Created on the primary, so they reach the replica through replication.
    mariadb_sql primary "
      CREATE USER '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASS';
      GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';"
  fi
  replication_up
  mariadb_sql primary "
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL PRIVILEGES ON \`seatrush%\`.* TO '$DB_USER'@'127.0.0.1';
    GRANT SLAVE MONITOR ON *.* TO '$DB_USER'@'127.0.0.1';
    CREATE DATABASE IF NOT EXISTS seatrush;"
}

down() {
  "$root/scripts/scale.sh" down
  ha_down
  clusters_down
  stop_pid "$dev/replica.pid" "mariadb replica"
  stop_pid "$dev/primary.pid" "mariadb primary"
  stop_pid "$dev/redis/redis.pid" "redis"
}

status() {
  alive "$dev/redis/redis.pid" && log "redis up" || log "redis down"
  alive "$dev/primary.pid" && log "primary up" || log "primary down"
  alive "$dev/replica.pid" && log "replica up" || log "replica down"
}

# stop <redis|primary|replica>: stops one server (the failure tests do); `up` starts it again.
stop_one() {
  case "${1:-}" in
    redis) stop_pid "$dev/redis/redis.pid" "redis" ;;
    primary) stop_pid "$dev/primary.pid" "mariadb primary" ;;
    replica) stop_pid "$dev/replica.pid" "mariadb replica" ;;
    *) echo "usage: $0 stop redis|primary|replica" >&2; exit 2 ;;
  esac
}

case "${1:-up}" in
  up) up ;;
  cluster-up) clusters_up ;;
  ha-up) ha_up ;;
  ha-down) ha_down ;;
  down) down ;;
  stop) stop_one "${2:-}" ;;
  status) status ;;
  *) echo "usage: $0 up|cluster-up|ha-up|ha-down|down|stop <server>|status" >&2; exit 2 ;;
esac
