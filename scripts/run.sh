#!/usr/bin/env bash
# The main job: builds necos and runs necosd on its embedded defaults — the slice
# database under ./data, the plugins in bin/plugins, the example catalogue of five
# providers (real guests under QEMU, VXLAN links in network namespaces, InfluxDB
# monitoring), the API on 127.0.0.1:8080. Extra arguments go to necosd
# (--catalogue examples/catalogue-bench.yaml: the same sites on libvirt's test driver).
#
#   ./scripts/run.sh --kubernetes [necosd args...]
# also runs a Kubernetes cluster with real nodes on this machine (bin/necos-kube: the
# control plane on 127.0.0.1, two nodes — containerd, kubelet, kube-proxy — in network
# namespaces of their own; the binaries and images are built once by scripts/ and
# cached, ~20 min cold), writes its kubeconfig where examples/catalogue-kubernetes.yaml
# expects it (data/kubernetes/) and runs necosd with that catalogue: Kubernetes
# providers next to the libvirt ones.
#
# Stopping it (Ctrl-C, SIGTERM) stops everything it started: necosd, the cluster and its
# namespaces, InfluxDB. necosd itself removes, as it stops, the sites' network namespaces
# the WAN plugin built, except those a slice still uses (kept, and logged with the slices;
# `necosctl sites release` does it while necosd runs, --keep-sites keeps them); run.sh then
# removes any site namespace left unused (a necosd that could not stop cleanly).
#
# To run a second one beside another, give it its own of everything: NECOS_RUN_DATA (data
# directory, default data), NECOS_RUN_LISTEN (API, default 127.0.0.1:8080),
# NECOS_RUN_INFLUX (InfluxDB, default 127.0.0.1:8086), NECOS_RUN_NETNS (prefix of the
# sites' namespaces, default necos). Any of them set runs necosd on a copy of the
# catalogue under the data directory, rewritten to match.
#
# Run as root: the WAN plugin builds the federation's network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
kube=""
if [ "${1:-}" = --kubernetes ]; then
  kube=1
  shift
fi
DATA=${NECOS_RUN_DATA:-data}
LISTEN=${NECOS_RUN_LISTEN:-127.0.0.1:8080}
INFLUX=${NECOS_RUN_INFLUX:-127.0.0.1:8086}
NETNS=${NECOS_RUN_NETNS:-necos}

./scripts/setup.sh
[ -d /usr/local/go/bin ] && export PATH=/usr/local/go/bin:$PATH
if [ "$(id -u)" -ne 0 ]; then
  echo "warning: not root: links between sites (network namespaces) will fail" >&2
fi

make build
# Real guests: libvirt's QEMU driver and the project's guest image (the default catalogue
# boots it; cold, the image takes about 10 s to build).
./scripts/qemu.sh >/dev/null
export NECOS_GUEST_IMAGE=$(./scripts/guest-image.sh)
if [ -n "$kube" ]; then
  # What the cluster runs, as scripts/test.sh builds it (cached: instant when warm).
  export KUBEBUILDER_ASSETS=$(./scripts/kube-binaries.sh)
  export NECOS_KUBE_NODE=$(./scripts/node-binaries.sh)
  export NECOS_IMAGES=$(./scripts/images.sh)
fi

# The catalogue: the embedded default, or the Kubernetes one; a copy rewritten for this
# run's own namespaces, InfluxDB and data directory when any of them is not the default.
catalogue=examples/catalogue.yaml
necosd_args=()
[ -n "$kube" ] && catalogue=examples/catalogue-kubernetes.yaml
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
if [ -n "${NECOS_RUN_DATA:-}${NECOS_RUN_LISTEN:-}${NECOS_RUN_INFLUX:-}${NECOS_RUN_NETNS:-}" ]; then
  # Relative paths stay relative to the catalogue: ../data/X (run.sh's data directory,
  # seen from examples/) is X seen from the copy in the data directory.
  sed -e "s/netns: necos-/netns: $NETNS-/" -e "s/\"necos-\*\"/\"$NETNS-*\"/" -e "s#http://127.0.0.1:8086#http://$INFLUX#" -e "s#\.\./data/##" \
    "$catalogue" >"$DATA/catalogue.yaml"
  catalogue=$DATA/catalogue.yaml
  necosd_args=(--catalogue "$catalogue" --data-dir "$DATA" --listen "$LISTEN")
