#!/bin/sh
# Entry point of the broker image (docker/broker/Dockerfile): fills the addresses into the server.properties that
# docker/broker/prepare.py rendered with the local launcher's server_properties(), formats the log directory on the
# first start (a formatted one is kept), then runs kafka.Kafka as this process.
set -eu
: "${KAFKA_HOST:=0.0.0.0}" "${KAFKA_ADVERTISED_HOST:=127.0.0.1}" "${KAFKA_PORT:=9092}" "${KAFKA_CONTROLLER_PORT:=9093}"
conf=/opt/kafka/config
config=/var/lib/kafka/server.properties
sed -e "s|@HOST@|$KAFKA_HOST|g" -e "s|@ADVERTISED_HOST@|$KAFKA_ADVERTISED_HOST|g" \
    -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" -e "s|@PORT@|$KAFKA_PORT|g" \
    "$conf/server.properties.in" > "$config"
log4j="-Dlog4j2.configurationFile=$conf/log4j2.properties"
log_dir=$(sed -n 's/^log\.dirs=//p' "$config")
mkdir -p "$log_dir"
if [ ! -f "$log_dir/meta.properties" ]; then
  # A cluster id is 16 random bytes in URL-safe base64 without padding (what StorageTool random-uuid prints); one
  # starting with "-" would be read as an option by StorageTool's parser, so draw again.
  cluster_id=-
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  java -Xmx256m "$log4j" -cp "/opt/kafka/lib/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$config" \
    --ignore-formatted
fi
# shellcheck disable=SC2046,SC2086 # one JVM option per line; KAFKA_OPTS is a list of options
exec java $(cat "$conf/jvm.options") ${KAFKA_OPTS:-} "$log4j" -cp "/opt/kafka/lib/*" kafka.Kafka "$config"
