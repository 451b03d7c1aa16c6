#!/usr/bin/env bash
# `make e2e-containers`: build every image against local base stand-ins, run the broker and the services as
# containers on this host (--network host, read-only root filesystems, all capabilities dropped), and check that an
# alert reaches a webhook receiver. Starts dockerd when it is not running and we are root (CI).
# Arguments go to docker/e2e_containers.py (--allow-missing, --online, --no-build, --keep, --timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    echo "==> starting dockerd (--bridge=none: containers use the host network)"
    nohup dockerd --bridge=none --iptables=false >/tmp/citysense-dockerd.log 2>&1 &
    for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  docker info >/dev/null 2>&1 || { echo "docker is not available: apt-get install -y docker.io and start dockerd" >&2; exit 1; }
fi
started=$SECONDS
docker/build-base-images.sh
echo "==> base images ready in $((SECONDS - started))s"
started=$SECONDS
# Wheels for pip inside the builds, prepared on the host (no PyPI access from inside `docker build` needed).
[[ " $* " == *" --online "* ]] || docker/wheelhouse.sh
echo "==> wheelhouses ready in $((SECONDS - started))s"
# The broker image's build context: Kafka's jars (Maven Central, cached on the host) and its rendered config.
[[ " $* " == *" --no-build "* ]] || .venv/bin/python docker/broker/prepare.py
[[ " $* " == *" --no-build "* ]] || .venv/bin/python docker/scorer/prepare.py
exec .venv/bin/python docker/e2e_containers.py "$@"
