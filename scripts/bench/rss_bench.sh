#!/usr/bin/env bash
# Peak memory of `kubecost-bridge extract` on one allocation response of at least 1 GiB.
#
# Starts the simulator with one cluster of PODS pods (default 540000: about 1.05 GiB for one
# hour at the extractor's aggregate), measures the response's size with curl, then extracts
# that hour over loopback HTTP into a fresh SQLite store under /usr/bin/time -v and prints the
# peak RSS, the wall time and the rows stored.
#
# Usage: scripts/bench/rss_bench.sh [PODS]   (build first: cargo build --release -p kubecost-bridge)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/target/release/kubecost-bridge}
pods=${1:-540000}
work=$(mktemp -d -t kb-rss-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" simulate --listen "127.0.0.1:$port" --clusters 1 --pods "$pods" >"$work/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
now=$(date +%s); start=$((now - now % 3600 - 7200)); end=$((start + 3600))
window="$(date -u -d @$start +%FT%TZ),$(date -u -d @$end +%FT%TZ)"
bytes=$(curl -s -o /dev/null -w '%{size_download}' \
  "http://127.0.0.1:$port/model/allocation?window=$window&aggregate=cluster,namespace,pod,controllerKind,controller,node&accumulate=true&idle=true&shareIdle=false")
cat >"$work/bridge.yaml" <<YAML
kubecost:
  endpoint: http://127.0.0.1:$port
cloudtuner:
  storage:
    sqlite: $work/bridge.db
extract:
  request_timeout: 900s
YAML
/usr/bin/time -v "$bin" --log warn extract --config "$work/bridge.yaml" --window "$window" \
  >"$work/out.txt" 2>"$work/time.txt"
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
echo "response: $bytes bytes ($(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1073741824}') GiB), $pods pods"
cat "$work/out.txt"
echo "peak RSS: $rss_kib KiB ($(awk -v k="$rss_kib" 'BEGIN{printf "%.1f", k/1024}') MiB), wall $wall"
