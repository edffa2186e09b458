#!/usr/bin/env bash
# Starts a libvirt daemon serving the built-in test driver on this machine (no systemd
# needed) and keeps one connection to it open: the test driver's state lives in the
# daemon, shared by every client of test+unix:///default, and is dropped when the last
# connection closes. Domains defined through it outlive the plugins that made them, as on
# a real hypervisor. Idempotent; prints the URI to use.
set -euo pipefail

URI=test+unix:///default
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvirt-daemon libvirt-clients >&2
fi
# libvirtd refuses to start when the QEMU driver's user is missing; the package that
# creates it (libvirt-daemon-system) also pulls systemd units we do not use.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /run/libvirt

if ! virsh -c "$URI" uri >/dev/null 2>&1; then
  pgrep -x libvirtd >/dev/null || "$(dirname "$0")"/detach.sh libvirtd -d
  for _ in $(seq 1 50); do
    virsh -c "$URI" uri >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
# pgrep takes a regular expression: the URI's '+' must be literal, or every run starts
# one more keeper.
KEEPER="virsh -c ${URI//+/\\+} event --loop"
if ! pgrep -f "$KEEPER" >/dev/null; then
  "$(dirname "$0")"/detach.sh setsid virsh -c "$URI" event --loop --all </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 50); do
    pgrep -f "$KEEPER" >/dev/null && break
    sleep 0.1
  done
fi
virsh -c "$URI" uri >/dev/null
echo "$URI"
