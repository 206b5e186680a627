#!/usr/bin/env bash
# Prometheus (Debian 12 package `prometheus`, 2.42) on 127.0.0.1, for integration tests and
# benchmarks. Self-contained: installs the package with apt-get when `prometheus` is missing.
#
# Usage: prometheus.sh start|stop|status|restart|clean|url
#   start   install if missing, write prometheus.yml (unless PROMETHEUS_CONFIG), start, wait for
#           /-/ready, print the URL (only the URL) on stdout; progress goes to stderr
#   stop    SIGTERM to the saved pid, SIGKILL after 15 s (2.42 can hang while its remote_write
#           endpoint is gone; stop Prometheus before the receiver)
#   status  exit 0 when running, 3 when stopped
#   clean   stop, then delete PROMETHEUS_DIR
#
# Environment:
#   PROMETHEUS_DIR              data, config, log, pid (default: /tmp/kb-prometheus-$PORT)
#   PROMETHEUS_PORT             listen port on 127.0.0.1 (default 19090)
#   PROMETHEUS_CONFIG           use this prometheus.yml as is (the variables below are ignored)
#   PROMETHEUS_SCRAPE_TARGETS   comma list of 127.0.0.1:PORT (loopback only), job "targets"
#   PROMETHEUS_METRICS_PATH     default /metrics
#   PROMETHEUS_SCRAPE_PARAMS    URL parameters for the scrape, "k=v&k2=v2" (e.g. cluster=cluster-1)
#   PROMETHEUS_SCRAPE_INTERVAL  default 5s
#   PROMETHEUS_REMOTE_WRITE_URL remote_write URL (loopback only)
#   PROMETHEUS_REMOTE_WRITE_USERNAME / PROMETHEUS_REMOTE_WRITE_PASSWORD
#                               basic_auth; the password goes to a 0600 password_file, never
#                               into prometheus.yml or the output
#   PROMETHEUS_REMOTE_WRITE_HEADERS  "Name: value" pairs separated by ";" (e.g.
#                               "Cloud-Account-Id: ds-1")
#   PROMETHEUS_RETRY_429        queue_config.retry_on_http_429 (default false)
#   PROMETHEUS_RECEIVER         1 = --web.enable-remote-write-receiver (accept remote_write at
#                               /api/v1/write)
#   PROMETHEUS_START_TIMEOUT    seconds (default 30)
set -u

PORT=${PROMETHEUS_PORT:-19090}
DIR=${PROMETHEUS_DIR:-/tmp/kb-prometheus-$PORT}
INTERVAL=${PROMETHEUS_SCRAPE_INTERVAL:-5s}
TIMEOUT=${PROMETHEUS_START_TIMEOUT:-30}
PIDFILE=$DIR/prometheus.pid
URL=http://127.0.0.1:$PORT

die() { echo "prometheus.sh: error: $*" >&2; exit 1; }
alive() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ready() { curl -sf -o /dev/null --max-time 2 "$URL/-/ready"; }
is_loopback() { case "$1" in 127.*|localhost|\[::1\]) return 0 ;; *) return 1 ;; esac; }
yaml_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

need_prometheus() {
  command -v prometheus >/dev/null 2>&1 && return 0
  command -v curl >/dev/null 2>&1 || NEED_CURL=curl
  [ "$(id -u)" = 0 ] || die "prometheus is not installed and we are not root: apt-get install prometheus"
  echo "prometheus.sh: installing prometheus with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus ${NEED_CURL:-} >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && apt-get install -y -qq --no-install-recommends prometheus ${NEED_CURL:-} >/dev/null 2>&1; } \
    || die "apt-get install prometheus failed"
  command -v prometheus >/dev/null 2>&1 || die "prometheus still not on PATH after install"
}

