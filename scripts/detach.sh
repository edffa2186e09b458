#!/usr/bin/env bash
# Runs a command without the caller's descriptors beyond stdin, stdout and stderr, for
# daemons the scripts start: one that inherited, say, the fd of
# `flock /tmp/necos-heavy.lock ...` would hold that lock for as long as it lives.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
done
exec "$@"
