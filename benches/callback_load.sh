#!/usr/bin/env bash
# Runs the callback load benchmark with wrk as a second, separate load generator: installs wrk
# (Debian/Ubuntu) when it is missing, then `cargo bench --bench callback_load`.
set -euo pipefail
if ! command -v wrk >/dev/null; then
  if command -v apt-get >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y wrk >/dev/null || echo "wrk could not be installed: in-process generator only" >&2
  else
    echo "no apt-get: install wrk yourself for the second generator; in-process generator only" >&2
  fi
fi
cd "$(dirname "$0")/.."
exec cargo bench --bench callback_load "$@"
