# Shared by the service scripts (redis.sh, clickhouse.sh, postgres.sh); sourced, not run.
#
# The caller defines log and die, HOST, and for the daemon helpers: NAME (as in messages), WHERE (host:port as
# in messages), PIDFILE, DIR and ROOT, COMM (the process name's start in /proc/<pid>/comm), STOP_SECONDS, and a
# ping_ok function that is true when the service answers.

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo)
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: apt-get not found; install it by hand"
  log "apt-get update"
  "${SUDO[@]}" apt-get update -qq >/dev/null
  log "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The pid of the server this script started, if it still runs.
managed_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$COMM"* ]] || return 1
  echo "$pid"
}

# Stops the server this script started (SIGTERM, then SIGKILL after STOP_SECONDS); leaves any other alone.
cmd_stop() {
  local pid i
  if pid="$(managed_pid)"; then
    log "stopping $NAME (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_SECONDS * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; log "stopped"; return 0; }
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    log "killed (did not stop within ${STOP_SECONDS}s)"
  elif ping_ok; then
    log "$NAME on $WHERE was not started by this script (no live pid in ${PIDFILE#"$ROOT"/}); leaving it alone"
  else
    log "not running"
  fi
}

cmd_status() {
  local pid
  if ping_ok; then
    if pid="$(managed_pid)"; then
      log "running on $WHERE (pid $pid, dir ${DIR#"$ROOT"/})"
    else
      log "running on $WHERE (not started by this script)"
    fi
    return 0
  fi
  log "not running on $WHERE"
  return 1
}
