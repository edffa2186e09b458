#!/usr/bin/env bash
# Installs what building and running necos needs on Debian 12, when missing: the libvirt
# development files (cgo), protoc, the libvirt daemon and client (test driver), sshd,
# ping, Chromium (the dashboard's browser tests); for the Kubernetes nodes: the CNI plugins,
# nftables (kube-proxy), libseccomp (runc); mosquitto (the load generator's tests; installing it
# starts no daemon without systemd). Idempotent and quiet when everything is there.
set -euo pipefail

if [ -d /usr/local/go/bin ] && ! command -v go >/dev/null; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { echo "necos needs Go 1.26 (https://go.dev/dl/) on PATH" >&2; exit 1; }

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libvirt-dev pkg-config protobuf-compiler libprotobuf-dev libvirt-daemon libvirt-clients \
         openssh-server openssh-client iputils-ping iproute2 ca-certificates curl git make chromium \
         containernetworking-plugins nftables iptables ipset libseccomp-dev util-linux mosquitto; do
  have_pkg "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
