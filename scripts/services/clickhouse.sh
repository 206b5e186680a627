#!/usr/bin/env bash
# Runs a throwaway ClickHouse server (Debian's clickhouse-server package) on 127.0.0.1 for the
# kb-clickhouse integration tests and the insert benchmark. No systemd, no Docker: the server
# runs as a child process with its config, data and logs under CLICKHOUSE_DIR.
#
# Usage: scripts/services/clickhouse.sh start|stop|status|restart|clean|url|version
#   start    install clickhouse-server with apt-get if missing, start it, wait until it answers,
#            print the HTTP URL on stdout (progress goes to stderr). Idempotent: when the server
#            of this CLICKHOUSE_DIR is already up, print its URL and exit 0.
#   stop     SIGTERM to the saved pid, SIGKILL after CLICKHOUSE_STOP_TIMEOUT seconds
#   status   exit 0 when running, 3 when stopped
#   restart  stop, then start (data is kept)
#   clean    stop, then delete CLICKHOUSE_DIR
#   url      print the HTTP URL
#   version  print the server version (server must be running)
#
# Environment:
#   CLICKHOUSE_DIR            config, data and logs (default: $TMPDIR/kubecost-bridge-clickhouse)
#   CLICKHOUSE_HTTP_PORT      HTTP port (default 18123)
#   CLICKHOUSE_TCP_PORT       native protocol port (default 19000)
#   CLICKHOUSE_USER           optional extra user ...
#   CLICKHOUSE_PASSWORD       ... with this password (user "default" always exists, no password)
#   CLICKHOUSE_START_TIMEOUT  seconds to wait for readiness (default 30)
#   CLICKHOUSE_STOP_TIMEOUT   seconds before SIGKILL on stop (default 20)
#
# The server listens on 127.0.0.1 only. The profile enables
# allow_experimental_low_cardinality_type so LowCardinality columns work on 18.16 as they do on
# current ClickHouse.
set -u

DIR=${CLICKHOUSE_DIR:-${TMPDIR:-/tmp}/kubecost-bridge-clickhouse}
HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}
TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
START_TIMEOUT=${CLICKHOUSE_START_TIMEOUT:-30}
STOP_TIMEOUT=${CLICKHOUSE_STOP_TIMEOUT:-20}
PIDFILE=$DIR/clickhouse.pid
URL=http://127.0.0.1:$HTTP_PORT

die() { echo "clickhouse.sh: error: $*" >&2; exit 1; }

alive() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http_ok URL: true when URL answers 2xx (curl when present, bash's /dev/tcp otherwise).
http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -sf -o /dev/null --max-time 2 "$1"
    return
  fi
  local rest=${1#http://127.0.0.1:}
  local port=${rest%%/*} path=/${rest#*/}
  [ "$path" = "/$rest" ] && path=/
  # A subshell, so the descriptor and the silenced stderr do not outlive the check.
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    read -r -t 2 proto code _ <&3 || exit 1
    case "$code" in 2??) exit 0 ;; *) exit 1 ;; esac
  ) 2>/dev/null
}

server_bin() {
  command -v clickhouse-server 2>/dev/null && return 0
  [ -x /usr/sbin/clickhouse-server ] && { echo /usr/sbin/clickhouse-server; return 0; }
  [ -x /usr/bin/clickhouse ] && { echo /usr/bin/clickhouse; return 0; }
  return 1
}

install_server() {
  server_bin >/dev/null && return 0
  command -v apt-get >/dev/null 2>&1 || die "clickhouse-server is not installed and apt-get is not available"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "clickhouse-server is not installed; run as root or: apt-get install clickhouse-server"
    sudo="sudo -n"
  fi
  echo "clickhouse.sh: installing clickhouse-server with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends clickhouse-server clickhouse-client >/dev/null 2>&1 \
    || { $sudo apt-get update -qq >/dev/null 2>&1 \
         && $sudo apt-get install -y -qq --no-install-recommends clickhouse-server clickhouse-client >/dev/null 2>&1; } \
    || die "apt-get install clickhouse-server failed"
  server_bin >/dev/null || die "clickhouse-server is still missing after apt-get install"
}

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }

