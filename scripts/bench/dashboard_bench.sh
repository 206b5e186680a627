#!/usr/bin/env bash
# Server time of the dashboard's pages on the API benchmark's 1-year store (3 clusters x 2,000
# namespaces x 20,000 pods; see crates/kb-api/examples/api_bench_data.rs and api_bench.sh,
# which builds it into target/api-bench/store.db; this script builds it too when missing).
#
# Serves the API and the dashboard (crates/kb-dashboard/examples/dashboard_serve.rs: 2 tokio
# workers, clock fixed at the data's "now", audit log off) and, per page, with one client over
# loopback (curl's time_total, so transfer of the HTML is included):
#   - cold: the first request (API response cache empty for that page's reads);
#   - warm: WARM (20) more requests while the API's 60 s response cache holds the reads;
#   - then, restarted with the API cache off (--cache-ttl 0), NOCACHE (5) requests per page:
#     every request reads the store.
# Env: WARM (20), NOCACHE (5), REBUILD=1 regenerates the store.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# Where cargo puts the examples (CARGO_TARGET_DIR when set).
bin_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$root/target/api-bench"
mkdir -p "$work"
now=1749990600 # 2025-06-15T12:30:00Z, as api_bench.sh
warm=${WARM:-20}
nocache=${NOCACHE:-5}

(cd "$root" && cargo build -q --release -p kb-dashboard --examples && cargo build -q --release -p kb-api --examples)
if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$work/store.db" ] || [ ! -s "$work/store.done" ]; then
  rm -f "$work"/store.db* "$work/store.done"
  echo "generating the store (a few minutes)..." >&2
  "$bin_dir/release/examples/api_bench_data" "$work/store.db" "$now" >&2
  date -u +%FT%TZ >"$work/store.done"
fi

token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
server=
start_server() {
  KUBECOST_BRIDGE_ADMIN_TOKEN="$token" "$bin_dir/release/examples/dashboard_serve" "$work/store.db" \
    "127.0.0.1:$port" --now "$now" --workers 2 "$@" >"$work/dashboard_serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "$base/assets/dashboard.css" && return 0
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

pages=(
  "overview_7d|/?window=7d"
  "overview_30d|/?window=30d"
  "cluster_24h|/clusters/bench-1?window=24h"
  "cluster_7d|/clusters/bench-1?window=7d"
  "cluster_30d|/clusters/bench-1?window=30d"
  "cluster_lastmonth|/clusters/bench-1?window=lastmonth"
  "cluster_30d_by_namespace|/clusters/bench-1?window=30d&by=namespace"
  "cluster_30d_filter|/clusters/bench-1?window=30d&q=ns-01"
  "cluster_30d_by_name_page3|/clusters/bench-1?window=30d&sort=name&order=asc&page=3"
  "namespace_24h|/clusters/bench-1/namespaces/ns-0001?window=24h"
)
cookie="Cookie: kb_session=$token"
get() { curl -s -o "$2" -w '%{http_code} %{time_total}\n' -H "$cookie" "$base$1"; }
stats() { sort -n | awk '{a[NR]=$1*1000} END {printf "%.1f | %.1f | %.1f | %.1f", a[1], a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]}'; }

results="$work/dashboard_results.md"
{
  echo "| page | HTML bytes | cold ms | warm min | median | p90 | max ms | cache off min | median | p90 | max ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$results"

declare -A row
start_server
for p in "${pages[@]}"; do
  name=${p%%|*}; path=${p#*|}
  read -r code cold < <(get "$path" "$work/$name.html")
  [ "$code" = 200 ] || { echo "$name: HTTP $code" >&2; head -c 600 "$work/$name.html" >&2; exit 1; }
  : >"$work/$name.warm"
  for _ in $(seq "$warm"); do get "$path" /dev/null | awk '{print $2}' >>"$work/$name.warm"; done
  row[$name]="| $name | $(wc -c <"$work/$name.html") | $(awk -v c="$cold" 'BEGIN{printf "%.1f", c*1000}') | $(stats <"$work/$name.warm")"
  echo "${row[$name]}" >&2
done
stop_server

start_server --cache-ttl 0
for p in "${pages[@]}"; do
  name=${p%%|*}; path=${p#*|}
  : >"$work/$name.nocache"
  for _ in $(seq "$nocache"); do get "$path" /dev/null | awk '{print $2}' >>"$work/$name.nocache"; done
  echo "${row[$name]} | $(stats <"$work/$name.nocache") |" >>"$results"
  tail -1 "$results" >&2
done
stop_server
echo >>"$results"
echo "Load average when done: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)." >>"$results"
cat "$results"