elif [ -n "$kube" ]; then
  necosd_args=(--catalogue "$catalogue")
fi

necosd_pid="" kube_pid="" influx_pid=""
# site_namespaces lists the namespaces the catalogue's WAN provider builds (its sites'
# and its underlay's) that exist.
site_namespaces() {
  local want
  want=$(sed -n -e 's/.*netns: \([A-Za-z0-9_.-]*\)}.*/\1/p' -e 's/.*underlay_netns: \([A-Za-z0-9_.-]*\).*/\1/p' "$catalogue" | sort -u)
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    grep -qxF "$ns" <<<"$want" && echo "$ns"
  done
  true
}
# in_use says whether a site's namespace holds more than what the WAN plugin built for
# the site itself (lo, its underlay veth wan0): a slice's bridge, VXLAN device or guest.
in_use() {
  ip -n "$1" -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -qvxE 'lo|wan0'
}
cleanup() {
  if [ -n "$necosd_pid" ]; then
    kill -TERM "$necosd_pid" 2>/dev/null && wait "$necosd_pid" 2>/dev/null
  fi
  if [ -n "$kube_pid" ]; then
    echo "stopping the Kubernetes cluster ..." >&2
    kill -TERM "$kube_pid" 2>/dev/null && wait "$kube_pid" 2>/dev/null
  fi
  [ -n "$influx_pid" ] && [ "$influx_pid" != 0 ] && kill "$influx_pid" 2>/dev/null
  # The sites' namespaces no slice uses any more, then the underlay when no site is left.
  local kept=() underlay=""
  for ns in $(site_namespaces); do
    if grep -q "underlay_netns: $ns\b" "$catalogue"; then
      underlay=$ns
    elif in_use "$ns"; then
      kept+=("$ns")
    else
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
  if [ "${#kept[@]}" -gt 0 ]; then
    echo "kept the namespaces of sites that slices still use (${kept[*]}); delete the slices" \
      "with necosctl while necosd runs, or remove them with: ip netns delete NAME" >&2
  elif [ -n "$underlay" ]; then
    ip netns delete "$underlay" 2>/dev/null || true
  fi
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

influx_pid=$(./scripts/influxdb.sh "$DATA/influxdb" "$INFLUX")

if [ -n "$kube" ]; then
  # The kubeconfig files the catalogue names, relative to the catalogue file.
  kubeconfigs=()
  catdir=$(dirname "$catalogue")
  for k in $(sed -n 's/^ *kubeconfig: *\([^ #]*\).*/\1/p' "$catalogue" | sort -u); do
    case "$k" in /*) ;; *) k=$catdir/$k ;; esac
    rm -f "$k"
    kubeconfigs+=(--kubeconfig "$k")
  done
  mkdir -p "$DATA/kubernetes"
  echo "starting a Kubernetes cluster with two real nodes (log: $DATA/kubernetes/necos-kube.log) ..." >&2
  ./scripts/detach.sh bin/necos-kube --nodes 2 "${kubeconfigs[@]}" >"$DATA/kubernetes/necos-kube.log" 2>&1 &
  kube_pid=$!
  until grep -q "ready in" "$DATA/kubernetes/necos-kube.log" 2>/dev/null; do
    if ! kill -0 "$kube_pid" 2>/dev/null; then
      kube_pid=""
      echo "the Kubernetes cluster did not start:" >&2
      tail -20 "$DATA/kubernetes/necos-kube.log" >&2
      exit 1
    fi
    sleep 1
  done
  cat "$DATA/kubernetes/necos-kube.log" >&2
fi

if [ -n "$kube" ]; then
  try="  bin/necosctl slice create -f examples/slices/iot-dojot.yaml --wait
  bin/necosctl service deploy -f examples/services/iot-dojot.yaml --wait
  bin/necosctl slice create -f examples/slices/touristic-cdn-xen.yaml --wait"
else
  try="  bin/necosctl slice create -f examples/slices/touristic-cdn-xen.yaml --wait"
fi
cat <<MSG >&2

necos is starting. In another shell, as the demo tenant:
  bin/necosctl providers
$try
  bin/necosctl slice list
  bin/necosctl slice watch <id>      bin/necosctl slice delete <id> --wait
The API is on http://$LISTEN (OpenAPI: /v1/openapi.yaml); the demo token is in $DATA/demo-token.

MSG
bin/necosd "${necosd_args[@]}" "$@" &
necosd_pid=$!
wait "$necosd_pid"