write_config() {
  mkdir -p "$DIR"/data "$DIR"/tmp "$DIR"/user_files "$DIR"/format_schemas "$DIR"/log
  chmod 700 "$DIR"
  cat > "$DIR/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$DIR/log/clickhouse-server.log</log>
    <errorlog>$DIR/log/clickhouse-server.err.log</errorlog>
    <size>50M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$HTTP_PORT</http_port>
  <tcp_port>$TCP_PORT</tcp_port>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>50</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>$DIR/data/</path>
  <tmp_path>$DIR/tmp/</tmp_path>
  <user_files_path>$DIR/user_files/</user_files_path>
  <format_schema_path>$DIR/format_schemas/</format_schema_path>
  <users_config>$DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
EOF
  local extra=""
  if [ -n "${CLICKHOUSE_USER:-}" ] && [ "$CLICKHOUSE_USER" != default ]; then
    local u p
    u=$(printf '%s' "$CLICKHOUSE_USER" | xml_escape)
    p=$(printf '%s' "${CLICKHOUSE_PASSWORD:-}" | xml_escape)
    extra="<$u><password>$p</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></$u>"
  fi
  ( umask 077; cat > "$DIR/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <use_uncompressed_cache>0</use_uncompressed_cache>
      <load_balancing>random</load_balancing>
      <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
    </default>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
    $extra
  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
  </quotas>
</yandex>
EOF
  )
}

stop() {
  if ! alive; then rm -f "$PIDFILE"; echo "clickhouse: not running" >&2; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null
  local i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $(( STOP_TIMEOUT * 5 )) ]; do sleep 0.2; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "clickhouse: still up after ${STOP_TIMEOUT}s, sending SIGKILL to $pid" >&2
    kill -9 "$pid" 2>/dev/null; sleep 0.5
  fi
  rm -f "$PIDFILE"
  echo "clickhouse: stopped (pid $pid)" >&2
}

start() {
  if alive && http_ok "$URL/ping"; then
    echo "clickhouse: already running (pid $(cat "$PIDFILE"))" >&2
    echo "$URL"; return 0
  fi
  port_busy "$HTTP_PORT" && die "port $HTTP_PORT is already in use (set CLICKHOUSE_HTTP_PORT)"
  port_busy "$TCP_PORT" && die "port $TCP_PORT is already in use (set CLICKHOUSE_TCP_PORT)"
  install_server
  local bin; bin=$(server_bin) || die "clickhouse-server binary not found"
  local args=(--config-file="$DIR/config.xml")
  # The multi-call binary needs the tool name first.
  [ "$(basename "$bin")" = clickhouse ] && args=(server "${args[@]}")
  write_config
  ( cd "$DIR" && exec "$bin" "${args[@]}" ) > "$DIR/log/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local end=$(( $(date +%s) + START_TIMEOUT ))
  until http_ok "$URL/ping"; do
    if ! alive || [ "$(date +%s)" -ge "$end" ]; then
      echo "clickhouse: not ready after ${START_TIMEOUT}s; last log lines:" >&2
      tail -n 20 "$DIR/log/clickhouse-server.err.log" "$DIR/log/stdout.log" >&2 2>/dev/null
      stop
      exit 1
    fi
    sleep 0.2
  done
  echo "clickhouse: running (pid $(cat "$PIDFILE"), data $DIR)" >&2
  echo "$URL"
}

status() {
  if alive && http_ok "$URL/ping"; then
    echo "clickhouse: running (pid $(cat "$PIDFILE")) $URL"; return 0
  fi
  echo "clickhouse: stopped"; return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  clean) stop; rm -rf "$DIR"; echo "clickhouse: removed $DIR" >&2 ;;
  url) echo "$URL" ;;
  version) command -v curl >/dev/null 2>&1 || die "curl is needed for version"; curl -sf --max-time 2 "$URL/?query=SELECT%20version()" ;;
  *) echo "usage: $0 start|stop|status|restart|clean|url|version" >&2; exit 2 ;;
esac
