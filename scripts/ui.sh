#!/usr/bin/env bash
# The dashboard's front end (ui/web) built from its lock file into ui/dist, which is
# committed and embedded by the Go package ui (so go build never needs npm).
#   ./scripts/ui.sh build   rebuild ui/dist (commit the result)
#   ./scripts/ui.sh check   fail when a rebuild from the lock file differs from ui/dist
# Packages come from the npm registry through npm ci (npm's cache, ~/.npm, keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "installing: nodejs npm" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi

cd ui/web
# --ignore-scripts: esbuild's binary comes in its platform package; nothing needs to run.
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2
case "${1:-build}" in
  build)
    node build.mjs
    ;;
  check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    node build.mjs "$tmp"
    if ! diff -r "$tmp" ../dist >&2; then
      echo "ui/dist differs from a build of ui/web: run ./scripts/ui.sh build and commit ui/dist" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 build|check" >&2
    exit 2
    ;;
esac
