#!/usr/bin/env bash
# The slice benchmark through necosd: starts a private necosd (and InfluxDB) on the bench
# catalogue (libvirt's test driver, VXLAN links in network namespaces), runs
# `necosctl bench` for 1-part and 4-part slices, prints each table, and removes all it
# made. Its namespaces, ports and data are its own, so it runs beside other necosd.
# Run as root (the WAN plugin builds namespaces), after `make build`.
#
# Usage: scripts/bench.sh [-n SLICES] [-c CONCURRENCY[,CONCURRENCY...]]
#   BENCH_PROFILE=DIR also saves a 20 s CPU profile of necosd taken during the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=200
CONC=16
while getopts "n:c:" o; do
  case "$o" in
    n) N=$OPTARG ;;
    c) CONC=$OPTARG ;;
    *) echo "usage: $0 [-n SLICES] [-c CONCURRENCY,...]" >&2; exit 2 ;;
  esac
done
[ -x bin/necosd ] && [ -x bin/necosctl ] || { echo "bench.sh: run make build first" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TAG=nb$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
DIR=$(mktemp -d "/tmp/necos-bench-$TAG.XXXX")
API=127.0.0.1:$(free_port)
INFLUX=127.0.0.1:$(free_port)
DEBUG=127.0.0.1:$(free_port)

necosd_pid="" influx_pid=""
cleanup() {
  [ -n "$necosd_pid" ] && kill -TERM "$necosd_pid" 2>/dev/null && wait "$necosd_pid" 2>/dev/null
  [ -n "$influx_pid" ] && [ "$influx_pid" != 0 ] && kill "$influx_pid" 2>/dev/null
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG-" || true); do
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bench catalogue with namespaces of this run's own (necos-* -> $TAG-*) and its InfluxDB.
sed -e "s/necos-/$TAG-/g" -e "s#http://127.0.0.1:8086#http://$INFLUX#" \
  examples/catalogue-bench.yaml >"$DIR/catalogue.yaml"
influx_pid=$(./scripts/influxdb.sh "$DIR/influxdb" "$INFLUX")

bin/necosd --listen "$API" --data-dir "$DIR/data" --catalogue "$DIR/catalogue.yaml" \
  --debug-listen "$DEBUG" --log-level warn >"$DIR/necosd.log" 2>&1 &
necosd_pid=$!
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://$API/readyz" 2>/dev/null && break
  kill -0 "$necosd_pid" 2>/dev/null || { echo "necosd exited:" >&2; tail -20 "$DIR/necosd.log" >&2; exit 1; }
  sleep 0.1
done
export NECOS_SERVER=http://$API NECOS_TOKEN
NECOS_TOKEN=$(cat "$DIR/data/demo-token")

for c in ${CONC//,/ }; do
  for spec in examples/slices/core-dc-xen.yaml examples/slices/touristic-cdn-xen.yaml; do
    echo "== $(basename "$spec" .yaml), $N slices, $c at a time"
    if [ -n "${BENCH_PROFILE:-}" ] && [ "$spec" = examples/slices/touristic-cdn-xen.yaml ]; then
      mkdir -p "$BENCH_PROFILE"
      (sleep 2; curl -fsS -o "$BENCH_PROFILE/necosd-cpu-c$c.pprof" "http://$DEBUG/debug/pprof/profile?seconds=20") &
    fi
    bin/necosctl bench -f "$spec" -n "$N" -c "$c"
    wait
  done
done
echo "== necosd RSS after the runs: $(awk '/VmRSS/ {print $2, $3}' /proc/$necosd_pid/status)"
