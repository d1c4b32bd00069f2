#!/usr/bin/env bash
# Make a Python 3.11 base image from Debian's packages, for machines that cannot pull
# from a container registry (air-gapped sites, this project's CI). The images build
# FROM it with `--build-arg BASE_IMAGE=ia-continu/python-base:bookworm`.
#
#   infra/docker/base-image.sh [IMAGE]          (default ia-continu/python-base:bookworm)
#
# Cached twice: an image already in the engine is kept; otherwise a root filesystem
# tarball left by an earlier run (IAC_BASE_CACHE, default ~/.cache/ia-continu) is
# imported, and only without either does debootstrap run (about 40 s, needs root).
set -euo pipefail
image=${1:-ia-continu/python-base:bookworm}
suite=${IAC_BASE_SUITE:-bookworm}
mirror=${IAC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache_dir=${IAC_BASE_CACHE:-$HOME/.cache/ia-continu}
tarball=$cache_dir/python-base-$suite.tar

if docker image inspect "$image" > /dev/null 2>&1; then
  echo "base image $image present"
  exit 0
fi
import() {
  # Debian's python3 is PEP 668-managed: the Dockerfiles install into a venv.
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$tarball" "$image" > /dev/null
  echo "base image $image imported from $tarball"
}
if [ -s "$tarball" ]; then
  import
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "base-image.sh: debootstrap needs root (or pass --build-arg BASE_IMAGE=python:3.11-slim-bookworm)" >&2
  exit 1
fi
command -v debootstrap > /dev/null || {
  echo "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive "$(dirname "$0")/../scripts/apt-get.sh" install -y -qq --no-install-recommends debootstrap > /dev/null
}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite into $root (about 40 s)"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  "$suite" "$root" "$mirror" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# Smaller image: no apt lists or caches, no docs; apt still works after `apt-get update`.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
mkdir -p "$cache_dir"
tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
import
