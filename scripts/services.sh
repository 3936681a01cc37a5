#!/usr/bin/env bash
# Everything the integration tests need, without Docker: Kafka, Redis, PostgreSQL, ClickHouse.
#
#   bash scripts/services.sh start|stop|status
#
# Runs scripts/kafka.sh, redis.sh, postgres.sh and clickhouse.sh (same env variables: KAFKA_VERSION,
# KAFKA_PORT, KAFKA_CONTROLLER_PORT, REDIS_PORT, PGPORT, CLICKHOUSE_HTTP_PORT) and prints one
# summary line per service with its connection string. Exits non-zero if any step fails.
# docker/compose.yml is the Docker equivalent.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"

SERVICES=(kafka redis postgres clickhouse)

conn() {
  case "$1" in
    kafka) echo "SLUICE_BROKERS=127.0.0.1:${KAFKA_PORT:-9092}" ;;
    redis) echo "REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}" ;;
    postgres) echo "DATABASE_URL=postgres://sluice:sluice@127.0.0.1:${PGPORT:-5432}/sluice" ;;
    clickhouse) echo "CLICKHOUSE_URL=http://127.0.0.1:${CLICKHOUSE_HTTP_PORT:-8123}" ;;
  esac
}

run_all() {
  local action="$1" svc rc failed=0 t0
  local -a summary=()
  shift
  for svc in "$@"; do
    t0=$SECONDS
    rc=0
    bash "$SCRIPT_DIR/$svc.sh" "$action" || rc=$?
    case "$action:$rc" in
      start:0) summary+=("$(printf '%-10s ok       %s (%ss)' "$svc" "$(conn "$svc")" $((SECONDS - t0)))") ;;
      status:0) summary+=("$(printf '%-10s running  %s' "$svc" "$(conn "$svc")")") ;;
      status:*) summary+=("$(printf '%-10s DOWN     %s' "$svc" "$(conn "$svc")")"); failed=1 ;;
      stop:0) summary+=("$(printf '%-10s stopped' "$svc")") ;;
      *) summary+=("$(printf '%-10s FAILED   %s (exit %s)' "$svc" "$action" "$rc")"); failed=1 ;;
    esac
  done
  echo "--- services ($action) ---"
  printf '%s\n' "${summary[@]}"
  return "$failed"
}

case "${1:-}" in
  start) run_all start "${SERVICES[@]}" ;;
  stop) run_all stop clickhouse postgres redis kafka ;;
  status) run_all status "${SERVICES[@]}" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
