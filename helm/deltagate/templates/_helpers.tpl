{{/* Chart name, truncated to a DNS label. */}}
{{- define "deltagate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or the release name when it already contains the chart name). */}}
{{- define "deltagate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The front's Deployment and Service. */}}
{{- define "deltagate.frontName" -}}
{{- printf "%s-front" (include "deltagate.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* The workers' StatefulSet and headless Service; at most 52 characters (the StatefulSet's
controller-revision-hash label adds 11 to a 63-character limit). */}}
{{- define "deltagate.workerName" -}}
{{- printf "%s-worker" (include "deltagate.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/* What the fronts resolve: one A record per ready worker pod. */}}
{{- define "deltagate.workerDns" -}}
{{- printf "%s.%s.svc.%s:%v" (include "deltagate.workerName" .) .Release.Namespace .Values.clusterDomain .Values.worker.port }}
{{- end }}

{{- define "deltagate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deltagate.labels" -}}
helm.sh/chart: {{ include "deltagate.chart" . }}
{{ include "deltagate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "deltagate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deltagate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deltagate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Pod annotations: Prometheus scrape hints + the component's own. Call with (list $ port annotations). */}}
{{- define "deltagate.podAnnotations" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with index . 2 }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment shared by fronts and workers: pod identity, tracing. Call with (list $ serviceName). */}}
{{- define "deltagate.env" -}}
{{- $root := index . 0 -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: XDG_CACHE_HOME
  value: /cache
- name: OTEL_SERVICE_NAME
  value: {{ index . 1 | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.instance.id=$(POD_NAME)"
{{- with $root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/json
{{- end }}
{{- with $root.Values.otel.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $root.Values.otel.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The model volume (model.source pvc or hostPath). */}}
{{- define "deltagate.modelVolume" -}}
{{- if eq .Values.model.source "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ required "model.pvc.claimName is required with model.source=pvc" .Values.model.pvc.claimName }}
    readOnly: true
{{- else if eq .Values.model.source "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.hostPath.path is required with model.source=hostPath" .Values.model.hostPath.path }}
    type: {{ .Values.model.hostPath.type }}
{{- end }}
{{- end }}

{{/* The Secret holding the workers' shared token: workerAuth.existingSecret, or the chart's own. */}}
{{- define "deltagate.workerTokenSecret" -}}
{{- .Values.workerAuth.existingSecret | default (printf "%s-worker-token" (include "deltagate.fullname" . | trunc 50 | trimSuffix "-")) }}
{{- end }}

{{/* The token as a file, /etc/deltagate/worker-token/token, in front and worker pods (readable by the
pod's fsGroup). The volume; the mount is deltagate.workerTokenMount. */}}
{{- define "deltagate.workerTokenVolume" -}}
- name: worker-token
  secret:
    secretName: {{ include "deltagate.workerTokenSecret" . }}
    defaultMode: 0440
    items:
      {{- if .Values.workerAuth.existingSecret }}
      - key: {{ .Values.workerAuth.secretKey }}
      {{- else }}
      - key: token
      {{- end }}
        path: token
{{- end }}

{{- define "deltagate.workerTokenMount" -}}
- name: worker-token
  mountPath: /etc/deltagate/worker-token
  readOnly: true
{{- end }}
