#!/usr/bin/env bash
# Builds the container images the Kubernetes nodes run, without a registry: the project's
# own Go programs (images/) and files of Debian packages, assembled by images/build into
# one archive that every node imports (ctr images import). Cached under $NECOS_CACHE by a
# hash of the inputs (sources, go.sum, the Debian packages' versions). Cold: ~1 min.
#
#   necos.local/pause:3.10          the pod sandbox (images/pause)
#   necos.local/busybox:1.35        a shell and the usual tools (Debian busybox-static):
#                                   what the plugin's command Jobs run
#   necos.local/mosquitto:2.0.11    the MQTT broker (Debian mosquitto), port 1883
#   necos.local/iot-agent:0.1.0     the IoT agent (images/iot-agent), HTTP on 8080
#   necos.local/iot-core:0.1.0      the IoT slice's core (images/iot-core): telemetry store
#                                   and device manager, or the GUI; HTTP on 8080
#   necos.local/necos-cdn:0.1.0     the Touristic CDN's server (cmd/necos-cdn), HTTP on 8080
#
# Prints the archive's path (NECOS_IMAGES).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/go/bin ] && export PATH=/usr/local/go/bin:$PATH

CACHE=${NECOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/necos}
DEBS=(busybox-static mosquitto)
# Alternatives the closure lists that must not be unpacked over the ones used.
SKIP=" libelogind0 "

versions=$(apt-cache policy "${DEBS[@]}" 2>/dev/null | sed -n 's/^ *Candidate: //p' | tr '\n' ' ')
inputs=$( { find images cmd/necos-cdn -type f | LC_ALL=C sort | xargs sha256sum; sha256sum scripts/images.sh go.sum; echo "$versions"; } | sha256sum | cut -c1-16)
OUT=$CACHE/images/$inputs
if [ -f "$OUT/images.tar" ]; then echo "$OUT/images.tar"; exit 0; fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [ -f "$OUT/images.tar" ]; then echo "$OUT/images.tar"; exit 0; fi

work=$(mktemp -d "$CACHE/images-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Debian packages: the programs' and all they depend on, unpacked into one root that the
# builder takes programs and their libraries from.
debdir=$CACHE/debs
mkdir -p "$debdir" "$work/root"
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${DEBS[@]}" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u)
[ "${#closure[@]}" -ge "${#DEBS[@]}" ] || { echo "images.sh: apt-cache knows no ${DEBS[*]} (apt-get update?)" >&2; exit 1; }
( cd "$debdir"
  for p in "${closure[@]}"; do
    case "$SKIP" in *" $p "*) continue ;; esac
    ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq -o APT::Sandbox::User=root "$p" >&2
  done )
for p in "${closure[@]}"; do
  case "$SKIP" in *" $p "*) continue ;; esac
  deb=$(ls -t "$debdir/${p}"_*.deb | head -1)
  dpkg-deb -x "$deb" "$work/root"
done

# The project's programs, static.
mkdir -p "$work/bin"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$work/bin/" ./images/pause ./images/iot-agent ./images/iot-core ./cmd/necos-cdn

bb=$work/root/bin/busybox
links=$("$bb" --list-full | grep -vx "bin/busybox" | sed 's#^#/#' | while read -r p; do printf '"%s": "/bin/busybox",' "$p"; done)
cat > "$work/spec.json" <<JSON
[
  {"name": "necos.local/pause:3.10",
   "files": [{"src": "$work/bin/pause", "dst": "/pause", "mode": 493}],
   "entrypoint": ["/pause"]},
  {"name": "necos.local/busybox:1.35",
   "files": [{"src": "$bb", "dst": "/bin/busybox", "mode": 493}],
   "symlinks": {${links%,}},
   "dirs": ["/tmp", "/root", "/etc"],
   "text": {"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "/etc/group": "root:x:0:\nnogroup:x:65534:\n"},
   "cmd": ["sh"]},
  {"name": "necos.local/mosquitto:2.0.11",
   "elf_root": "$work/root", "elf": ["/usr/sbin/mosquitto"],
   "dirs": ["/tmp"],
   "text": {"/etc/mosquitto/mosquitto.conf": "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n",
            "/etc/passwd": "root:x:0:0:root:/root:/bin/false\nmosquitto:x:1883:1883:mosquitto:/nonexistent:/bin/false\n",
            "/etc/group": "root:x:0:\nmosquitto:x:1883:\n"},
   "env": ["LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"],
   "user": "1883:1883",
   "ports": ["1883/tcp"],
   "entrypoint": ["/usr/sbin/mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]},
  {"name": "necos.local/iot-agent:0.1.0",
   "files": [{"src": "$work/bin/iot-agent", "dst": "/iot-agent", "mode": 493}],
   "dirs": ["/tmp"],
   "user": "65534:65534",
   "ports": ["8080/tcp"],
   "entrypoint": ["/iot-agent"]},
  {"name": "necos.local/iot-core:0.1.0",
   "files": [{"src": "$work/bin/iot-core", "dst": "/iot-core", "mode": 493}],
   "dirs": ["/tmp"],
   "user": "65534:65534",
   "ports": ["8080/tcp"],
   "entrypoint": ["/iot-core"],
   "cmd": ["store"]},
  {"name": "necos.local/necos-cdn:0.1.0",
   "files": [{"src": "$work/bin/necos-cdn", "dst": "/necos-cdn", "mode": 493}],
   "dirs": ["/tmp", "/cdn"],
   "user": "65534:65534",
   "ports": ["8080/tcp"],
   "entrypoint": ["/necos-cdn"]}
]
JSON
go run ./images/build -o "$OUT/images.tar" "$work/spec.json" >&2
echo "$OUT/images.tar"
