{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to the 63 characters DNS names allow. */}}
{{- define "citysense.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full resource-name prefix: the release name, plus the chart name unless the release name already contains it.
Components append "-<component>", so the prefix leaves room for the longest suffix ("-scorer-checkpoint").
*/}}
{{- define "citysense.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's resources: include "citysense.componentName" (list . "alert-api") */}}
{{- define "citysense.componentName" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "citysense.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "citysense.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "citysense.labels" -}}
helm.sh/chart: {{ include "citysense.chart" . }}
app.kubernetes.io/name: {{ include "citysense.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: citysense
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: include "citysense.componentLabels" (list . "notifier") */}}
{{- define "citysense.componentLabels" -}}
{{ include "citysense.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Immutable selector labels of one component: include "citysense.selectorLabels" (list . "notifier") */}}
{{- define "citysense.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "citysense.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Image reference of a component: include "citysense.image" (list . .Values.notifier.image) */}}
{{- define "citysense.image" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 -}}
{{- $repository := $image.repository -}}
{{- with $ctx.Values.global.imageRegistry -}}
{{- $repository = printf "%s/%s" . $repository -}}
{{- end -}}
{{- $tag := default (default $ctx.Chart.AppVersion $ctx.Values.image.tag) $image.tag | toString -}}
{{- if $image.digest -}}
{{- printf "%s:%s@%s" $repository $tag $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "citysense.imagePullPolicy" -}}
{{- $ctx := index . 0 -}}
{{- default $ctx.Values.image.pullPolicy (index . 1).pullPolicy -}}
{{- end -}}

{{- define "citysense.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "citysense.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "citysense.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Names of the generated/referenced Secrets and ConfigMaps. */}}
{{- define "citysense.configMapName" -}}{{ include "citysense.componentName" (list . "config") }}{{- end -}}
{{- define "citysense.apiTokenSecretName" -}}
{{- default (include "citysense.componentName" (list . "api-token")) .Values.alertApi.auth.existingSecret -}}
{{- end -}}
{{- define "citysense.citizenSecretName" -}}
{{- default (include "citysense.componentName" (list . "citizen-secret")) .Values.citizen.existingSecret -}}
{{- end -}}
{{- define "citysense.checkpointClaimName" -}}
{{- default (include "citysense.componentName" (list . "scorer-checkpoint")) .Values.scorer.checkpoint.persistentVolumeClaim.existingClaim -}}
{{- end -}}

{{/* Pod annotations that roll pods when their configuration changes. */}}
{{- define "citysense.configChecksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{/* Environment shared by every service (CITYSENSE_* settings of citysense_common.settings.CommonSettings). */}}
{{- define "citysense.commonEnv" -}}
- name: CITYSENSE_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrapServers | quote }}
{{- with .Values.kafka.options }}
- name: CITYSENSE_KAFKA_OPTIONS
  value: {{ toJson . | quote }}
{{- end }}
- name: CITYSENSE_READINGS_TOPIC
  value: {{ .Values.kafka.topics.readings.name | quote }}
- name: CITYSENSE_ALERTS_TOPIC
  value: {{ .Values.kafka.topics.alerts.name | quote }}
- name: CITYSENSE_DLQ_TOPIC
  value: {{ .Values.kafka.topics.dlq.name | quote }}
- name: CITYSENSE_WEBHOOK_TESTS_TOPIC
  value: {{ .Values.kafka.topics.webhookTests.name | quote }}
- name: CITYSENSE_WEBHOOK_RETRIES_TOPIC
  value: {{ .Values.kafka.topics.webhookRetries.name | quote }}
- name: CITYSENSE_CITIZEN_MAIL_TOPIC
  value: {{ .Values.kafka.topics.citizenMail.name | quote }}
- name: CITYSENSE_ENV
  value: {{ .Values.config.environment | quote }}
- name: CITYSENSE_CONFIG_DIR
  value: /etc/citysense
- name: CITYSENSE_METRICS_FILE
  value: /etc/citysense/metrics.yaml
- name: CITYSENSE_RULES_FILE
  value: /etc/citysense/rules.yaml
- name: CITYSENSE_PROFILE
  value: {{ .Values.config.profile | quote }}
- name: CITYSENSE_DATA_DIR
  value: /var/lib/citysense
- name: CITYSENSE_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: CITYSENSE_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
{{- end -}}

{{/* Citizens' subscriptions (citysense_common.citizen.settings.CitizenSettings): the alert API and the notifier share
the link-signing secret and the public URL. */}}
{{- define "citysense.citizenEnv" -}}
- name: CITYSENSE_CITIZEN_PUBLIC_URL
  value: {{ .Values.citizen.publicUrl | quote }}
- name: CITYSENSE_CITIZEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "citysense.citizenSecretName" . }}
      key: {{ .Values.citizen.secretKey }}
{{- end -}}

{{/* Store settings (citysense_common.store.settings.StoreSettings) with credentials from the K8ssandra Secret. */}}
{{- define "citysense.storeEnv" -}}
{{- $c := .Values.cassandra -}}
- name: CITYSENSE_STORE
  value: cassandra
- name: CITYSENSE_CASSANDRA_HOSTS
  value: {{ join "," $c.hosts | quote }}
- name: CITYSENSE_CASSANDRA_PORT
  value: {{ $c.port | quote }}
- name: CITYSENSE_CASSANDRA_KEYSPACE
  value: {{ $c.keyspace | quote }}
- name: CITYSENSE_CASSANDRA_LOCAL_DC
  value: {{ $c.localDC | quote }}
- name: CITYSENSE_CASSANDRA_CONSISTENCY
  value: {{ $c.consistency | quote }}
- name: CITYSENSE_CASSANDRA_REPLICATION_STRATEGY
  value: {{ $c.replication.strategy | quote }}
{{- if eq $c.replication.strategy "NetworkTopologyStrategy" }}
- name: CITYSENSE_CASSANDRA_REPLICATION_DCS
  value: {{ toJson $c.replication.datacenters | quote }}
{{- else }}
- name: CITYSENSE_CASSANDRA_REPLICATION_FACTOR
  value: {{ $c.replication.factor | quote }}
{{- end }}
- name: CITYSENSE_READINGS_TTL_DAYS
  value: {{ $c.readingsTtlDays | quote }}
- name: CITYSENSE_CASSANDRA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $c.auth.existingSecret }}
      key: {{ $c.auth.usernameKey }}
- name: CITYSENSE_CASSANDRA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.auth.existingSecret }}
      key: {{ $c.auth.passwordKey }}
{{- end -}}

