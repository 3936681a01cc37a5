#!/usr/bin/env bash
# PostgreSQL for development and tests, without Docker.
#
#   bash scripts/postgres.sh start|stop|status
#
# Env: PGPORT (default 5432), always on 127.0.0.1.
#
# Uses Debian's cluster tools (postgresql-common): the cluster on PGPORT from `pg_lsclusters`
# (normally <ver>/main, created by `apt-get install postgresql`), or a new cluster
# <ver>/sluice (<ver>/sluice<PGPORT> for a port other than 5432) on PGPORT if none listens there.
# A PGPORT inside the kernel's ephemeral range (ip_local_port_range) gets a warning: while the
# server is down, any outgoing connection may take the port, and a restart then fails to bind. pg_ctlcluster runs the server as the
# `postgres` user, so this works when called as root. If a server already answers on the
# port, start only makes sure role `sluice` (password sluice, LOGIN CREATEDB) and database
# `sluice` exist, then checks postgres://sluice:sluice@127.0.0.1:PGPORT/sluice.
set -euo pipefail

HOST=127.0.0.1
PORT="${PGPORT:-5432}"
ROLE=sluice
PASSWORD=sluice
DB=sluice
URL="postgres://$ROLE:$PASSWORD@$HOST:$PORT/$DB"

log() { printf 'postgres: %s\n' "$*"; }
die() { printf 'postgres: error: %s\n' "$*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "PGPORT must be a number"
# Our own connection settings are explicit; stray libpq variables must not redirect them.
unset PGHOST PGHOSTADDR PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

# shellcheck source=lib/daemon.sh
source "$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/lib/daemon.sh"

# 0 accepting, 1 rejecting (e.g. starting up), 2 no response, 3 bad call (as pg_isready).
ready_state() {
  if command -v pg_isready >/dev/null; then
    local rc=0
    pg_isready -q -h "$HOST" -p "$PORT" -t 3 || rc=$?
    return "$rc"
  fi
  port_open "$PORT" && return 1
  return 2
}

server_installed() {
  command -v pg_lsclusters >/dev/null && command -v pg_ctlcluster >/dev/null &&
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Prints "<version> <cluster> <status>" of the local Debian cluster configured on PORT.
local_cluster() {
  command -v pg_lsclusters >/dev/null || return 1
  pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p { print $1, $2, $4; found = 1; exit } END { exit !found }'
}

# Run a command as the postgres OS user (peer auth over the Unix socket), from a readable cwd.
as_postgres() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@")
  else (cd / && sudo -n -u postgres -- "$@"); fi
}

url_ok() { psql "$URL" -X -Atqc 'select 1' >/dev/null 2>&1; }

# Create or fix role and database through the local superuser, and let the role in over TCP.
ensure_role_db() {
  local ver="$1" hba
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')
\\gexec
SQL
  url_ok && return 0
  # Password auth over TCP refused: add a scram rule for the role on 127.0.0.1 ahead of the others.
  hba="$(as_postgres psql -X -Atq -p "$PORT" -d postgres -c 'SHOW hba_file')"
  [[ -f "$hba" ]] || die "cannot connect as $URL and cannot find pg_hba.conf"
  if ! grep -qE "^host[[:space:]]+all[[:space:]]+${ROLE}[[:space:]]+127\.0\.0\.1/32" "$hba"; then
    log "allowing password (scram-sha-256) logins for $ROLE from 127.0.0.1 in $hba (cluster $ver)"
    sed -i "0,/^[[:space:]]*\(local\|host\)/s//host    all             $ROLE          127.0.0.1\/32            scram-sha-256\n&/" "$hba"
    as_postgres psql -X -Atq -p "$PORT" -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 0.5
  fi
}

verify() {
  local out
  out="$(psql "$URL" -X -Atqc 'select 1' 2>&1)" || die "cannot run 'select 1' via $URL: $out"
  [[ "$out" == 1 ]] || die "unexpected answer from $URL: $out"
}

warn_ephemeral() {
  local lo hi
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
  if ((PORT >= lo && PORT <= hi)); then
    log "warning: port $PORT is in the ephemeral range $lo-$hi; an outgoing connection can take it while the server is down (pick a port below $lo)"
  fi
}

cmd_start() {
  local cl ver name state rc i
  warn_ephemeral
  rc=0; ready_state || rc=$?
  if [[ $rc -eq 2 ]] && port_open "$PORT"; then
    die "port $HOST:$PORT is taken by something that is not PostgreSQL; free it or set PGPORT"
  fi

  if [[ $rc -ne 0 ]]; then
    if ! server_installed; then
      apt_install postgresql
    fi
    if ! cl="$(local_cluster)"; then
      ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)"
      [[ -n "$ver" ]] || die "no PostgreSQL server version found under /usr/lib/postgresql"
      name=sluice
      [[ "$PORT" == 5432 ]] || name="sluice$PORT"
      log "no cluster on port $PORT; creating cluster $ver/$name"
      pg_createcluster --port "$PORT" "$ver" "$name" >/dev/null
      cl="$(local_cluster)" || die "pg_createcluster did not create a cluster on port $PORT"
    fi
    read -r ver name state <<<"$cl"
    if [[ "$state" != online* ]]; then
      log "starting cluster $ver/$name on port $PORT"
      if ! pg_ctlcluster "$ver" "$name" start; then
        tail -n 20 "/var/log/postgresql/postgresql-$ver-$name.log" >&2 2>/dev/null || true
        die "pg_ctlcluster $ver $name start failed"
      fi
    fi
    for ((i = 0; i < 300; i++)); do
      rc=0; ready_state || rc=$?
      [[ $rc -eq 0 ]] && break
      sleep 0.1
    done
    [[ $rc -eq 0 ]] || die "PostgreSQL on $HOST:$PORT is not accepting connections after 30s (cluster $ver/$name, see /var/log/postgresql/postgresql-$ver-$name.log)"
  else
    log "postgres already running on $HOST:$PORT"
  fi

  command -v psql >/dev/null || apt_install postgresql-client
  if cl="$(local_cluster)" && [[ "$cl" == *online* ]]; then
    read -r ver name state <<<"$cl"
    ensure_role_db "$ver"
  elif ! url_ok; then
    die "a PostgreSQL not managed by Debian's cluster tools runs on $HOST:$PORT and $URL does not work; create role/db $ROLE there"
  fi
  verify
  log "ready: $URL ($(psql "$URL" -X -Atqc 'show server_version'))"
}

cmd_stop() {
  local cl ver name state
  if cl="$(local_cluster)"; then
    read -r ver name state <<<"$cl"
    if [[ "$state" == online* ]]; then
      log "stopping cluster $ver/$name"
      pg_ctlcluster "$ver" "$name" stop
      log "stopped"
      return 0
    fi
  fi
  if ready_state; then
    log "PostgreSQL on $HOST:$PORT is not a local Debian cluster; leaving it alone"
  else
    log "not running"
  fi
}

cmd_status() {
  local cl=""
  cl="$(local_cluster || true)"
  if ready_state; then
    log "running on $HOST:$PORT${cl:+ (cluster ${cl% *})}; $URL"
    return 0
  fi
  log "not running on $HOST:$PORT"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status   (env: PGPORT)" >&2; exit 2 ;;
esac
