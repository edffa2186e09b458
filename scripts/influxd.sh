#!/usr/bin/env bash
# Builds InfluxDB 1.8.10 from the Go module proxy and caches the binary. 1.8 is the last
# line that builds without Rust (libflux) and it serves the v2 API (/api/v2/write, Flux)
# that influxdb-client-go/v2 speaks; Debian's 1.6 does not. Cold: ~2 min; warm: instant.
# Prints the path of influxd.
set -euo pipefail

VERSION=${INFLUXDB_VERSION:-1.8.10}
CACHE=${NECOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/necos}
OUT=$CACHE/influxdb/$VERSION
if [ -x "$OUT/influxd" ]; then echo "$OUT/influxd"; exit 0; fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [ -x "$OUT/influxd" ]; then echo "$OUT/influxd"; exit 0; fi
echo "building influxd $VERSION ..." >&2
GOBIN="$OUT/.gobin" GOFLAGS=-mod=mod GOWORK=off \
  go install -ldflags "-X main.version=$VERSION" "github.com/influxdata/influxdb/cmd/influxd@v$VERSION" >&2
mv "$OUT/.gobin/influxd" "$OUT/influxd"
rmdir "$OUT/.gobin" 2>/dev/null || true
echo "$OUT/influxd"
