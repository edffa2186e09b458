#!/usr/bin/env bash
# Sets up everything the tests need on this machine and runs them all, skipping none:
# Debian packages, a libvirt daemon with the test driver, Kubernetes binaries (control
# plane and nodes: kubelet, kube-proxy, containerd, runc, metrics-server, kube-router), the images the
# nodes run, and InfluxDB, built from the Go module proxy and Debian packages (cached
# under ~/.cache/necos; the first run builds them, ~20 min), then gofmt/vet and
# `go test -race ./...`, then a leak check (scripts/leaks.sh): anything the tests left
# behind fails the run.
# Extra arguments go to go test (e.g. -run TestX ./core/...).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d /usr/local/go/bin ] && export PATH=/usr/local/go/bin:$PATH

# qemu.sh first: it configures the one libvirt daemon both URIs are served by.
export NECOS_QEMU_URI=$(./scripts/qemu.sh)
export NECOS_LIBVIRT_URI=$(./scripts/libvirtd.sh)
export NECOS_GUEST_IMAGE=$(./scripts/guest-image.sh)
export KUBEBUILDER_ASSETS=$(./scripts/kube-binaries.sh)
export NECOS_KUBE_NODE=$(./scripts/node-binaries.sh)
export NECOS_IMAGES=$(./scripts/images.sh)
export NECOS_INFLUXD=$(./scripts/influxd.sh)
export NECOS_SSHD=$(command -v sshd || echo /usr/sbin/sshd)
export NECOS_REQUIRE_BACKENDS=1

make lint
# The dashboard's committed build is what its sources and lock file give.
./scripts/ui.sh check
if [ "$#" -eq 0 ]; then
  set -- ./...
fi
# The leak check: what the tests leave (namespaces, devices, domains, volumes, processes:
# scripts/leaks.sh) fails the run. NECOS_TEST_RUN marks the run's processes; only the
# tests get it, not this shell.
run_id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
snapshot=$(mktemp)
./scripts/leaks.sh snapshot "$snapshot"
status=0
NECOS_TEST_RUN=$run_id go test -race -count=1 -timeout 60m "$@" || status=$?
./scripts/leaks.sh check "$snapshot" "$run_id" || status=1
rm -f "$snapshot"
exit "$status"
