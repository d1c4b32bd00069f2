#!/usr/bin/env bash
# Install a Debian package when the program it provides is missing and we run as root
# (CI); otherwise say what to install. PROGRAM is a command name or an absolute path.
#   ensure-debian-package.sh PROGRAM PACKAGE [--required]
# Without --required a missing program is only a note: the tests that need it skip.
set -euo pipefail
program=$1 package=$2 required=${3:-}
if command -v "$program" > /dev/null 2>&1 || [ -x "$program" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "installing $package (apt-get install $package)"
  export DEBIAN_FRONTEND=noninteractive
  "$(dirname "$0")/apt-get.sh" update -qq
  "$(dirname "$0")/apt-get.sh" install -y -qq --no-install-recommends "$package" > /dev/null
elif [ "$required" = --required ]; then
  echo "$program is missing: apt-get install $package" >&2
  exit 1
else
  echo "note: $program is missing (apt-get install $package): the tests that need it will skip" >&2
fi
