{{/*
Helpers shared by the hubbub chart's templates: names, labels and image references.
*/}}

{{/* hubbub.name: the chart name, or nameOverride. */}}
{{- define "hubbub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
hubbub.fullname: "<release>-<name>" (or fullnameOverride), at most 46 characters
so that the longest suffix ("-operator-metrics", 17) keeps names within 63.
*/}}
{{- define "hubbub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* hubbub.operatorName: the name of the operator's Deployment, Service, Lease, RBAC. */}}
{{- define "hubbub.operatorName" -}}
{{- printf "%s-operator" (include "hubbub.fullname" .) }}
{{- end }}

{{/* hubbub.chart: "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "hubbub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* hubbub.labels: the standard labels of every object. */}}
{{- define "hubbub.labels" -}}
helm.sh/chart: {{ include "hubbub.chart" . }}
app.kubernetes.io/name: {{ include "hubbub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hubbub
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* hubbub.operatorSelectorLabels: the immutable selector of the operator pods. */}}
{{- define "hubbub.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hubbub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* hubbub.operatorLabels: the standard labels plus the operator component. */}}
{{- define "hubbub.operatorLabels" -}}
{{ include "hubbub.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* hubbub.serviceAccountName: the ServiceAccount the operator runs as. */}}
{{- define "hubbub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubbub.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
hubbub.image: "repository@digest" when a digest is set, else "repository:tag",
the tag defaulting to defaultTag. Call with
(dict "image" .Values.x.image "defaultTag" .Chart.AppVersion).
*/}}
{{- define "hubbub.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .defaultTag $image.tag | toString) }}
{{- end }}
{{- end }}
