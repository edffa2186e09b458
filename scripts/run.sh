#!/usr/bin/env bash
# The main job: builds necos and runs necosd on its embedded defaults — the slice
# database under ./data, the plugins in bin/plugins, the example catalogue of five
# providers (real guests under QEMU, VXLAN links in network namespaces, InfluxDB
# monitoring), the API on 127.0.0.1:8080. Extra arguments go to necosd
# (--catalogue examples/catalogue-bench.yaml: the same sites on libvirt's test driver).
#
# Run as root: the WAN plugin builds the federation's network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
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

influx_pid=$(./scripts/influxdb.sh data/influxdb 127.0.0.1:8086)
# The one-machine federation's namespaces (examples/catalogue.yaml), which the WAN plugin
# builds on first use. On stop they are removed unless a slice still has guests in a site
# (its network lives there; the next run.sh finds it again): delete the slices first to
# leave nothing.
SITES="necos-unicamp necos-ufscar necos-spain necos-greece necos-5tonic"
remove_sites() {
  local uri busy="" d
  for uri in qemu:///system test+unix:///default; do
    for d in $(virsh -c "$uri" list --all --name 2>/dev/null | grep '^necos\.'); do
      for ns in $SITES; do
        virsh -c "$uri" dumpxml "$d" 2>/dev/null | grep -q "netns=\"$ns\"" && busy="$busy $ns"
      done
    done
  done
  if [ -n "$busy" ]; then
    echo "run.sh: slices still have guests in$(echo "$busy" | tr ' ' '\n' | sort -u | tr '\n' ' '); the sites stay" >&2
    return
  fi
  for ns in $SITES necos-underlay; do
    [ -e "/run/netns/$ns" ] && ip netns delete "$ns" 2>/dev/null
  done
  true
}
cleanup() {
  [ "${necosd_pid:-}" ] && kill -TERM "$necosd_pid" 2>/dev/null && wait "$necosd_pid" 2>/dev/null
  [ "$influx_pid" != 0 ] && kill "$influx_pid" 2>/dev/null
  remove_sites
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat <<MSG >&2

necos is starting. In another shell, as the demo tenant:
  bin/necosctl providers
  bin/necosctl slice create -f examples/slices/touristic-cdn-xen.yaml --wait
  bin/necosctl slice list
  bin/necosctl slice watch <id>      bin/necosctl slice delete <id> --wait
The API is on http://127.0.0.1:8080 (OpenAPI: /v1/openapi.yaml); the demo token is in data/demo-token.

MSG
bin/necosd "$@" &
necosd_pid=$!
wait "$necosd_pid"
