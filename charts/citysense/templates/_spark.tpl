{{/*
Shared parts of the scorer's SparkApplication (streaming) and ScheduledSparkApplication (batch) specs.
The image (docker/python-service.Dockerfile, stage scorer) follows the official Apache Spark image layout the operator expects:
SPARK_HOME=/opt/spark, /opt/entrypoint.sh handling the `driver` and `executor` commands, user spark (uid 185),
working directory /opt/spark/work-dir; driver and executors run the same image.
*/}}

{{/* One state partition per executor core: each partition costs the health operator a fixed amount per batch. */}}
{{- define "citysense.spark.statePartitions" -}}
{{- mul .Values.scorer.executor.instances .Values.scorer.executor.cores -}}
{{- end -}}

{{/* Task slots the Real-Time Mode query holds while it runs: one per readings partition and per state partition. */}}
{{- define "citysense.spark.realtimeSlots" -}}
{{- if .Values.scorer.realtime.enabled -}}
{{- add (int .Values.kafka.topics.readings.partitions) (include "citysense.spark.statePartitions" . | atoi) -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{- define "citysense.spark.env" -}}
{{ include "citysense.commonEnv" . }}
{{ include "citysense.storeEnv" . }}
# On the checkpoint volume (see citysense.spark.volumes); the batch job's copy points at its scratch volume, unused.
- name: CITYSENSE_SCORER_CHECKPOINT_DIR
  value: /var/lib/citysense/checkpoints/scorer
- name: PYSPARK_PYTHON
  value: /opt/venv/bin/python
- name: CITYSENSE_SCORER_SHUFFLE_PARTITIONS
  value: {{ include "citysense.spark.statePartitions" . | quote }}
# A micro-batch is read and decoded by one task per executor core, not one per readings partition: the real-time
# query's slots are added to the executors' cores, and idle slots would otherwise fill with Python workers.
- name: CITYSENSE_SCORER_DECODE_TASKS
  value: {{ include "citysense.spark.statePartitions" . | quote }}
# Give memory back after each micro-batch (the values of citysense_scorer.job.session.LEAN_MEMORY_ENV; see there).
- name: MALLOC_MMAP_THRESHOLD_
  value: "131072"
- name: MALLOC_TRIM_THRESHOLD_
  value: "131072"
- name: ARROW_DEFAULT_MEMORY_POOL
  value: system
{{- with .Values.scorer.realtime }}
- name: CITYSENSE_SCORER_REALTIME
  value: {{ .enabled | quote }}
- name: CITYSENSE_SCORER_REALTIME_MAX_WINDOW
  value: {{ .maxWindow | quote }}
- name: CITYSENSE_SCORER_REALTIME_CHECKPOINT_INTERVAL
  value: {{ .checkpointInterval | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.scorer.stream.triggerMs) }}
- name: CITYSENSE_SCORER_TRIGGER_MS
  value: {{ .Values.scorer.stream.triggerMs | quote }}
{{- end }}
{{- with .Values.scorer.health }}
- name: CITYSENSE_HEALTH_ENABLED
  value: {{ .enabled | quote }}
