#!/usr/bin/env bash
# Copy this machine's extra CA certificates (the ones update-ca-certificates added to
# the system store, e.g. a corporate TLS-intercepting proxy's) into the image build
# context, so that `docker build` trusts the same CAs as the host. Idempotent.
set -euo pipefail
dest="$(cd "$(dirname "$0")" && pwd)/ca-certificates"
shopt -s nullglob
count=0
for cert in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
  cp -f "$cert" "$dest/host-$(basename "$cert")"
  count=$((count + 1))
done
echo "trust-host-ca: $count extra CA certificate(s) in $dest"
