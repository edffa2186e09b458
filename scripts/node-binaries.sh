#!/usr/bin/env bash
# Builds what a Kubernetes node needs besides kubelet and kube-proxy (those come from
# scripts/kube-binaries.sh): containerd, its runc shim and ctr (containerd v2: Kubernetes
# 1.37 no longer supports the 1.x Debian ships), runc with seccomp (Debian's 1.1.5 fails
# under containerd 2; containerd gives every sandbox a seccomp profile) and metrics-server
# (the real metrics.k8s.io) and kube-router, whose network-policy controller alone enforces
# NetworkPolicies on the nodes (CNI ptp enforces none). All from the Go module proxy, in a
# throwaway module outside the project's go.mod, cached under $NECOS_CACHE. The CNI
# plugins, iptables and ipset are Debian's (installed by scripts/setup.sh). Cold: ~6 min
# (kube-router ~2 min of it); warm: instant.
#
# Prints the directory holding the binaries.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
METRICS_SERVER_VERSION=${METRICS_SERVER_VERSION:-v0.8.0}
# The one version the module proxy serves here (advisories exist against it: it runs only
# the firewall, in test clusters' node namespaces, with no port open).
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
CACHE=${NECOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/necos}
OUT=$CACHE/node/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-ms-$METRICS_SERVER_VERSION
BINARIES=(containerd containerd-shim-runc-v2 ctr runc metrics-server kube-router)

have_all() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}
if have_all; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if have_all; then echo "$OUT"; exit 0; fi

if ! dpkg-query -W -f='${Status}' libseccomp-dev 2>/dev/null | grep -q "install ok installed"; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev pkg-config >&2
fi

work=$(mktemp -d "$CACHE/node-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off

# build NAME MODULE@VERSION PACKAGE [go build args...]: each program in a module of its
# own, so that one program's requirements never move another's.
build() {
  local name=$1 mod=$2 pkg=$3
  shift 3
  [ -x "$OUT/$name" ] && return 0
  local dir=$work/${mod//\//_}
  if [ ! -f "$dir/go.mod" ]; then
    mkdir -p "$dir"
    (cd "$dir" && go mod init necos.invalid/node-build >&2 && go get "$mod" >&2)
  fi
  echo "building $name ($mod) ..." >&2
  (cd "$dir" && go build -trimpath "$@" -o "$OUT/$name.tmp" "$pkg" >&2)
  mv "$OUT/$name.tmp" "$OUT/$name"
}

cmod=github.com/containerd/containerd/v2@$CONTAINERD_VERSION
cver="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
ctags="no_btrfs no_devmapper no_zfs"
for b in containerd containerd-shim-runc-v2 ctr; do
  CGO_ENABLED=0 build "$b" "$cmod" "github.com/containerd/containerd/v2/cmd/$b" -tags "$ctags" -ldflags "-s -w $cver"
done
# runc needs cgo (libcontainer's nsexec) and libseccomp.
CGO_ENABLED=1 build runc "github.com/opencontainers/runc@$RUNC_VERSION" github.com/opencontainers/runc \
  -tags seccomp -ldflags "-s -w -X main.version=${RUNC_VERSION#v}"
CGO_ENABLED=0 build metrics-server "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION" \
  sigs.k8s.io/metrics-server/cmd/metrics-server \
  -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
CGO_ENABLED=0 build kube-router "github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION" \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
echo "$OUT"
