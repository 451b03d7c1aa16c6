#!/usr/bin/env bash
# Build local stand-ins for the base images the Dockerfiles pull (python:3.11-slim, apache/spark:4.1.2) when no
# container registry is reachable (CI, offline machines). Real users pull the real images; nothing here is pushed.
#   python:3.11-slim  <- debootstrap Debian bookworm (minbase) + python3.11 (bookworm's python3) + venv
#   apache/spark:4.1.2 <- that base + docker/spark-standin/{entrypoint,decom}.sh (the only files the scorer copies)
# Idempotent: existing tags are kept unless FORCE=1. Needs root, docker and debootstrap (apt-get install debootstrap).
#
# What is pinned: the Debian suite (SUITE) and the package lists below. Package versions are whatever the suite has
# on the mirror that day, verified by Debian's signatures: debootstrap checks the Release file against KEYRING
# (--force-check-gpg: a missing keyring is an error, not a skipped check) and every package against the Release
# file's hashes; apt does the same for the packages installed on top. The images are not bit-reproducible (file
# times, the date of the build, point releases), so no checked-in digest can describe them; instead the script
# prints each tag's image ID, and docker/e2e_containers.py builds FROM those IDs (docker/README.md, "Base images").
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
PYTHON_TAG=${PYTHON_TAG:-python:3.11-slim}
SPARK_TAG=${SPARK_TAG:-apache/spark:4.1.2}
BASE_TAG=citysense-local/debian:$SUITE

have() { [ "${FORCE:-0}" != 1 ] && $DOCKER image inspect "$1" >/dev/null 2>&1; }

if ! have "$BASE_TAG"; then
  command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
  [ -f "$KEYRING" ] || { echo "$KEYRING missing: apt-get install -y debian-archive-keyring" >&2; exit 1; }
  root=$(mktemp -d /tmp/citysense-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "==> debootstrap $SUITE (minbase) into $root"
  debootstrap --variant=minbase --include=ca-certificates --force-check-gpg --keyring="$KEYRING" \
    "$SUITE" "$root" "$MIRROR" >/tmp/citysense-debootstrap.log 2>&1 \
    || { tail -20 /tmp/citysense-debootstrap.log >&2; exit 1; }
  cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
  # Like the official slim images: no docs, no apt cache.
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    > "$root/etc/dpkg/dpkg.cfg.d/docker-slim"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
  echo "==> docker import $BASE_TAG"
  tar -C "$root" -c . | $DOCKER import - "$BASE_TAG" >/dev/null
fi

if ! have "$PYTHON_TAG"; then
  echo "==> $PYTHON_TAG (stand-in)"
  $DOCKER build --network host -t "$PYTHON_TAG" - <<DOCKERFILE
FROM $BASE_TAG
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /usr/bin/python3 /usr/local/bin/python
ENV LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
fi

if ! have "$SPARK_TAG"; then
  echo "==> $SPARK_TAG (stand-in: entrypoint scripts only)"
  $DOCKER build --network host --build-arg BASE="$BASE_TAG" -t "$SPARK_TAG" -f docker/spark-standin/Dockerfile .
fi
for tag in "$BASE_TAG" "$PYTHON_TAG" "$SPARK_TAG"; do
  echo "    $tag  $($DOCKER image inspect -f '{{.Id}}  {{.Size}} bytes' "$tag")"
done
