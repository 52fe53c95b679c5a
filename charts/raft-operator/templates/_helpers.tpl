{{/* Chart name, overridable. */}}
{{- define "raft-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name if it already contains the chart name. */}}
{{- define "raft-operator.fullname" -}}
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

{{- define "raft-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Image tag: values.image.tag, else the chart's appVersion. */}}
{{- define "raft-operator.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "raft-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raft-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "raft-operator.labels" -}}
helm.sh/chart: {{ include "raft-operator.chart" . }}
{{ include "raft-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "raft-operator.tag" . | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "raft-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "raft-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-wide RBAC when watching every namespace, namespaced RBAC otherwise. */}}
{{- define "raft-operator.clusterScoped" -}}
{{- if eq .Values.watchNamespace "" }}true{{- end }}
{{- end }}
