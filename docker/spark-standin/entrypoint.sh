#!/bin/bash
# Offline stand-in for the official Apache Spark image's /opt/entrypoint.sh (Spark on Kubernetes contract), used only
# when docker/build-base-images.sh builds a local `apache/spark` tag because no registry is reachable. Real builds
# copy the official script from apache/spark (docker/python-service.Dockerfile, stage scorer).
#   driver    -> spark-submit in client mode inside the driver pod (the operator passes the rest of the arguments)
#   executor  -> the JVM executor backend, configured from the SPARK_* variables Spark sets on executor pods
#   anything else is executed as is (under tini).
set -eo pipefail
: "${SPARK_HOME:=/opt/spark}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
SPARK_CLASSPATH="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}${SPARK_HOME}/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then SPARK_CLASSPATH="$SPARK_CLASSPATH:$SPARK_EXTRA_CLASSPATH"; fi
mapfile -t SPARK_EXECUTOR_JAVA_OPTS < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/[^=]*=\(.*\)/\1/g')
if [ -n "${PYSPARK_PYTHON:-}" ]; then export PYSPARK_PYTHON; fi
if [ -n "${PYSPARK_DRIVER_PYTHON:-}" ]; then export PYSPARK_DRIVER_PYTHON; fi

case "${1:-}" in
  driver)
    shift 1
    CMD=("$SPARK_HOME/bin/spark-submit" --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}"
         --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" --deploy-mode client "$@")
    ;;
  executor)
    shift 1
    CMD=("$JAVA" "${SPARK_EXECUTOR_JAVA_OPTS[@]}" -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}"
         -cp "$SPARK_CLASSPATH:$SPARK_DIST_CLASSPATH" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
         --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES"
         --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP"
         --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" --podName "$SPARK_EXECUTOR_POD_NAME")
    ;;
  *)
    CMD=("$@")
    ;;
esac
exec /usr/bin/tini -s -- "${CMD[@]}"
