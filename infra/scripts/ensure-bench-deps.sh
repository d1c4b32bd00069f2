#!/usr/bin/env bash
# The load generator of bench/api_throughput.py: Debian's wrk, installed when missing and
# running as root; otherwise says what to install.
set -euo pipefail
if command -v wrk > /dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "installing wrk (apt-get install wrk)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends wrk > /dev/null
else
  echo "wrk is missing: apt-get install wrk" >&2
  exit 1
fi
