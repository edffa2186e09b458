#!/usr/bin/env bash
# The slice benchmark through necosd: starts a private necosd (and InfluxDB) on the bench
# catalogue (libvirt's test driver, VXLAN links in network namespaces), runs
# `necosctl bench` for 1-part and 4-part slices, prints each table, and removes all it
# made. Its namespaces, ports and data are its own, so it runs beside other necosd.
# Run as root (the WAN plugin builds namespaces), after `make build`.
#
# Usage: scripts/bench.sh [-n SLICES] [-c CONCURRENCY[,CONCURRENCY...]] [-s STORED]
#   BENCH_PROFILE=DIR also saves a 20 s CPU profile of necosd taken during the last run.
#   -s STORED instead fills necosd with STORED 1-part slices (kept), then times the read
#   routes (necosctl bench routes), and prints necosd's RSS, the store's size on disk and
#   the time a restarted necosd takes to answer /readyz, and the Go heap each time
#   (with BENCH_PROFILE, a heap profile after the fill and another after the restart).
#   BENCH_STORE_COPY=DIR copies the filled store there (necosd stopped), to study offline.
set -euo pipefail
cd "$(dirname "$0")/.."
N=200
CONC=16
STORED=0
while getopts "n:c:s:" o; do
  case "$o" in
    n) N=$OPTARG ;;
    c) CONC=$OPTARG ;;
    s) STORED=$OPTARG ;;
    *) echo "usage: $0 [-n SLICES] [-c CONCURRENCY,...] [-s STORED]" >&2; exit 2 ;;
  esac
done
[ -x bin/necosd ] && [ -x bin/necosctl ] || { echo "bench.sh: run make build first" >&2; exit 1; }

# rss PID: resident memory, and how much of it is the process's own (anonymous: the Go heap
# and stacks) and how much mapped files (the binary, the store's memory-mapped database).
rss() { awk '/^VmRSS/ {t=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {printf "%d MB (anonymous %d MB, files %d MB)", t/1024, a/1024, f/1024}' "/proc/$1/status"; }
# goheap: the Go runtime's view of necosd's memory (its last GC's statistics), which tells
# the live heap from the memory the runtime holds and has not given back yet.
goheap() {
  curl -fsS "http://$DEBUG/debug/pprof/heap?debug=1" 2>/dev/null | awk '
    /^# HeapInuse = / {i=$4} /^# HeapIdle = / {d=$4} /^# HeapReleased = / {r=$4} /^# Sys = / {s=$4}
    END {printf "in use %d MB, idle %d MB (returned %d MB), from the OS %d MB", i/1048576, d/1048576, r/1048576, s/1048576}'
}
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

# The bench catalogue with namespaces of this run's own (necos-* -> $TAG-*), its InfluxDB,
# and its parts' SSH keys in its own directory: in vim-xen's default one, the keys of the
# slices a run keeps (-s) outlived the run, 130,000 files in one directory after a few
# runs, which made every later part's key write slower.
sed -e "s/necos-/$TAG-/g" -e "s#http://127.0.0.1:8086#http://$INFLUX#" \
  -e "s#^\( *\)uri: \"test:///default\"#&\n\1key_dir: \"$DIR/keys\"#" \
  examples/catalogue-bench.yaml >"$DIR/catalogue.yaml"
influx_pid=$(./scripts/influxdb.sh "$DIR/influxdb" "$INFLUX")

start_necosd() {
  bin/necosd --listen "$API" --data-dir "$DIR/data" --catalogue "$DIR/catalogue.yaml" \
    --debug-listen "$DEBUG" --log-level warn >>"$DIR/necosd.log" 2>&1 &
  necosd_pid=$!
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "http://$API/readyz" 2>/dev/null && return 0
    kill -0 "$necosd_pid" 2>/dev/null || { echo "necosd exited:" >&2; tail -20 "$DIR/necosd.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "necosd not ready after 30 s" >&2
  exit 1
}
start_necosd
export NECOS_SERVER=http://$API NECOS_TOKEN
NECOS_TOKEN=$(cat "$DIR/data/demo-token")

if [ "$STORED" -gt 0 ]; then
  echo "== filling: $STORED 1-part slices, kept, ${CONC%%,*} at a time"
  bin/necosctl bench -f examples/slices/core-dc-xen.yaml -n "$STORED" -c "${CONC%%,*}" --keep
  echo "== read routes with $STORED slices stored"
  bin/necosctl bench routes -n 200
  echo "== necosd RSS with $STORED slices stored: $(rss "$necosd_pid")"
  echo "== Go heap with $STORED slices stored: $(goheap)"
  if [ -n "${BENCH_PROFILE:-}" ]; then
    mkdir -p "$BENCH_PROFILE"
    curl -fsS -o "$BENCH_PROFILE/necosd-heap-s$STORED.pprof" "http://$DEBUG/debug/pprof/heap"
  fi
  echo "== store on disk: $(du -sh "$DIR/data/store" | cut -f1)"
  kill -TERM "$necosd_pid" && wait "$necosd_pid" 2>/dev/null || true
  if [ -n "${BENCH_STORE_COPY:-}" ]; then
    mkdir -p "$BENCH_STORE_COPY" && cp -a "$DIR/data/store" "$BENCH_STORE_COPY/"
  fi
  t0=$(date +%s%N)
  start_necosd
  echo "== restart to /readyz with $STORED slices stored: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  sleep 5
  echo "== necosd RSS 5 s after the restart: $(rss "$necosd_pid")"
  echo "== Go heap 5 s after the restart: $(goheap)"
  [ -z "${BENCH_PROFILE:-}" ] ||
    curl -fsS -o "$BENCH_PROFILE/necosd-heap-s$STORED-restarted.pprof" "http://$DEBUG/debug/pprof/heap"
  exit 0
fi

for c in ${CONC//,/ }; do
  for spec in examples/slices/core-dc-xen.yaml examples/slices/touristic-cdn-xen.yaml; do
    echo "== $(basename "$spec" .yaml), $N slices, $c at a time"
    prof_pid=""
    if [ -n "${BENCH_PROFILE:-}" ] && [ "$spec" = examples/slices/touristic-cdn-xen.yaml ]; then
      mkdir -p "$BENCH_PROFILE"
      (sleep 2; curl -fsS -o "$BENCH_PROFILE/necosd-cpu-c$c.pprof" "http://$DEBUG/debug/pprof/profile?seconds=20") &
      prof_pid=$!
    fi
    bin/necosctl bench -f "$spec" -n "$N" -c "$c"
    # Wait for the profile only: a bare wait would wait for necosd, which runs on.
    [ -z "$prof_pid" ] || wait "$prof_pid" || true
  done
done
echo "== necosd RSS after the runs: $(rss "$necosd_pid")"
