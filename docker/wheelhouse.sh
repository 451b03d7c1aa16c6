#!/usr/bin/env bash
# Fill docker/wheelhouse/<image>/ with wheels built or downloaded on the host, for image builds that cannot (or
# should not) reach PyPI from inside `docker build`: CI behind a TLS-intercepting proxy whose CA the base images do
# not trust, offline machines, and the scorer's pyspark, which PyPI ships as a ~450 MB sdist that would otherwise
# be built into a wheel inside every cold image build.
#
# docker/python-service.Dockerfile always COPYs the service's (in git: empty) wheelhouse directory and lets pip look
# there first; only with `--build-arg PIP_NO_INDEX=1` (what docker/e2e_containers.py passes) is PyPI not consulted
# at all. A plain `docker build` with an empty wheelhouse downloads from PyPI as usual. Wheels are never committed
# (.gitignore).
#
# Usage: docker/wheelhouse.sh [image ...]   (default: all; images: simulator scorer alert-api notifier)
# Idempotent: an image's wheelhouse is refilled only when its requirements (the pyproject files) change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WH=docker/wheelhouse
# Build backends needed by pip's build isolation when it builds the citysense projects from /src in the image.
BACKENDS=(setuptools wheel)

requirements() {
  case $1 in
    simulator) echo "libs/common services/simulator" ;;
    scorer|alert-api|notifier) echo "libs/common[cassandra] services/$1" ;;
    *) echo "unknown image $1" >&2; return 1 ;;
  esac
}

fill() {
  local image=$1 dir=$WH/$1 reqs stamp digest
  reqs=$(requirements "$image")
  digest=$( { echo "$reqs"; for r in $reqs; do p=${r%%[*}; if [ -f "$p/pyproject.toml" ]; then cat "$p/pyproject.toml"; fi; done; } \
            | sha256sum | cut -c1-16)
  stamp=$dir/.filled-$digest
  if [ -f "$stamp" ]; then echo "==> wheelhouse $image: up to date"; return; fi
  local started=$SECONDS
  echo "==> wheelhouse $image: $reqs"
  find "$dir" -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
  mkdir -p "$dir"
  local reqfile
  reqfile=$(mktemp)
  case $image in
    # Only third-party wheels: the citysense projects are built from source inside the image (and building them
    # here would leave build/ directories in the source tree).
    # shellcheck disable=SC2086 # word splitting of the requirement list is intended
    simulator|scorer|alert-api|notifier) "$PYTHON" docker/project_deps.py $reqs >"$reqfile" ;;
    *) printf '%s\n' $reqs >"$reqfile" ;;
  esac
  "$PYTHON" -m pip wheel --quiet --wheel-dir "$dir" -r "$reqfile" 2> >(grep -v "is neither a file nor a directory" >&2)
  "$PYTHON" -m pip download --quiet --only-binary :all: --dest "$dir" "${BACKENDS[@]}" \
    2> >(grep -v "is neither a file nor a directory" >&2)
  rm -f "$reqfile"
  touch "$stamp"
  echo "    $(find "$dir" -name '*.whl' | wc -l) wheels, $(du -sh "$dir" | cut -f1), $((SECONDS - started))s"
}

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(simulator scorer alert-api notifier)
for image in "${images[@]}"; do fill "$image"; done
