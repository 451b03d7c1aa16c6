#!/bin/bash
# Offline stand-in for the official image's /opt/decom.sh: ask the executor JVM to decommission, then wait for it.
set -e
WORKER_PID=$(pgrep -f 'KubernetesExecutorBackend' | head -n 1)
[ -n "$WORKER_PID" ] || exit 0
kill -s SIGPWR "$WORKER_PID" || true
while kill -0 "$WORKER_PID" 2>/dev/null; do sleep 1; done
