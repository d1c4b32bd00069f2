#!/usr/bin/env bash
# System packages the test suite starts for real: PostgreSQL (server binaries only; the
# tests run their own instance in a temp dir on 127.0.0.1). Installs with apt when
# missing and running as root (CI); otherwise says what to install and lets the tests skip.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "installing PostgreSQL server binaries (apt-get install postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  "$(dirname "$0")/apt-get.sh" update -qq
  "$(dirname "$0")/apt-get.sh" install -y -qq --no-install-recommends postgresql > /dev/null
  # The package starts a cluster on 5432; the tests use their own, so stop it.
  (service postgresql stop || true) > /dev/null 2>&1
else
  echo "note: PostgreSQL server binaries missing (apt-get install postgresql): PostgreSQL tests will skip" >&2
fi
