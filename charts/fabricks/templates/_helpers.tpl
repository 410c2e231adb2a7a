{{- define "fabricks.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fabricks.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fabricks.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-node-installer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fabricks.serviceAccount" -}}
{{- default (include "fabricks.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
