{{/*
Combinations that cannot work fail the rendering with a message saying what to change; the
schema (values.schema.json) has already checked each value on its own.
*/}}
{{- define "devspace.validate" -}}
{{- $v := .Values -}}
{{- if not $v.publicUrl -}}
{{- fail "devspace: publicUrl is required: set it to the https:// address people and the CLI reach the API at (for example --set publicUrl=https://devspace.example.com)" -}}
{{- end -}}
{{- if and (eq $v.database.type "sqlite") (gt (int $v.api.replicas) 1) -}}
{{- fail (printf "devspace: api.replicas is %d but database.type is sqlite: a SQLite file can be written by one API pod only. Use database.type=postgresql with database.postgresql.existingSecret for several replicas, or set api.replicas=1" (int $v.api.replicas)) -}}
{{- end -}}
{{- if and (eq $v.database.type "postgresql") (not $v.database.postgresql.existingSecret) -}}
{{- fail "devspace: database.type is postgresql but database.postgresql.existingSecret is empty: name the Secret that holds the database URL (key database.postgresql.key)" -}}
{{- end -}}
{{- if and $v.server.existingSecret (not $v.sshCA.publicKey) -}}
{{- fail (printf "devspace: server.existingSecret is %s but sshCA.publicKey is empty: the gateway must trust the CA's public key; set it to the .pub line of the key in ssh-ca-key (--set-file sshCA.publicKey=ca.pub)" $v.server.existingSecret) -}}
{{- end -}}
{{- if and $v.gateway.hostKey.existingSecret (not $v.gateway.hostKey.publicKey) -}}
{{- fail (printf "devspace: gateway.hostKey.existingSecret is %s but gateway.hostKey.publicKey is empty: the API publishes it for the CLI to pin; set it to the .pub line of the host key" $v.gateway.hostKey.existingSecret) -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.host) -}}
{{- fail "devspace: ingress.enabled is true but ingress.host is empty: set it to the host name of publicUrl" -}}
{{- end -}}
{{- if and $v.ingress.enabled (ne (urlParse $v.publicUrl).hostname $v.ingress.host) -}}
{{- fail (printf "devspace: ingress.host is %s but publicUrl is %s: sign-in redirects and cookies use publicUrl, so they must name the same host" $v.ingress.host $v.publicUrl) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.gateway.service.nodePort)) (ne $v.gateway.service.type "NodePort") -}}
{{- fail (printf "devspace: gateway.service.nodePort is set but gateway.service.type is %s: a node port is only used with type NodePort" $v.gateway.service.type) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.api.service.nodePort)) (ne $v.api.service.type "NodePort") -}}
{{- fail (printf "devspace: api.service.nodePort is set but api.service.type is %s: a node port is only used with type NodePort" $v.api.service.type) -}}
{{- end -}}
{{- if and $v.bootstrapAdmin.existingSecret (not $v.bootstrapAdmin.username) -}}
{{- fail (printf "devspace: bootstrapAdmin.existingSecret is %s but bootstrapAdmin.username is empty: set the username the password is for" $v.bootstrapAdmin.existingSecret) -}}
{{- end -}}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) -}}
{{- fail "devspace: metrics.serviceMonitor.enabled needs metrics.enabled: without a token /metrics answers 503" -}}
{{- end -}}
{{- end -}}
