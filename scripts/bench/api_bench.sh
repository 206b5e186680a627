#!/usr/bin/env bash
# Benchmark of the cost API over loopback.
#
# 1. Builds kb-api's examples (release) and, once (cached in target/api-bench/store.db), a store
#    with one year of data for 3 clusters x 2,000 namespaces x 20,000 pods rolled up into
#    summaries, plus the last 24 h of raw pod rows (see crates/kb-api/examples/api_bench_data.rs).
# 2. Serves it (examples/serve: 2 tokio workers, clock fixed at the data's "now", response
#    cache on with its default 60 s ttl, audit log to a file).
# 3. Per endpoint: one cold request (cache empty: the real store read), then
#    - `wrk` paced to RATE req/s or a little more (default 1000; RATE/40+1 connections, each waiting 19 ms
#      between requests: scripts/bench/api_pace.lua) -> achieved rate, p50, p99;
#    - `wrk` closed loop (2 threads, 16 connections) -> max throughput, p50, p99.
#    wrk sends no Accept-Encoding, so answers are uncompressed (gzip is served to clients that
#    ask for it).
#    Then the 30-day namespace breakdown again with the cache off (every request reads SQLite).
# The load generator shares the machine's cores with the server (2 cores on the dev box).
#
# Usage: scripts/bench/api_bench.sh            (needs wrk: apt-get install wrk)
# Env: RATE (1000), DURATION (15), REBUILD=1 regenerates the store.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# Where cargo puts the examples (CARGO_TARGET_DIR when set).
bin_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$root/target/api-bench"
mkdir -p "$work"
rate=${RATE:-1000}
duration=${DURATION:-15}
now=1749990600 # 2025-06-15T12:30:00Z
command -v wrk >/dev/null || { echo "missing wrk (apt-get install -y wrk)" >&2; exit 2; }

(cd "$root" && cargo build -q --release -p kb-api --examples)
if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$work/store.db" ] || [ ! -s "$work/store.done" ]; then
  rm -f "$work"/store.db* "$work/store.done"
  echo "generating the store (a few minutes)..." >&2
  /usr/bin/time -f '%e s, %M KiB peak' "$bin_dir/release/examples/api_bench_data" "$work/store.db" "$now" \
    2>&1 | tee "$work/gen.log" >&2
  date -u +%FT%TZ >"$work/store.done"
fi

token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server=
start_server() {
  KUBECOST_BRIDGE_ADMIN_TOKEN="$token" "$bin_dir/release/examples/serve" "$work/store.db" \
    "127.0.0.1:$port" --now "$now" --workers 2 --audit "$work/audit.log" "$@" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/api/v1/openapi.json" && return 0
    sleep 0.1
  done
  echo "server did not start" >&2
  exit 1
}
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=
}
trap stop_server EXIT

base="http://127.0.0.1:$port"
auth="Authorization: Bearer $token"
endpoints=(
  "namespaces_30d|/api/v1/costs/kubernetes/bench-1/namespaces?window=30d&limit=2000"
  "namespaces_30d_top100|/api/v1/costs/kubernetes/bench-1/namespaces?window=30d&limit=100"
  "cluster_30d|/api/v1/costs/kubernetes/bench-1?window=30d"
  "clusters_30d|/api/v1/costs/kubernetes?window=30d"
  "teams_30d|/api/v1/costs/kubernetes/bench-1/teams?window=30d"
  "namespaces_365d|/api/v1/costs/kubernetes/bench-1/namespaces?window=365d&limit=2000"
  "workloads_24h|/api/v1/costs/kubernetes/bench-1/workloads?window=24h&limit=100"
  "anomalies_30d|/api/v1/costs/kubernetes/bench-1/anomalies?window=30d"
  "focus_24h|/api/v1/export/focus?window=24h&cluster=bench-1"
)

ms() { awk '{ v=$1; u=$2; if (u ~ /^us/) v/=1000; else if (u ~ /^s$/) v*=1000; printf "%.2f", v }'; }
wrk_stat() { # $1 = file, $2 = percentile label (50% / 99%)
  grep -E "^ +$2 " "$1" | awk '{print $2}' | sed -E 's/([0-9.]+)(us|ms|s)/\1 \2/' | ms
}

results="$work/results.md"
{
  echo "| endpoint | response bytes | cold ms | paced ~${rate}/s: req/s | p50 ms | p99 ms | closed loop req/s | p50 ms | p99 ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$results"

: >"$work/audit.log"
start_server
for e in "${endpoints[@]}"; do
  name=${e%%|*}; path=${e#*|}
  cold=$(curl -s -o "$work/$name.body" -w '%{time_total}' -H "$auth" "$base$path" | awk '{printf "%.1f", $1*1000}')
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "$base$path")
  [ "$code" = 200 ] || { echo "$name: HTTP $code" >&2; cat "$work/$name.body" >&2; exit 1; }
  bytes=$(wc -c <"$work/$name.body")
  # Fixed rate: connections that each pace their requests 19 ms apart (see api_pace.lua).
  PACE_MS=19 wrk -t2 -c$((rate / 40 + 1)) -d"${duration}s" --latency -s "$root/scripts/bench/api_pace.lua" \
    -H "$auth" "$base$path" >"$work/$name.paced" 2>&1
  wrk -t2 -c16 -d"${duration}s" --latency -H "$auth" "$base$path" >"$work/$name.wrk" 2>&1
  prps=$(grep -E "^Requests/sec" "$work/$name.paced" | awk '{printf "%.0f", $2}')
  wrps=$(grep -E "^Requests/sec" "$work/$name.wrk" | awk '{printf "%.0f", $2}')
  echo "| $name | $bytes | $cold | $prps | $(wrk_stat "$work/$name.paced" 50%) | $(wrk_stat "$work/$name.paced" 99%) | $wrps | $(wrk_stat "$work/$name.wrk" 50%) | $(wrk_stat "$work/$name.wrk" 99%) |" >>"$results"
  tail -1 "$results" >&2
done
stop_server

# The 30-day namespace breakdown with the cache off: every request reads the store.
start_server --cache-ttl 0
path="/api/v1/costs/kubernetes/bench-1/namespaces?window=30d&limit=2000"
: >"$work/nocache.times"
for _ in $(seq "${NOCACHE_REQUESTS:-10}"); do
  curl -s -o /dev/null -w '%{time_total}\n' -H "$auth" "$base$path" >>"$work/nocache.times"
done
{
  echo
  echo "Cache off, namespaces_30d, one client, ${NOCACHE_REQUESTS:-10} requests (ms):" \
    "$(sort -n "$work/nocache.times" | awk '{a[NR]=$1*1000} END {printf "min %.0f, median %.0f, max %.0f", a[1], a[int((NR+1)/2)], a[NR]}')."
  echo "Audit lines written: $(wc -l <"$work/audit.log"), dropped: see /api/v1/admin/keys."
  echo "Load average when done: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)."
} >>"$results"
stop_server
cat "$results"
