#!/usr/bin/env bash
# Runs schemathesis (from PyPI, in a cached venv under target/) against the cost API's OpenAPI
# document with every check.
#
# Usage:
#   BASE_URL=http://127.0.0.1:8080 TOKEN=... scripts/api_schemathesis.sh   # a running API
#   scripts/api_schemathesis.sh                                          # self-contained
#
# scripts/test (the README's test command, which CI runs) runs it self-contained with a fixed
# seed (SEED=1), so a CI run is reproducible; leave SEED unset for a fresh random exploration.
#
# Self-contained (no BASE_URL): builds kb-api's examples, writes a small demo store (3 clusters,
# 30 namespaces, 60 days, 300 pods, through the store's write ports), serves it on a free
# loopback port with a random bootstrap admin token, runs schemathesis and stops the server.
#
# Env: MAX_EXAMPLES (default 30 per operation), SCHEMATHESIS_VERSION (default ">=4,<5"),
# SEED (schemathesis's --seed), EXTRA_ARGS (appended to `schemathesis run`).
#
# The config (target/api-schemathesis/schemathesis.toml) adds 400 to the statuses
# `positive_data_acceptance` accepts: OpenAPI cannot express the API's cross-parameter rules
# (start before end, window or start/end not both, at most 10,000 series buckets), so a
# request valid parameter by parameter may still be refused, with the documented 400.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Where cargo puts the examples (CARGO_TARGET_DIR when set).
bin_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$root/target/api-schemathesis"
venv="$root/target/api-schemathesis-venv"
mkdir -p "$work"

if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis${SCHEMATHESIS_VERSION:->=4,<5}"
fi

server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ -z "${BASE_URL:-}" ]; then
  (cd "$root" && cargo build -q --locked -p kb-api --examples)
  now=1749990600 # 2025-06-15T12:30:00Z: the demo data ends with that day
  if [ ! -s "$work/demo.db" ]; then
    rm -f "$work"/demo.db*
    "$bin_dir/debug/examples/api_bench_data" "$work/demo.db" "$now" 30 60 300 >"$work/gen.log" 2>&1
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  KUBECOST_BRIDGE_ADMIN_TOKEN="$TOKEN" "$bin_dir/debug/examples/serve" "$work/demo.db" \
    "127.0.0.1:$port" --now "$now" --audit "$work/audit.log" >"$work/serve.log" 2>&1 &
  server=$!
  BASE_URL="http://127.0.0.1:$port"
fi
TOKEN=${TOKEN:-${KUBECOST_BRIDGE_ADMIN_TOKEN:-}}
if [ -z "$TOKEN" ]; then
  echo "set TOKEN (an API key with the admin scope) or KUBECOST_BRIDGE_ADMIN_TOKEN" >&2
  exit 2
fi

cat >"$work/schemathesis.toml" <<'TOML'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404"]
TOML

cd "$work"
# shellcheck disable=SC2086
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$BASE_URL/api/v1/openapi.json" \
  --checks all \
  -H "Authorization: Bearer $TOKEN" \
  --max-examples "${MAX_EXAMPLES:-30}" \
  --wait-for-schema 60 \
  --request-timeout 30 \
  --output-sanitize true \
  ${SEED:+--seed "$SEED"} \
  ${EXTRA_ARGS:-}