{{/* Volumes every citysense pod mounts: config, a writable data dir and /tmp (the root filesystem is read-only). */}}
{{- define "citysense.volumes" -}}
- name: config
  configMap:
    name: {{ include "citysense.configMapName" . }}
- name: data
  emptyDir:
    sizeLimit: 256Mi
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "citysense.volumeMounts" -}}
- name: config
  mountPath: /etc/citysense
  readOnly: true
- name: data
  mountPath: /var/lib/citysense
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Scheduling knobs of a component. */}}
{{- define "citysense.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Scaling checks that the schema cannot express (it sees one value at a time). Rendered by NOTES and every workload.
*/}}
{{- define "citysense.validate" -}}
{{- $alerts := int .Values.kafka.topics.alerts.partitions -}}
{{- $readings := int .Values.kafka.topics.readings.partitions -}}
{{- if and .Values.notifier.enabled (gt (int .Values.notifier.replicas) $alerts) -}}
{{- fail (printf "notifier.replicas (%d) must not exceed kafka.topics.alerts.partitions (%d): extra consumers in the group get no partition" (int .Values.notifier.replicas) $alerts) -}}
{{- end -}}
{{- if and .Values.scorer.enabled (gt (int .Values.scorer.executor.instances) $readings) -}}
{{- fail (printf "scorer.executor.instances (%d) must not exceed kafka.topics.readings.partitions (%d): the reader makes one task per partition" (int .Values.scorer.executor.instances) $readings) -}}
{{- end -}}
{{- range $name := list "simulator" "alertApi" -}}
{{- $hpa := (index $.Values $name).autoscaling -}}
{{- if and $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" $name (int $hpa.minReplicas) (int $hpa.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.alertApi.enabled .Values.alertApi.podDisruptionBudget.enabled (not .Values.alertApi.autoscaling.enabled) (ge (int .Values.alertApi.podDisruptionBudget.maxUnavailable) (int .Values.alertApi.replicas)) (gt (int .Values.alertApi.replicas) 1) -}}
{{- fail (printf "alertApi.podDisruptionBudget.maxUnavailable (%d) must be below alertApi.replicas (%d) or the PDB protects nothing" (int .Values.alertApi.podDisruptionBudget.maxUnavailable) (int .Values.alertApi.replicas)) -}}
{{- end -}}
{{- if and .Values.scorer.enabled (has "ReadWriteOnce" .Values.scorer.checkpoint.persistentVolumeClaim.accessModes) (has "ReadWriteMany" .Values.scorer.checkpoint.persistentVolumeClaim.accessModes) -}}
{{- fail "scorer.checkpoint.persistentVolumeClaim.accessModes: choose ReadWriteOnce or ReadWriteMany, not both" -}}
{{- end -}}
{{- if and .Values.notifier.enabled .Values.notifier.smtp.host (regexMatch "^https?://(127\\.|localhost)" .Values.citizen.publicUrl) -}}
{{- fail (printf "citizen.publicUrl (%s) is a loopback address: set it to the URL citizens reach the citizen page at, or the links in their email lead nowhere" .Values.citizen.publicUrl) -}}
{{- end -}}
{{- if and (eq .Values.cassandra.replication.strategy "NetworkTopologyStrategy") (not .Values.cassandra.replication.datacenters) -}}
{{- fail "cassandra.replication.datacenters is required with NetworkTopologyStrategy" -}}
{{- end -}}
{{- end -}}
