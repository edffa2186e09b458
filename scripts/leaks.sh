#!/usr/bin/env bash
# Lists what necos's tests and plugins make on this machine and a run must not leave:
# named network namespaces (necos*, the tests' own, pods' cni-*), devices in the host's
# namespace (taps, bridges, veths), libvirt domains (necos.*) on the QEMU and test-driver
# URIs, storage volumes (necos.*) in the QEMU URI's pools, and live processes of one run
# (those whose environment holds NECOS_TEST_RUN=<the run's id>).
#
#   scripts/leaks.sh snapshot FILE        what is there now (before a run)
#   scripts/leaks.sh check FILE [RUN_ID]  what is there now and was not in FILE, and the
#                                         run's processes; exits 1 when anything is left
#
# A run's objects are those that appear during it: everything already there at the
# snapshot is someone else's (another run, a helper's running tests). An object that
# appeared meanwhile is counted only if it is still there after a pause (NECOS_LEAK_SETTLE
# seconds, default 15), so that a parallel run's object that is being torn down is not.
# On a machine where nothing else runs (CI), what is reported is exactly what the run left.
set -uo pipefail

QEMU_URI=${NECOS_QEMU_URI:-qemu:///system}
TEST_URI=${NECOS_LIBVIRT_URI:-test+unix:///default}

list() {
  # Every named network namespace: ours are necos*, but the tests' own prefixes and the
  # CNI's (cni-*, a pod's) vary; the diff keeps only the run's.
  ip netns list 2>/dev/null | awk '{print "netns " $1}'
  # Every device of the host's namespace but the machine's own (loopback, physical NICs
  # and whatever was there at the snapshot: the diff takes care of those).
  # Not the devices a kernel module makes when it loads (a test may load it first on a
  # cold machine): they belong to the kernel, and nobody removes them.
  ip -o link show 2>/dev/null | awk -F': ' '{split($2, a, "@"); print "link " a[1]}' |
    grep -vxE 'link (tunl0|sit0|gre0|gretap0|erspan0|ip_vti0|ip6_vti0|ip6tnl0|ip6gre0|ifb[0-9]+|dummy0|bond0)'
  for uri in "$QEMU_URI" "$TEST_URI"; do
    virsh -c "$uri" list --all --name 2>/dev/null | awk -v u="$uri" '/^necos\./ {print "domain " u " " $1}'
  done
  for pool in $(virsh -c "$QEMU_URI" pool-list --all --name 2>/dev/null); do
    virsh -c "$QEMU_URI" pool-refresh "$pool" >/dev/null 2>&1
    virsh -c "$QEMU_URI" vol-list "$pool" 2>/dev/null | awk -v p="$pool" 'NR > 2 && $1 ~ /^necos\./ {print "volume " p " " $1}'
  done
}

processes() { # the processes of run $1
  local id=$1 pid
  [ -n "$id" ] || return 0
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qx "NECOS_TEST_RUN=$id"; then
      echo "process $pid $({ tr '\0' ' ' </proc/"$pid"/cmdline; } 2>/dev/null | cut -c1-120)"
    fi
  done
}

case "${1:-}" in
snapshot)
  [ -n "${2:-}" ] || { echo "usage: $0 snapshot FILE" >&2; exit 2; }
  list | sort -u >"$2"
  ;;
check)
  [ -n "${2:-}" ] && [ -r "$2" ] || { echo "usage: $0 check FILE [RUN_ID] (FILE from snapshot)" >&2; exit 2; }
  new=$(comm -13 "$2" <(list | sort -u))
  if [ -n "$new" ]; then
    sleep "${NECOS_LEAK_SETTLE:-15}"
    new=$(comm -12 <(echo "$new") <(list | sort -u))
  fi
  left=$(printf '%s\n%s\n' "$new" "$(processes "${3:-}")" | sed '/^$/d')
  if [ -n "$left" ]; then
    echo "leak check: the run left these behind:" >&2
    echo "$left" | sed 's/^/  /' >&2
    exit 1
  fi
  echo "leak check: nothing left" >&2
  ;;
*)
  echo "usage: $0 snapshot FILE | check FILE [RUN_ID]" >&2
  exit 2
  ;;
esac
