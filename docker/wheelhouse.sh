#!/usr/bin/env bash
# Fill docker/wheelhouse/<image>/ on the host with the files pip installs in each image, for image builds that cannot
# (or should not) reach PyPI from inside `docker build`: CI behind a TLS-intercepting proxy whose CA the base images
# do not trust, and offline machines.
#
# The files are exactly the locked ones: `pip download --require-hashes` of locks/build.txt (pip, setuptools) and
# locks/<image>.txt, for CPython 3.11 on x86_64 Linux whatever Python runs this script, so pip inside the image checks
# each file against the same sha256 hashes. Packages PyPI ships only as source stay sources (pyspark 4.3.0, a ~450 MB
# sdist): the image builds them with the locked setuptools (a locally built wheel would not match any locked hash).
#
# docker/python-service.Dockerfile always COPYs the image's (in git: empty) wheelhouse directory and lets pip look
# there first; only with `--build-arg PIP_NO_INDEX=1` (what docker/e2e_containers.py passes) is PyPI not consulted
# at all. A plain `docker build` with an empty wheelhouse downloads from PyPI as usual, hash-checked the same way.
# Wheels are never committed (.gitignore).
#
# Usage: docker/wheelhouse.sh [image ...]   (default: all; images: simulator scorer alert-api notifier)
# Idempotent: an image's wheelhouse is refilled only when its lock files change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WH=docker/wheelhouse
# The images' interpreter and platform, as the locks are resolved: CPython 3.11, x86_64, glibc 2.36 (Debian bookworm,
# also enough for newer bases). pip does not widen a --platform to older glibc versions, so each one is listed.
TARGET=(--python-version 3.11 --implementation cp --abi cp311)
for glibc in $(seq 36 -1 17); do TARGET+=(--platform "manylinux_2_${glibc}_x86_64"); done
TARGET+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

fill() {
  local image=$1 dir=$WH/$1 stamp digest
  case $image in
    simulator|scorer|alert-api|notifier) ;;
    *) echo "unknown image $image" >&2; return 1 ;;
  esac
  local locks=(locks/build.txt "locks/$image.txt")
  digest=$(cat "${locks[@]}" | sha256sum | cut -c1-16)
  stamp=$dir/.filled-$digest
  if [ -f "$stamp" ]; then echo "==> wheelhouse $image: up to date"; return; fi
  local started=$SECONDS
  echo "==> wheelhouse $image: ${locks[*]}"
  find "$dir" -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
  mkdir -p "$dir"
  # --no-deps: a lock is already the whole closure (and pip allows the target options only with it).
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps "${TARGET[@]}" \
    --dest "$dir" -r locks/build.txt -r "locks/$image.txt"
  touch "$stamp"
  echo "    $(find "$dir" -name '*.whl' -o -name '*.tar.gz' | wc -l) files, $(du -sh "$dir" | cut -f1), $((SECONDS - started))s"
}

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(simulator scorer alert-api notifier)
for image in "${images[@]}"; do fill "$image"; done
