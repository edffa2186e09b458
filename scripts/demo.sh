#!/usr/bin/env bash
# `make demo`: the NECOS MUSTS demo on this machine, one command (docs/demo.md). Uses the
# necosd serving at $NECOS_SERVER (default http://127.0.0.1:8080) when there is one;
# else starts one with scripts/run.sh (the default catalogue: real guests under QEMU;
# the demo's two tenants, cdn and iot, besides demo) in the background, runs
# `bin/necosctl demo` against it, and stops it (and only it) at the end.
# Arguments go to `necosctl demo` (e.g. --keep). Run as root, from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${NECOS_SERVER:-http://127.0.0.1:8080}
up() { curl -fsS -o /dev/null "$SERVER/readyz" 2>/dev/null; }
if ! up; then
  log=$(mktemp /tmp/necos-demo-run.XXXXXX)
  echo "demo: starting necosd with scripts/run.sh (log: $log); the first run builds everything" >&2
  ./scripts/run.sh --tenants demo,cdn,iot >"$log" 2>&1 &
  runner=$!
  trap 'kill -TERM "$runner" 2>/dev/null; wait "$runner" 2>/dev/null || true' EXIT
  # A cold machine builds InfluxDB and the guest image first: allow 30 minutes.
  for _ in $(seq 1800); do
    up && break
    kill -0 "$runner" 2>/dev/null || { echo "demo: necosd did not start:" >&2; tail -30 "$log" >&2; exit 1; }
    sleep 1
  done
  up || { echo "demo: necosd not ready after 30 minutes (log: $log)" >&2; exit 1; }
fi
[ -x bin/necosctl ] || make build
bin/necosctl --server "$SERVER" demo "$@"
