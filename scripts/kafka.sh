#!/usr/bin/env bash
# Single-node KRaft Kafka broker for development and tests, without Docker.
#
#   bash scripts/kafka.sh start|stop|status|logs [-f]
#
# Env:
#   KAFKA_VERSION          3.9 (default, Kafka 3.9.1) or 4 (Kafka 4.1.1)
#   KAFKA_PORT             broker port (default 9092), always on 127.0.0.1
#   KAFKA_CONTROLLER_PORT  controller port (default 9093)
#   KAFKA_HEAP_OPTS        default: -Xms128m -Xmx512m
#   KAFKA_JVM_OPTS         default: -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
#   KAFKA_START_TIMEOUT    seconds to wait for the port to open (default 90)
#   KAFKA_PROBE_TIMEOUT_MS round-trip probe budget (default 60000)
#   KAFKA_RUN_DIR          broker state dir (default .kafka/run-<ver>); set it to run two
#                          brokers of the same version side by side on different ports
#
# Jars come from Maven Central via kafka/pom.xml into .kafka/libs-<ver>/ (cached);
# broker state lives in .kafka/run-<ver>/ (server.properties, data/, logs/, kafka.pid, kafka.out).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"

log() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

case "${KAFKA_VERSION:-3.9}" in
  3.9 | 3.9.1 | 3) VER=3.9; PROFILE=kafka39; KAFKA_FULL=3.9.1 ;;
  4 | 4.1 | 4.1.1) VER=4; PROFILE=kafka4; KAFKA_FULL=4.1.1 ;;
  *) die "unsupported KAFKA_VERSION='${KAFKA_VERSION}' (use 3.9 or 4)" ;;
esac

HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
KDIR="$ROOT/.kafka"
LIBS="$KDIR/libs-$VER"
LIBS_MARKER="$LIBS/.complete"
RUN="${KAFKA_RUN_DIR:-$KDIR/run-$VER}"
PIDFILE="$RUN/kafka.pid"
PORTFILE="$RUN/kafka.port"
OUT="$RUN/kafka.out"
PROPS="$RUN/server.properties"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError}"

[[ "$PORT" =~ ^[0-9]+$ && "$CPORT" =~ ^[0-9]+$ ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must be numbers"
[[ "$PORT" != "$CPORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"

now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100)); }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# Who listens on a port (best effort, for error messages).
port_owner() {
  if command -v ss >/dev/null; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/used by \1, pid \2/p' | head -n1
  fi
  return 0
}

node_bin() {
  if [[ -x "$ROOT/node_modules/.bin/node" ]]; then echo "$ROOT/node_modules/.bin/node"
  elif command -v node >/dev/null; then command -v node
  else return 1; fi
}

# Round-trip probe; returns the probe's exit code (0 ok, 1 failed, 2 kafkajs missing).
probe() {
  local node
  node="$(node_bin)" || { log "no node binary found (looked in node_modules/.bin and PATH)"; return 2; }
  KAFKA_PROBE_TIMEOUT_MS="${1:-${KAFKA_PROBE_TIMEOUT_MS:-60000}}" "$node" "$SCRIPT_DIR/kafka-probe.mjs" "$HOST:$PORT"
}

# pid of the broker started by this script for this version, if it is alive.
managed_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: it must be our java running kafka.Kafka on our run dir.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS" || return 1
  echo "$pid"
}

SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo)
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: apt-get not found; install it by hand"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_java() {
  command -v java >/dev/null || apt_install default-jre-headless
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if [[ "$VER" == 4 && "${major%%.*}" -lt 17 ]]; then
    die "Kafka 4 needs Java 17+, found java $major ($(command -v java))"
  fi
}

ensure_mvn() {
  command -v mvn >/dev/null || apt_install maven
}

