#!/usr/bin/env bash
# A Docker engine for the `docker`-marked tests: installs Debian's docker.io (engine),
# docker-compose (1.29) and debootstrap when missing, and starts dockerd when nothing
# answers on its socket. Needs root for both; otherwise says what is missing and lets
# the docker tests skip (they fail instead under CI=true).
#
# The daemon runs without a bridge or iptables rules (sandboxes and CI runners often
# forbid both); containers use the host's network (`network_mode: host`).
set -euo pipefail
log=${IAC_DOCKERD_LOG:-/tmp/ia-continu-dockerd.log}
if docker info > /dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "note: no Docker engine answers and not root: the docker tests will skip" >&2
  exit 0
fi
missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v docker-compose > /dev/null || missing+=(docker-compose)
command -v debootstrap > /dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get install)"
  export DEBIAN_FRONTEND=noninteractive
  "$(dirname "$0")/apt-get.sh" update -qq
  "$(dirname "$0")/apt-get.sh" install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
echo "starting dockerd (log: $log)"
nohup dockerd --storage-driver=overlay2 --iptables=false --bridge=none > "$log" 2>&1 &
# A few seconds on a quiet machine; a loaded one (or a first start that sets up its
# storage) can take a minute or two.
wait_s=${IAC_DOCKERD_START_WAIT:-180}
deadline=$((SECONDS + wait_s))
while [ "$SECONDS" -lt "$deadline" ]; do
  if timeout 30 docker info > /dev/null 2>&1; then
    echo "dockerd is up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not start within $wait_s s:" >&2
tail -20 "$log" >&2
exit 1
