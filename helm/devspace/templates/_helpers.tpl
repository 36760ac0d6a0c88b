{{/* Names, labels, images and the security settings every workload shares. */}}

{{- define "devspace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "devspace.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "devspace.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "devspace.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: `include "devspace.selectorLabels" (list . "api")`. */}}
{{- define "devspace.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "devspace.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "devspace.labels" -}}
{{- $ := index . 0 -}}
{{ include "devspace.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: devspace
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* `repository:tag` or `repository@digest`; the tag defaults to the appVersion. */}}
{{- define "devspace.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "devspace.serverImage" -}}
{{- include "devspace.image" (list .Values.image .) -}}
{{- end -}}

{{- define "devspace.sshdImage" -}}
{{- include "devspace.image" (list .Values.sshdImage .) -}}
{{- end -}}

{{- define "devspace.instance" -}}
{{- default .Release.Name .Values.spaces.instance -}}
{{- end -}}

{{- define "devspace.apiUrl" -}}
{{- printf "http://%s-api.%s.svc.%s:%v" (include "devspace.fullname" .) .Release.Namespace .Values.clusterDomain .Values.api.service.port -}}
{{- end -}}

{{/* The Secret names: the user's own, or the chart's generated one. */}}
{{- define "devspace.serverSecret" -}}
{{- default (printf "%s-server" (include "devspace.fullname" .)) .Values.server.existingSecret -}}
{{- end -}}
{{- define "devspace.gatewayAuthSecret" -}}
{{- default (printf "%s-gateway-auth" (include "devspace.fullname" .)) .Values.gateway.existingAuthSecret -}}
{{- end -}}
{{- define "devspace.gatewayHostKeySecret" -}}
{{- default (printf "%s-gateway-host-key" (include "devspace.fullname" .)) .Values.gateway.hostKey.existingSecret -}}
{{- end -}}
{{- define "devspace.hostKeyEncryptionSecret" -}}
{{- default (printf "%s-host-key-encryption" (include "devspace.fullname" .)) .Values.hostKeyEncryption.existingSecret -}}
{{- end -}}
{{- define "devspace.metricsSecret" -}}
{{- default (printf "%s-metrics" (include "devspace.fullname" .)) .Values.metrics.existingSecret -}}
{{- end -}}
{{- define "devspace.bootstrapAdminSecret" -}}
{{- default (printf "%s-bootstrap-admin" (include "devspace.fullname" .)) .Values.bootstrapAdmin.existingSecret -}}
{{- end -}}
{{- define "devspace.dataClaim" -}}
{{- default (printf "%s-data" (include "devspace.fullname" .)) .Values.database.sqlite.existingClaim -}}
{{- end -}}

{{/*
Pod-level security: non-root (the images' users are 10001), seccomp RuntimeDefault, and
fsGroup so that Secret files (mode 0440) and the SQLite volume are readable by that user.
Meets the Pod Security Standard "restricted".
*/}}
{{- define "devspace.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "devspace.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "devspace.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Scheduling values of one component: `include "devspace.scheduling" .Values.api`. */}}
{{- define "devspace.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Spread replicas of a component over nodes unless the user gave an affinity. */}}
{{- define "devspace.spread" -}}
{{- $ := index . 0 -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "devspace.selectorLabels" . | nindent 12 }}
{{- end -}}
