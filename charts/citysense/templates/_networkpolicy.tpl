{{/* Egress rules shared by the NetworkPolicies. */}}
{{- define "citysense.np.dnsEgress" -}}
# DNS
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}
{{- define "citysense.np.kafkaEgress" -}}
# Kafka brokers (Strimzi pods carry strimzi.io/kind=Kafka)
- to:
    - podSelector:
        matchLabels:
          strimzi.io/kind: Kafka
  ports:
    {{- range .Values.networkPolicy.kafkaPorts }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- define "citysense.np.cassandraEgress" -}}
# Cassandra (K8ssandra pods carry app.kubernetes.io/name=cassandra)
- to:
    - podSelector:
        matchLabels:
          app.kubernetes.io/name: cassandra
  ports:
    {{- range .Values.networkPolicy.cassandraPorts }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