# Copy the runtime jars into $LIBS once; the marker is written only after a complete copy.
ensure_libs() {
  if [[ -f "$LIBS_MARKER" ]] && compgen -G "$LIBS/kafka_2.13-$KAFKA_FULL.jar" >/dev/null; then
    return 0
  fi
  ensure_mvn
  local tmp="$LIBS.tmp.$$" t0
  t0=$(now_ms)
  log "fetching Kafka $KAFKA_FULL jars from Maven Central (profile $PROFILE) into ${LIBS#"$ROOT"/}"
  rm -rf "$tmp"
  # Maven 3.8's jansi prints stray ANSI resets even with -B; keep its output in a file.
  if ! mvn -B -q -Dstyle.color=never -f "$ROOT/kafka/pom.xml" -P "$PROFILE" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KDIR/mvn-$VER.log" 2>&1; then
    tail -n 40 "$KDIR/mvn-$VER.log" >&2
    rm -rf "$tmp"
    die "mvn copy-dependencies failed for profile $PROFILE (full output: $KDIR/mvn-$VER.log)"
  fi
  compgen -G "$tmp/kafka_2.13-$KAFKA_FULL.jar" >/dev/null || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_FULL.jar missing after mvn"; }
  local bindings
  bindings="$(find "$tmp" -maxdepth 1 \( -name 'slf4j-reload4j-*.jar' -o -name 'slf4j-log4j12-*.jar' -o -name 'log4j-slf4j*-impl-*.jar' \
    -o -name 'logback-classic-*.jar' -o -name 'slf4j-simple-*.jar' -o -name 'slf4j-nop-*.jar' -o -name 'slf4j-jdk14-*.jar' \) -printf '%f ')"
  [[ "$(wc -w <<<"$bindings")" -eq 1 ]] || { rm -rf "$tmp"; die "expected exactly one SLF4J binding, found: ${bindings:-none}"; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  date -u +%FT%TZ >"$LIBS_MARKER"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $(since "$t0") (SLF4J binding: ${bindings% })"
}

write_config() {
  mkdir -p "$RUN/data" "$RUN/logs"
  cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=4
# After a SIGKILL the old broker registration blocks re-registration until its session
# expires (DUPLICATE_BROKER_REGISTRATION): 4 s instead of 9 s halves that restart.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
  if [[ "$VER" == 4 ]]; then
    cat >>"$PROPS" <<EOF
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    cat >"$RUN/log4j2.properties" <<'EOF'
appender.out.type=Console
appender.out.name=STDOUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.statechange.name=state.change.logger
logger.statechange.level=WARN
EOF
    LOG_OPTS=("-Dlog4j2.configurationFile=$RUN/log4j2.properties")
  else
    cat >"$RUN/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
    LOG_OPTS=("-Dlog4j.configuration=file:$RUN/log4j.properties")
  fi
}

format_storage() {
  [[ -f "$RUN/data/meta.properties" ]] && return 0
  local cid
  # Kafka cluster ids are 16 random bytes in base64url without padding; avoid a leading '-'.
  cid="-"
  while [[ "$cid" == -* ]]; do cid="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; done
  log "formatting ${RUN#"$ROOT"/}/data (cluster id $cid)"
  # shellcheck disable=SC2086 # word splitting of the option strings is intended
  if ! java -Xmx256m $JVM_OPTS "${LOG_OPTS[@]}" -Dkafka.logs.dir="$RUN/logs" -cp "$LIBS/*" \
      kafka.tools.StorageTool format -t "$cid" -c "$PROPS" --ignore-formatted >"$RUN/format.out" 2>&1; then
    cat "$RUN/format.out" >&2
    die "kafka storage format failed"
  fi
}

tail_out() {
  printf -- '--- last lines of %s ---\n' "$OUT" >&2
  tail -n 40 "$OUT" >&2 2>/dev/null || true
  printf -- '---\n' >&2
}

stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid still alive after 10s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# What to say when start-up was slow and the log dir is large (thousands of test topics load slowly).
big_dir_hint() {
  local kb dirs
  kb=$(du -sk "$RUN/data" 2>/dev/null | cut -f1) || return 0
  [[ -n "$kb" ]] && ((kb > 1048576)) || return 0
  dirs=$(find "$RUN/data" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
  printf '; its log dir %s holds %s MB in %s partition dirs, which take long to load: raise KAFKA_START_TIMEOUT and KAFKA_PROBE_TIMEOUT_MS, or start empty (scripts/kafka.sh stop; rm -rf %s)' \
    "$RUN/data" "$((kb / 1024))" "$dirs" "$RUN/data"
}

# Wait for the port, then the round-trip probe. On failure kill the broker we started.
wait_ready() {
  local pid="$1" t_deadline=$((SECONDS + START_TIMEOUT)) rc
  until port_open "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_out
      rm -f "$PIDFILE"
      die "broker process $pid exited during start-up (full log: $OUT)"
    fi
    if ((SECONDS >= t_deadline)); then
      tail_out
      stop_pid "$pid"; rm -f "$PIDFILE"
      die "port $HOST:$PORT did not open within ${START_TIMEOUT}s$(big_dir_hint)"
    fi
    sleep 0.2
  done
  rc=0
  probe || rc=$?
  if [[ $rc -eq 2 ]]; then
    log "warning: round-trip probe unavailable; waiting for 'Kafka Server started' in the log instead"
    until grep -q 'Kafka Server started' "$OUT" 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { tail_out; rm -f "$PIDFILE"; die "broker process $pid exited during start-up"; }
      ((SECONDS < t_deadline)) || { tail_out; stop_pid "$pid"; rm -f "$PIDFILE"; die "broker not started within ${START_TIMEOUT}s$(big_dir_hint)"; }
      sleep 0.2
    done
  elif [[ $rc -ne 0 ]]; then
    tail_out
    if kill -0 "$pid" 2>/dev/null; then stop_pid "$pid"; fi
    rm -f "$PIDFILE"
    die "broker on $HOST:$PORT failed the round-trip probe (full log: $OUT)$(big_dir_hint)"
  fi
}

cmd_start() {
  local t0 pid rc
  t0=$(now_ms)
  mkdir -p "$KDIR"
  # Serialise concurrent starts of the same version (the fd is closed for the broker itself).
  exec 9>"$KDIR/.lock-$VER"
  flock -w 600 9 || die "timed out waiting for another kafka.sh start (lock ${KDIR#"$ROOT"/}/.lock-$VER)"

  if pid="$(managed_pid)"; then
    local was
    was="$(cat "$PORTFILE" 2>/dev/null || echo "?")"
    [[ "$was" == "$PORT" ]] || die "Kafka $VER from ${RUN#"$ROOT"/} already runs on port $was (pid $pid); stop it first or set KAFKA_RUN_DIR"
  fi

  if port_open "$PORT"; then
    rc=0
    probe 15000 >/dev/null || rc=$?
    if [[ $rc -eq 0 ]]; then
      # The tests also run the Java client's own code from these jars (murmur2 cross-check), so make sure the
      # checkout has them even when the broker that answers was started elsewhere (cached: no download twice).
      ensure_java
      ensure_mvn
      ensure_libs
      log "kafka already running on $HOST:$PORT"
      return 0
    fi
    if [[ -n "${pid:-}" ]]; then
      die "Kafka $VER (pid $pid) listens on $HOST:$PORT but fails the round-trip probe; see $OUT or run: bash scripts/kafka.sh stop"
    fi
    die "port $HOST:$PORT is taken by something that is not a working Kafka ($(port_owner "$PORT")); free it or set KAFKA_PORT"
  fi
  if [[ -n "${pid:-}" ]]; then
    log "Kafka $VER (pid $pid) is starting; waiting for it"
    wait_ready "$pid"
    log "kafka ready on $HOST:$PORT (pid $pid) after $(since "$t0")"
    return 0
  fi
  if port_open "$CPORT"; then
    die "controller port $HOST:$CPORT is taken ($(port_owner "$CPORT")); free it or set KAFKA_CONTROLLER_PORT"
  fi

  ensure_java
  ensure_libs
  write_config
  format_storage

  [[ -f "$OUT" ]] && mv -f "$OUT" "$OUT.prev"
  rm -f "$PIDFILE"
  log "starting Kafka $KAFKA_FULL on $HOST:$PORT (controller $CPORT, dir ${RUN#"$ROOT"/})"
  # setsid: own session, so the broker outlives the calling shell and its process group.
  # The inner bash records its pid, then execs java, so the pid file names the JVM itself.
  # shellcheck disable=SC2016,SC2086 # $$ is for the inner shell; option strings split on purpose
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    java $HEAP_OPTS $JVM_OPTS -Djava.awt.headless=true "${LOG_OPTS[@]}" -Dkafka.logs.dir="$RUN/logs" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    >"$OUT" 2>&1 </dev/null 9>&- &
  echo "$PORT" >"$PORTFILE"
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$PIDFILE" ]] && break; sleep 0.05; done
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "could not start the broker (no pid written); see $OUT"

  wait_ready "$pid"
  log "kafka $KAFKA_FULL ready on $HOST:$PORT (pid $pid); start took $(since "$t0")"
}

cmd_stop() {
  local pid
  if pid="$(managed_pid)"; then
    log "stopping Kafka $VER (pid $pid)"
    stop_pid "$pid"
    if kill -0 "$pid" 2>/dev/null; then die "could not stop pid $pid"; fi
    rm -f "$PIDFILE"
    log "stopped"
  else
    rm -f "$PIDFILE"
    if port_open "$PORT"; then
      log "not started by this script (no live pid in ${PIDFILE#"$ROOT"/}), but something listens on $HOST:$PORT ($(port_owner "$PORT")); leaving it alone"
    else
      log "not running"
    fi
  fi
}

cmd_status() {
  local pid was
  if pid="$(managed_pid)"; then
    was="$(cat "$PORTFILE" 2>/dev/null || echo "?")"
    if [[ "$was" != "$PORT" ]]; then
      log "not running on $HOST:$PORT (Kafka $VER from ${RUN#"$ROOT"/} runs on port $was, pid $pid)"
      return 1
    fi
    if port_open "$PORT"; then
      log "running: Kafka $KAFKA_FULL on $HOST:$PORT (pid $pid, dir ${RUN#"$ROOT"/})"
      return 0
    fi
    log "process $pid is alive but $HOST:$PORT does not answer (starting, or listening elsewhere)"
    return 1
  fi
  if port_open "$PORT"; then
    if KAFKA_PROBE_QUIET=1 probe 15000 >/dev/null 2>&1; then
      log "running: a Kafka not managed by this script answers on $HOST:$PORT"
      return 0
    fi
    log "not running: $HOST:$PORT is taken by something that is not a working Kafka"
    return 1
  fi
  log "not running"
  return 1
}

cmd_logs() {
  [[ -f "$OUT" ]] || die "no log yet: $OUT"
  if [[ "${1:-}" == "-f" ]]; then exec tail -n 100 -F "$OUT"; fi
  tail -n "${KAFKA_LOG_LINES:-200}" "$OUT"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  *) echo "usage: $0 start|stop|status|logs [-f]   (env: KAFKA_VERSION=3.9|4 KAFKA_PORT KAFKA_CONTROLLER_PORT)" >&2; exit 2 ;;
esac
