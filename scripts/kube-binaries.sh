#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and etcd (the control
# plane), kubelet and kube-proxy (the nodes) from the Go module proxy and caches them, so
# tests and the demo can run a real Kubernetes cluster on this machine. The build happens
# in a throwaway module outside the project's go.mod: Kubernetes' own module only builds
# with its staging repos replaced by their published versions. Only missing binaries are
# built. Cold: ~14 min on 2 cores; warm: instant.
#
# Prints the directory holding the binaries (use it as KUBEBUILDER_ASSETS).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=v0.${K8S_VERSION#v1.}
CACHE=${NECOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/necos}
OUT=$CACHE/kube/$K8S_VERSION
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd)

have_all() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}

if have_all; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if have_all; then echo "$OUT"; exit 0; fi

work=$(mktemp -d "$CACHE/kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

go mod init necos.invalid/kube-build >&2
# The staging repos kubernetes replaces with ./staging/...: read them from its go.mod.
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$gomod" ] || { echo "cannot read k8s.io/kubernetes@$K8S_VERSION go.mod" >&2; exit 1; }
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\?\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$gomod" | grep -v '^k8s.io/sample-' | sort -u)
[ "${#staging[@]}" -gt 10 ] || { echo "found only ${#staging[@]} staging repos in $gomod" >&2; exit 1; }
for m in "${staging[@]}"; do
  go mod edit -replace "$m=$m@$STAGING_VERSION"
done
go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
go get "k8s.io/kubernetes@$K8S_VERSION" >&2
# etcd at the version kubernetes itself is tested with (its client's version).
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)
go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2
go mod tidy -e >&2 || true

pkg=k8s.io/component-base/version
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [ -x "$OUT/$b" ] && continue
  echo "building $b $K8S_VERSION ..." >&2
  go build -trimpath -ldflags "$ldflags" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
  mv "$OUT/$b.tmp" "$OUT/$b"
done
if [ ! -x "$OUT/etcd" ]; then
  echo "building etcd $etcd_version ..." >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
echo "$OUT"
