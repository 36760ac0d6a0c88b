{{/* Environment the server's containers need beyond the shared ConfigMap. */}}

{{/* The data directory always; the URL only for PostgreSQL (SQLite's file is in the data
directory by default). Both are all `devspace-server migrate` reads. */}}
{{- define "devspace.databaseEnv" -}}
- {name: DEVSPACE_DATA_DIR, value: /var/lib/devspace}
{{- if eq .Values.database.type "postgresql" }}
- name: DEVSPACE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.postgresql.existingSecret }}
      key: {{ .Values.database.postgresql.key }}
{{- end }}
{{- end -}}

{{/*
Upstream sign-in providers as DEVSPACE_UPSTREAM_* variables (auth/providers.py); each client
secret is a file from the provider's Secret, never a variable.
*/}}
{{- define "devspace.upstreamEnv" -}}
{{- if .Values.upstream }}
{{- $names := list }}
{{- range .Values.upstream }}{{ $names = append $names .name }}{{ end }}
- {name: DEVSPACE_UPSTREAM_PROVIDERS, value: {{ join "," $names | quote }}}
{{- $keys := dict "type" "TYPE" "title" "TITLE" "discoveryUrl" "DISCOVERY_URL" "url" "URL" "clientId" "CLIENT_ID" "scopes" "SCOPES" "allowedDomains" "ALLOWED_DOMAINS" "allowedGroups" "ALLOWED_GROUPS" "groupsClaim" "GROUPS_CLAIM" "adminGroup" "ADMIN_GROUP" "linkVerifiedEmail" "LINK_VERIFIED_EMAIL" }}
{{- range $provider := .Values.upstream }}
{{- $prefix := printf "DEVSPACE_UPSTREAM_%s_" (upper $provider.name) }}
{{- range $key, $variable := $keys }}
{{- if hasKey $provider $key }}
{{- $value := get $provider $key }}
{{- if kindIs "slice" $value }}{{ $value = join "," $value }}{{ end }}
- {name: {{ $prefix }}{{ $variable }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- end }}
- {name: {{ $prefix }}CLIENT_SECRET_FILE, value: /etc/devspace/upstream/{{ $provider.name }}/client-secret}
{{- end }}
{{- end }}
{{- end -}}

{{- define "devspace.upstreamVolume" -}}
{{- if .Values.upstream }}
- name: upstream
  projected:
    defaultMode: 0440
    sources:
      {{- range .Values.upstream }}
      - secret:
          name: {{ .clientSecret.existingSecret }}
          items:
            - {key: {{ .clientSecret.key | default "client-secret" }}, path: {{ .name }}/client-secret}
      {{- end }}
{{- end }}
{{- end -}}
