#!/usr/bin/env bash
# A real Uptime Kuma for the provisioning tests, from the npm registry (no container
# registry here): uptime-kuma@2.0.0-dev.0 with its SQLite module rebuilt from source.
# Cached in IAC_UPTIME_KUMA_DIR (default ~/.cache/ia-continu/uptime-kuma); prints the
# package directory (run `node server/server.js` there).
#   infra/uptime-kuma/install-dev-server.sh
set -euo pipefail
version=${IAC_UPTIME_KUMA_VERSION:-2.0.0-dev.0}
root=${IAC_UPTIME_KUMA_DIR:-$HOME/.cache/ia-continu/uptime-kuma-$version}
pkg=$root/node_modules/uptime-kuma
mkdir -p "$root"
# `make test` starts this in the background; the test's own call waits for it here.
exec 9> "$root.lock"
flock 9
if [ -f "$root/.installed" ]; then
  echo "$pkg"
  exit 0
fi
command -v npm > /dev/null || { echo "npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
cd "$root"
[ -f package.json ] || echo '{"name": "iac-uptime-kuma", "private": true}' > package.json
npm install --no-audit --no-fund --loglevel=error "uptime-kuma@$version" >&2
# The prebuilt binary is fetched from GitHub at install time, which this network refuses.
npm rebuild @louislam/sqlite3 --build-from-source --loglevel=error >&2
# The package ships its SQL patches in db/, but the migration reads db/old_migrations/.
mkdir -p "$pkg/db/old_migrations"
cp "$pkg"/db/*.sql "$pkg/db/old_migrations/" 2>/dev/null || true
touch "$root/.installed"
echo "$pkg"