write_config() {
  mkdir -p "$DIR/data"
  local cfg=$DIR/prometheus.yml
  {
    echo "global:"
    echo "  scrape_interval: $INTERVAL"
    echo "  evaluation_interval: $INTERVAL"
    echo "scrape_configs:"
    echo "  - job_name: prometheus"
    echo "    static_configs:"
    echo "      - targets: ['127.0.0.1:$PORT']"
    if [ -n "${PROMETHEUS_SCRAPE_TARGETS:-}" ]; then
      echo "  - job_name: targets"
      echo "    metrics_path: $(yaml_quote "${PROMETHEUS_METRICS_PATH:-/metrics}")"
      if [ -n "${PROMETHEUS_SCRAPE_PARAMS:-}" ]; then
        echo "    params:"
        local kv
        for kv in ${PROMETHEUS_SCRAPE_PARAMS//&/ }; do
          echo "      $(yaml_quote "${kv%%=*}"): [$(yaml_quote "${kv#*=}")]"
        done
      fi
      echo "    static_configs:"
      echo "      - targets:"
      local t
      for t in ${PROMETHEUS_SCRAPE_TARGETS//,/ }; do
        is_loopback "${t%:*}" || die "scrape target $t is not on loopback"
        echo "          - $(yaml_quote "$t")"
      done
    fi
    if [ -n "${PROMETHEUS_REMOTE_WRITE_URL:-}" ]; then
      local hostport=${PROMETHEUS_REMOTE_WRITE_URL#*://}; hostport=${hostport%%/*}
      is_loopback "${hostport%:*}" || die "remote_write URL is not on loopback"
      echo "remote_write:"
      echo "  - url: $(yaml_quote "$PROMETHEUS_REMOTE_WRITE_URL")"
      echo "    name: receiver"
      echo "    remote_timeout: 5s"
      if [ -n "${PROMETHEUS_REMOTE_WRITE_USERNAME:-}" ]; then
        ( umask 077; printf '%s' "${PROMETHEUS_REMOTE_WRITE_PASSWORD:-}" > "$DIR/rw_password" )
        echo "    basic_auth:"
        echo "      username: $(yaml_quote "$PROMETHEUS_REMOTE_WRITE_USERNAME")"
        echo "      password_file: $(yaml_quote "$DIR/rw_password")"
      fi
      if [ -n "${PROMETHEUS_REMOTE_WRITE_HEADERS:-}" ]; then
        echo "    headers:"
        local IFS=';' h
        for h in $PROMETHEUS_REMOTE_WRITE_HEADERS; do
          local name=${h%%:*} value=${h#*:}
          name=$(echo "$name" | tr -d '[:space:]'); value=${value# }
          [ -n "$name" ] && echo "      $(yaml_quote "$name"): $(yaml_quote "$value")"
        done
      fi
      echo "    queue_config:"
      echo "      batch_send_deadline: 1s"
      echo "      max_samples_per_send: 500"
      echo "      min_backoff: 100ms"
      echo "      max_backoff: 2s"
      echo "      retry_on_http_429: ${PROMETHEUS_RETRY_429:-false}"
      echo "    metadata_config:"
      echo "      send: true"
      echo "      send_interval: 1m"
    fi
  } > "$cfg"
  echo "$cfg"
}

stop() {
  if ! alive; then echo "prometheus: not running" >&2; rm -f "$PIDFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null
  local i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 75 ]; do sleep 0.2; i=$((i+1)); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "prometheus: still up after 15 s, SIGKILL $pid" >&2
    kill -9 "$pid" 2>/dev/null; sleep 0.3
  fi
  rm -f "$PIDFILE"
  echo "prometheus: stopped (pid $pid)" >&2
}

start() {
  if alive && ready; then
    echo "prometheus: already running (pid $(cat "$PIDFILE"))" >&2; echo "$URL"; return 0
  fi
  port_busy "$PORT" && die "port $PORT is already in use (set PROMETHEUS_PORT)"
  need_prometheus
  command -v curl >/dev/null 2>&1 || die "curl is required"
  mkdir -p "$DIR/data"
  local cfg
  if [ -n "${PROMETHEUS_CONFIG:-}" ]; then
    cfg=$PROMETHEUS_CONFIG; [ -f "$cfg" ] || die "PROMETHEUS_CONFIG $cfg not found"
  else
    cfg=$(write_config) || exit 1
  fi
  if command -v promtool >/dev/null 2>&1; then
    promtool check config "$cfg" > "$DIR/promtool.log" 2>&1 \
      || { cat "$DIR/promtool.log" >&2; die "invalid config $cfg"; }
  fi
  local extra=()
  [ "${PROMETHEUS_RECEIVER:-0}" = 1 ] && extra+=(--web.enable-remote-write-receiver)
  ( cd "$DIR" && exec prometheus \
      --config.file="$cfg" \
      --storage.tsdb.path="$DIR/data" \
      --storage.tsdb.retention.time=1d \
      --storage.remote.flush-deadline=5s \
      --web.listen-address="127.0.0.1:$PORT" \
      --web.enable-lifecycle \
      "${extra[@]}" ) > "$DIR/prometheus.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local end=$(( $(date +%s) + TIMEOUT ))
  until ready; do
    if ! alive || [ "$(date +%s)" -ge "$end" ]; then
      echo "prometheus: not ready after ${TIMEOUT}s; last log lines:" >&2
      tail -n 20 "$DIR/prometheus.log" >&2
      stop
      exit 1
    fi
    sleep 0.2
  done
  echo "prometheus: running (pid $(cat "$PIDFILE"), dir $DIR)" >&2
  echo "$URL"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status)
    if alive && ready; then echo "prometheus: running (pid $(cat "$PIDFILE")) $URL"; exit 0; fi
    echo "prometheus: stopped"; exit 3 ;;
  clean) stop; rm -rf "$DIR"; echo "prometheus: removed $DIR" >&2 ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|restart|clean|url" >&2; exit 2 ;;
esac
