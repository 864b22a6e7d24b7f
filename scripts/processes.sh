# Sourced by scripts/stack.sh and scripts/scale.sh: processes this checkout started, known by
# their pid files. The sourcing script defines log() and sets LOGS (where to look when a
# process does not come up).

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
gone() { ! alive "$1"; }

# Refuses to start on a port something else already listens on (another checkout's stack,
# say): these scripts only ever talk to servers they started themselves.
require_free() { # <port> <what>
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    log "port $1 ($2) is taken by a process this checkout did not start; stop it first"
    log "(another checkout's dev stack? run 'make stack-down' there)"
    exit 1
  fi
}

# wait_for <what> <command...>: polls the command for up to 300 s (a large AOF takes a while).
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + 300))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then log "$what did not come up; see $LOGS"; exit 1; fi
    sleep 0.2
  done
}

stop_pid() { # <pidfile> <name>
  local pidfile=$1
  alive "$pidfile" || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS > deadline)); then kill -9 "$pid"; fi
    sleep 0.2
  done
  log "stopped $2"
}

# apt_install <package...>: installs the Debian packages (as root, or with sudo).
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
