#!/usr/bin/env bash
# Runs a throwaway InfluxDB 1.x server (Debian's influxdb package, 1.6) on 127.0.0.1 for the
# kb-influx integration tests and the write benchmark. No systemd, no Docker: influxd runs as a
# child process with its config, data and log under INFLUXDB_DIR.
#
# Usage: scripts/services/influxdb.sh start|stop|status|restart|clean|url|version
#   start    install influxdb with apt-get if missing, start it, wait until /ping answers,
#            create the admin user (INFLUXDB_AUTH=1) and INFLUXDB_DB (when set), print the HTTP
#            URL on stdout (progress goes to stderr). Idempotent: when the server of this
#            INFLUXDB_DIR is already up, print its URL and exit 0.
#   stop     SIGTERM to the saved pid, SIGKILL after INFLUXDB_STOP_TIMEOUT seconds
#   status   exit 0 when running, 3 when stopped
#   restart  stop, then start (data is kept)
#   clean    stop, then delete INFLUXDB_DIR
#   url      print the HTTP URL
#   version  print the server version (server must be running)
#
# Environment:
#   INFLUXDB_DIR              config, meta, data, wal, log (default: $TMPDIR/kubecost-bridge-influxdb)
#   INFLUXDB_PORT             HTTP port (default 18086)
#   INFLUXDB_RPC_PORT         backup/restore RPC port (default 18088)
#   INFLUXDB_DB               database to create at start (optional; the store creates its own)
#   INFLUXDB_AUTH             1 = auth-enabled; the admin user below is created on first start
#   INFLUXDB_ADMIN_USER       admin user name (default admin)
#   INFLUXDB_ADMIN_PASSWORD   admin password (default admin); never printed
#   INFLUXDB_START_TIMEOUT    seconds to wait for readiness (default 30)
#   INFLUXDB_STOP_TIMEOUT     seconds before SIGKILL on stop (default 20)
#
# The server listens on 127.0.0.1 only (HTTP and RPC), with reporting, the _internal monitor
# database and query logging off.
set -u

DIR=${INFLUXDB_DIR:-${TMPDIR:-/tmp}/kubecost-bridge-influxdb}
PORT=${INFLUXDB_PORT:-18086}
RPC_PORT=${INFLUXDB_RPC_PORT:-18088}
AUTH=${INFLUXDB_AUTH:-0}
ADMIN_USER=${INFLUXDB_ADMIN_USER:-admin}
ADMIN_PASSWORD=${INFLUXDB_ADMIN_PASSWORD:-admin}
START_TIMEOUT=${INFLUXDB_START_TIMEOUT:-30}
STOP_TIMEOUT=${INFLUXDB_STOP_TIMEOUT:-20}
PIDFILE=$DIR/influxd.pid
URL=http://127.0.0.1:$PORT

die() { echo "influxdb.sh: error: $*" >&2; exit 1; }

alive() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ready() { curl -sf -o /dev/null --max-time 2 "$URL/ping"; }

server_bin() {
  command -v influxd 2>/dev/null && return 0
  [ -x /usr/bin/influxd ] && { echo /usr/bin/influxd; return 0; }
  [ -x /usr/sbin/influxd ] && { echo /usr/sbin/influxd; return 0; }
  return 1
}

# install_server: apt-get install influxdb (and curl, which this script uses) when missing.
install_server() {
  local pkgs=()
  server_bin >/dev/null || pkgs+=(influxdb)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "${pkgs[*]} not installed and apt-get is not available"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "${pkgs[*]} not installed; run as root or: apt-get install ${pkgs[*]}"
    sudo="sudo -n"
  fi
  echo "influxdb.sh: installing ${pkgs[*]} with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -qq >/dev/null 2>&1 \
         && $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; } \
    || die "apt-get install ${pkgs[*]} failed"
  server_bin >/dev/null || die "influxd is still missing after apt-get install"
  command -v curl >/dev/null 2>&1 || die "curl is still missing after apt-get install"
}

