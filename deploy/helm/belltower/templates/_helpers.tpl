{{/* Name of the chart, overridable. */}}
{{- define "belltower.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name used as the prefix of every object. */}}
{{- define "belltower.fullname" -}}
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

{{/*
The services: values key -> component name (object suffix and app.kubernetes.io/component),
the pool a worker serves, and whether it gets an HPA.
*/}}
{{- define "belltower.services" -}}
scheduler: {component: scheduler, otelName: belltower-scheduler, autoscaling: false}
notifierWorker: {component: notifier-worker, otelName: belltower-notifier-worker, pool: notifier, autoscaling: true}
integrationWorker: {component: integration-worker, otelName: belltower-integration-worker, pool: integration, autoscaling: true}
history: {component: history, otelName: belltower-history, autoscaling: true}
console: {component: console, otelName: belltower-console, autoscaling: false}
{{- end }}

{{/* Whether the service under this values key is installed. */}}
{{- define "belltower.enabled" -}}
{{- $svc := index .root.Values .key }}
{{- if or (ne .key "console") $svc.enabled }}true{{ end }}
{{- end }}

{{- define "belltower.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "belltower.labels" -}}
helm.sh/chart: {{ include "belltower.chart" . }}
{{ include "belltower.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: belltower
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "belltower.selectorLabels" -}}
app.kubernetes.io/name: {{ include "belltower.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "scheduler"). */}}
{{- define "belltower.componentLabels" -}}
{{ include "belltower.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "belltower.componentSelectorLabels" -}}
{{ include "belltower.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "belltower.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "belltower.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "belltower.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/* Full name of the bundled NATS chart's objects, as that chart computes it. */}}
{{- define "belltower.natsFullname" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "nats" .Values.nats.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "belltower.cnpgClusterName" -}}
{{- printf "%s-pg" (include "belltower.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Refuses settings that cannot work, naming the value to set. */}}
{{- define "belltower.validate" -}}
{{- if and (not .Values.cnpg.enabled) (not .Values.externalDatabase.existingSecret) }}
{{- fail "externalDatabase.existingSecret is required: name a Secret whose key externalDatabase.urlKey holds postgresql://user:password@host:5432/belltower, or set cnpg.enabled=true for a bundled CloudNativePG cluster" }}
{{- end }}
{{- if and .Values.cnpg.enabled (not (.Capabilities.APIVersions.Has "postgresql.cnpg.io/v1")) }}
{{- fail "cnpg.enabled=true needs the CloudNativePG operator (API postgresql.cnpg.io/v1): install it first, or pass --api-versions postgresql.cnpg.io/v1 to helm template" }}
{{- end }}
{{- if not .Values.nats.enabled }}
{{- if and (not .Values.externalNats.url) (not .Values.externalNats.existingSecret) }}
{{- fail "externalNats.url (e.g. nats://nats.messaging:4222) or externalNats.existingSecret is required, or set nats.enabled=true for the bundled NATS" }}
{{- end }}
{{- if contains "@" .Values.externalNats.url }}
{{- fail "externalNats.url must not carry credentials: put the URL with them in a Secret and set externalNats.existingSecret and externalNats.urlKey" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.scheduler.replicas) 2 }}
{{- fail "scheduler.replicas must be at least 2 so that another replica takes over the schedule lease when one stops" }}
{{- end }}
{{- end }}

{{/* Environment of a container: secrets by reference, settings from the ConfigMap, then per-service values. */}}
{{- define "belltower.secretEnv" -}}
- name: BELLTOWER_DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if .Values.cnpg.enabled }}
      name: {{ include "belltower.cnpgClusterName" . }}-app
      key: uri
{{- else }}
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.urlKey }}
{{- end }}
{{- if and (not .Values.nats.enabled) .Values.externalNats.existingSecret }}
- name: BELLTOWER_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalNats.existingSecret }}
      key: {{ .Values.externalNats.urlKey }}
{{- end }}
{{- if .Values.smtp.existingSecret }}
- name: BELLTOWER_SMTP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.smtp.existingSecret }}
      key: {{ .Values.smtp.usernameKey }}
- name: BELLTOWER_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.smtp.existingSecret }}
      key: {{ .Values.smtp.passwordKey }}
{{- end }}
{{- end }}

{{/* key=value,key=value in key order (OTEL_RESOURCE_ATTRIBUTES). */}}
{{- define "belltower.kvList" -}}
{{- $pairs := list }}
{{- range $k := keys . | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%v" $k (index $ $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* ["a", "b"]: a list of subjects in nats-server's config format. */}}
{{- define "belltower.natsList" -}}
[{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]
{{- end }}

{{/* BELLTOWER_NATS_PASSWORD_<ROLE>: where the bundled NATS reads a role's password. */}}
{{- define "belltower.natsPasswordVariable" -}}
BELLTOWER_NATS_PASSWORD_{{ . | upper | replace "-" "_" }}
{{- end }}

{{/* The NATS identity and TLS of one component; call with (dict "root" $ "role" "scheduler"). */}}
{{- define "belltower.natsEnv" -}}
{{- $v := .root.Values }}
{{- if $v.natsAuth.enabled }}
- name: BELLTOWER_NATS_USER
  value: {{ .role | quote }}
- name: BELLTOWER_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.natsAuth.secretName }}
      key: {{ .role }}
{{- end }}
{{- if $v.natsTls.existingSecret }}
- name: BELLTOWER_NATS_TLS_CA
  value: {{ printf "%s/%s" $v.natsTls.mountPath $v.natsTls.caKey | quote }}
{{- if $v.natsTls.certKey }}
- name: BELLTOWER_NATS_TLS_CERT
  value: {{ printf "%s/%s" $v.natsTls.mountPath $v.natsTls.certKey | quote }}
- name: BELLTOWER_NATS_TLS_KEY
  value: {{ printf "%s/%s" $v.natsTls.mountPath $v.natsTls.keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether the console is served over TLS by its ingress: then its cookie is Secure. */}}
{{- define "belltower.consoleTls" -}}
{{- if and .Values.console.ingress.enabled .Values.console.ingress.tls }}true{{ end }}
{{- end }}
