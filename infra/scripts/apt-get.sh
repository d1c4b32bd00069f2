#!/usr/bin/env bash
# apt-get that waits while another apt-get or dpkg holds its locks, instead of failing
# at once ("Could not get lock /var/lib/apt/lists/lock"): a fresh machine often runs one
# (unattended-upgrades, cloud-init, another `make`).
#   apt-get.sh ARGS...        same arguments as apt-get
# Waits up to IAC_APT_LOCK_WAIT seconds in all (default 900), retrying every
# IAC_APT_LOCK_POLL seconds (default 5); any other error fails at once, as apt-get does.
set -uo pipefail
wait_s=${IAC_APT_LOCK_WAIT:-900}
poll_s=${IAC_APT_LOCK_POLL:-5}
start=$(date +%s)
err=$(mktemp)
trap 'rm -f "$err"' EXIT
while :; do
  # DPkg::Lock::Timeout: apt itself waits for the dpkg frontend lock (not the lists lock).
  if apt-get -o DPkg::Lock::Timeout=60 "$@" 2> "$err"; then
    cat "$err" >&2
    exit 0
  else
    status=$?
  fi
  if grep -qE 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock' "$err" \
    && [ $(($(date +%s) - start)) -lt "$wait_s" ]; then
    echo "apt-get $*: another package manager holds the lock; waiting ($(grep -m1 -o 'held by process.*' "$err" || echo 'lock busy'))" >&2
    sleep "$poll_s"
    continue
  fi
  cat "$err" >&2
  exit "$status"
done