write_config() {
  mkdir -p "$DIR"/meta "$DIR"/data "$DIR"/wal
  chmod 700 "$DIR"
  local auth=false
  [ "$AUTH" = 1 ] && auth=true
  cat > "$DIR/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$RPC_PORT"

[meta]
  dir = "$DIR/meta"

[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$PORT"
  auth-enabled = $auth
  log-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"
EOF
}

# query STATEMENT [AUTH]: POST one InfluxQL statement; with AUTH=1 as the admin user. The
# credentials go to curl on stdin (a config file), never on the command line.
query() {
  if [ "${2:-0}" = 1 ]; then
    local u=${ADMIN_USER//\\/\\\\} p=${ADMIN_PASSWORD//\\/\\\\}
    u=${u//\"/\\\"}; p=${p//\"/\\\"}
    printf 'user = "%s:%s"\n' "$u" "$p" \
      | curl -sS --max-time 5 -K - -XPOST "$URL/query" --data-urlencode "q=$1"
  else
    curl -sS --max-time 5 -XPOST "$URL/query" --data-urlencode "q=$1"
  fi
}

stop() {
  if ! alive; then rm -f "$PIDFILE"; echo "influxdb: not running" >&2; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null
  local i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $(( STOP_TIMEOUT * 5 )) ]; do sleep 0.2; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "influxdb: still up after ${STOP_TIMEOUT}s, sending SIGKILL to $pid" >&2
    kill -9 "$pid" 2>/dev/null; sleep 0.5
  fi
  rm -f "$PIDFILE"
  echo "influxdb: stopped (pid $pid)" >&2
}

# fail MSG: stop the server this start launched, then exit 1.
fail() { echo "influxdb.sh: error: $*" >&2; stop; exit 1; }

start() {
  if alive && ready; then
    echo "influxdb: already running (pid $(cat "$PIDFILE"))" >&2
    echo "$URL"; return 0
  fi
  port_busy "$PORT" && die "port $PORT is already in use (set INFLUXDB_PORT)"
  port_busy "$RPC_PORT" && die "port $RPC_PORT is already in use (set INFLUXDB_RPC_PORT)"
  install_server
  local bin; bin=$(server_bin) || die "influxd binary not found"
  write_config
  ( cd "$DIR" && exec "$bin" -config "$DIR/influxdb.conf" ) > "$DIR/influxd.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local end=$(( $(date +%s) + START_TIMEOUT ))
  until ready; do
    if ! alive || [ "$(date +%s)" -ge "$end" ]; then
      echo "influxdb: not ready after ${START_TIMEOUT}s; last log lines:" >&2
      tail -n 20 "$DIR/influxd.log" >&2 2>/dev/null
      stop
      exit 1
    fi
    sleep 0.2
  done
  if [ "$AUTH" = 1 ]; then
    # The first admin can be created without credentials only while no user exists.
    if ! query "SHOW USERS" 1 | grep -q '"results"'; then
      local pw=${ADMIN_PASSWORD//\\/\\\\}
      pw=${pw//\'/\\\'}
      local user=${ADMIN_USER//\"/\\\"}
      query "CREATE USER \"$user\" WITH PASSWORD '$pw' WITH ALL PRIVILEGES" >/dev/null
      query "SHOW USERS" 1 | grep -q '"results"' \
        || fail "cannot authenticate as $ADMIN_USER (does $DIR hold other users? run clean)"
    fi
  fi
  if [ -n "${INFLUXDB_DB:-}" ]; then
    local db=${INFLUXDB_DB//\"/\\\"}
    query "CREATE DATABASE \"$db\"" "$AUTH" | grep -q '"error"' && fail "CREATE DATABASE $INFLUXDB_DB failed"
  fi
  echo "influxdb: running (pid $(cat "$PIDFILE"), auth=$AUTH, data $DIR)" >&2
  echo "$URL"
}

status() {
  if alive && ready; then
    echo "influxdb: running (pid $(cat "$PIDFILE")) $URL"; return 0
  fi
  echo "influxdb: stopped"; return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  clean) stop; rm -rf "$DIR"; echo "influxdb: removed $DIR" >&2 ;;
  url) echo "$URL" ;;
  version)
    command -v curl >/dev/null 2>&1 || die "curl is needed for version"
    curl -sfI --max-time 2 "$URL/ping" | tr -d '\r' | sed -n 's/^[Xx]-[Ii]nflux[Dd][Bb]-[Vv]ersion: //p'
    ;;
  *) echo "usage: $0 start|stop|status|restart|clean|url|version" >&2; exit 2 ;;
esac
