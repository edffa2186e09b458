#!/usr/bin/env bash
# Starts InfluxDB 1.8 (built and cached by scripts/influxd.sh) on a loopback address
# with its data under a directory, waits until it answers, and creates the E2E_SLICE
# database. Prints the influxd pid. Usage: scripts/influxdb.sh DATA_DIR [HOST:PORT]
set -euo pipefail

DIR=${1:?usage: influxdb.sh DATA_DIR [HOST:PORT]}
ADDR=${2:-127.0.0.1:8086}
HOST=${ADDR%:*}
PORT=${ADDR##*:}
case "$HOST" in
  127.*|localhost|::1) ;;
  *) echo "influxdb.sh: binds loopback addresses only, not $HOST" >&2; exit 1 ;;
esac
INFLUXD=$("$(dirname "$0")/influxd.sh")

if curl -fsS -o /dev/null "http://$ADDR/ping" 2>/dev/null; then
  echo "influxdb already answers on $ADDR" >&2
  echo 0
  exit 0
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
cat > "$DIR/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "$HOST:$((PORT + 2))"
[meta]
  dir = "$DIR/meta"
[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
  query-log-enabled = false
[http]
  bind-address = "$ADDR"
  flux-enabled = true
  log-enabled = false
[monitor]
  store-enabled = false
CONF
"$(dirname "$0")"/detach.sh setsid "$INFLUXD" -config "$DIR/influxdb.conf" </dev/null >"$DIR/influxd.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  if curl -fsS -o /dev/null "http://$ADDR/ping" 2>/dev/null; then
    curl -fsS -o /dev/null -XPOST "http://$ADDR/query" --data-urlencode "q=CREATE DATABASE E2E_SLICE"
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { echo "influxd exited; see $DIR/influxd.log" >&2; tail -20 "$DIR/influxd.log" >&2; exit 1; }
  sleep 0.1
done
echo "influxd did not answer on $ADDR within 30 s; see $DIR/influxd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
