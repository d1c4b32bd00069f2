#!/usr/bin/env bash
# The browser the UI tests drive through Playwright: Debian's Chromium at /usr/bin/chromium
# (Playwright never downloads its own). Installs with apt when missing and running as root
# (CI); otherwise says what to install and lets the browser tests skip.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "installing Chromium (apt-get install chromium)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium > /dev/null
else
  echo "note: /usr/bin/chromium missing (apt-get install chromium): browser tests will skip" >&2
fi