- name: CITYSENSE_OFFLINE_AFTER_S
  value: {{ .offlineAfterSeconds | quote }}
{{- with .buckets }}
- name: CITYSENSE_HEALTH_BUCKETS
  value: {{ . | quote }}
{{- end }}
{{- with .offlineGroups }}
- name: CITYSENSE_OFFLINE_GROUPS
  value: {{ toJson . | quote }}
{{- end }}
{{- end }}
{{- with .Values.scorer.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable paths of a Spark pod; volumes named spark-local-dir-* become Spark's scratch space. */}}
{{- define "citysense.spark.volumeMounts" -}}
- name: config
  mountPath: /etc/citysense
  readOnly: true
- name: data
  mountPath: /var/lib/citysense
- name: tmp
  mountPath: /tmp
- name: work-dir
  mountPath: /opt/spark/work-dir
- name: spark-local-dir-1
  mountPath: /var/spark/local
{{- end -}}

{{- define "citysense.spark.volumes" -}}
{{- $stream := index . 1 -}}
{{- with index . 0 -}}
- name: config
  configMap:
    name: {{ include "citysense.configMapName" . }}
{{- if $stream }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "citysense.checkpointClaimName" . }}
{{- else }}
- name: data
  emptyDir:
    sizeLimit: 1Gi
{{- end }}
{{- /* /tmp is the JVM's java.io.tmpdir: RocksDB (the health state store), zstd-jni and snappy-java extract their
native libraries there and dlopen() them, so it must be writable and exec-capable on the read-only root. An emptyDir
is both (Kubernetes mounts it without noexec, also with medium: Memory); not a configMap, secret or read-only mount
(tests/charts/test_native_libraries.py). */}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: work-dir
  emptyDir:
    sizeLimit: 1Gi
- name: spark-local-dir-1
  emptyDir:
    sizeLimit: 8Gi
{{- end -}}
{{- end -}}

{{/* spec of a SparkApplication: include "citysense.spark.spec" (list . "stream" <executor values> <arguments> <restartPolicy>) */}}
{{- define "citysense.spark.spec" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $executor := index . 2 -}}
{{- $v := $.Values.scorer -}}
{{- $component := printf "scorer-%s" $role -}}
type: Python
pythonVersion: "3"
mode: cluster
image: {{ include "citysense.image" (list $ $v.image) }}
imagePullPolicy: {{ include "citysense.imagePullPolicy" (list $ $v.image) }}
{{- with $.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
mainApplicationFile: {{ $v.mainApplicationFile | quote }}
arguments:
  {{- toYaml (index . 3) | nindent 2 }}
sparkVersion: {{ $v.sparkVersion | quote }}
restartPolicy:
  {{- toYaml (index . 4) | nindent 2 }}
sparkConf:
  spark.kubernetes.executor.podNamePrefix: {{ include "citysense.componentName" (list $ $component) | quote }}
  # Prometheus endpoints on the driver UI port (/metrics/prometheus, /metrics/executors/prometheus).
  spark.ui.prometheus.enabled: "true"
  spark.sql.streaming.metricsEnabled: "true"
  spark.metrics.namespace: citysense
  spark.metrics.conf.*.sink.prometheusServlet.class: org.apache.spark.metrics.sink.PrometheusServlet
  spark.metrics.conf.*.sink.prometheusServlet.path: /metrics/prometheus
  spark.sql.shuffle.partitions: {{ include "citysense.spark.statePartitions" $ | quote }}
  # CPU request per executor: its cores, not its task slots (the real-time tasks mostly wait on Kafka).
  spark.kubernetes.executor.request.cores: {{ $executor.cores | quote }}
  # G1 returns heap it no longer needs and keeps the health state's large copies young
  # (citysense_scorer.job.session.JVM_MEMORY_OPTIONS).
  {{- $jvmMemory := "-XX:MaxHeapFreeRatio=20 -XX:MinHeapFreeRatio=5 -XX:G1PeriodicGCInterval=5000 -XX:G1HeapRegionSize=8m -XX:+UnlockExperimentalVMOptions -XX:G1MaxNewSizePercent=25" }}
  spark.driver.extraJavaOptions: {{ $jvmMemory | quote }}
  spark.executor.extraJavaOptions: {{ $jvmMemory | quote }}
  {{- range $key, $value := $v.sparkConf }}
  {{ $key }}: {{ $value | toString | quote }}
  {{- end }}
{{- with $v.hadoopConf }}
hadoopConf:
  {{- range $key, $value := . }}
  {{ $key }}: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
volumes:
  {{- include "citysense.spark.volumes" (list $ (eq $role "stream")) | nindent 2 }}
driver:
  cores: {{ $v.driver.cores }}
  coreLimit: {{ $v.driver.coreLimit | quote }}
  memory: {{ $v.driver.memory | quote }}
  memoryOverhead: {{ $v.driver.memoryOverhead | quote }}
  serviceAccount: {{ $v.serviceAccountName }}
  labels:
    {{- include "citysense.componentLabels" (list $ $component) | nindent 4 }}
  annotations:
    {{- include "citysense.configChecksums" $ | nindent 4 }}
  podSecurityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
  env:
    {{- include "citysense.spark.env" $ | nindent 4 }}
  volumeMounts:
    {{- include "citysense.spark.volumeMounts" $ | nindent 4 }}
  {{- with $v.driver.livenessProbe }}
  template:
    spec:
      containers:
        - name: spark-kubernetes-driver
          livenessProbe:
            {{- toYaml . | nindent 12 }}
  {{- end }}
{{- $extra := 0 }}
{{- if eq $role "stream" }}
{{- $slots := include "citysense.spark.realtimeSlots" $ | atoi }}
{{- $extra = div (add (mul 2 $slots) (sub $executor.instances 1)) $executor.instances }}
{{- end }}
executor:
  instances: {{ $executor.instances }}
  # task slots: the cores, plus this executor's share of twice the real-time query's always-running tasks (a new
  # real-time batch starts while the old one's last tasks may still hold their slots)
  cores: {{ add $executor.cores $extra }}
  {{- with $executor.coreLimit }}
  coreLimit: {{ . | quote }}
  {{- end }}
  memory: {{ $executor.memory | quote }}
  {{- with $executor.memoryOverhead }}
  memoryOverhead: {{ . | quote }}
  {{- end }}
  labels:
    {{- include "citysense.componentLabels" (list $ $component) | nindent 4 }}
  annotations:
    {{- include "citysense.configChecksums" $ | nindent 4 }}
  podSecurityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
  env:
    {{- include "citysense.spark.env" $ | nindent 4 }}
  volumeMounts:
    {{- include "citysense.spark.volumeMounts" $ | nindent 4 }}
{{- end -}}
