{{/*
Generated secrets, kept across upgrades: each value is read back with `lookup` from the Secret
this release made before, and only generated when there is none (first install, or
`helm template`, which cannot look).
*/}}

{{/* The `data` of an existing Secret (base64 values), or an empty dict. (list . name) */}}
{{- define "devspace.existingSecretData" -}}
{{- $ := index . 0 -}}
{{- $found := lookup "v1" "Secret" $.Release.Namespace (index . 1) -}}
{{- toYaml (default (dict) (get (default (dict) $found) "data")) -}}
{{- end -}}

{{/*
Every generated key at once, as YAML: base64 values for the Secrets, and the two public key
lines derived from the private keys. Made once per rendering and kept on the root context:
templates share it, so a ConfigMap's public key always matches its Secret's private key, even
on a first install where nothing can be looked up.
*/}}
{{- define "devspace.generatedKeys" -}}
{{- if not (hasKey . "devspaceGeneratedKeys") -}}
{{- $_ := set . "devspaceGeneratedKeys" (include "devspace.makeKeys" .) -}}
{{- end -}}
{{- get . "devspaceGeneratedKeys" -}}
{{- end -}}

{{- define "devspace.makeKeys" -}}
{{- $fullname := include "devspace.fullname" . -}}
{{- $server := include "devspace.existingSecretData" (list . (printf "%s-server" $fullname)) | fromYaml -}}
{{- $auth := include "devspace.existingSecretData" (list . (printf "%s-gateway-auth" $fullname)) | fromYaml -}}
{{- $host := include "devspace.existingSecretData" (list . (printf "%s-gateway-host-key" $fullname)) | fromYaml -}}
{{- $metrics := include "devspace.existingSecretData" (list . (printf "%s-metrics" $fullname)) | fromYaml -}}
{{- $admin := include "devspace.existingSecretData" (list . (printf "%s-bootstrap-admin" $fullname)) | fromYaml -}}
{{- $sealing := include "devspace.existingSecretData" (list . (printf "%s-host-key-encryption" $fullname)) | fromYaml -}}
{{- $caKey := get $server "ssh-ca-key" | default (genPrivateKey "ed25519" | b64enc) -}}
{{- $hostKey := get $host "ssh_host_key" | default (genPrivateKey "ecdsa" | b64enc) -}}
secretKey: {{ get $server "secret-key" | default (randAlphaNum 64 | b64enc) | quote }}
sshCAKey: {{ $caKey | quote }}
sshCAPublicKey: {{ include "devspace.ed25519PublicKey" (b64dec $caKey) | quote }}
gatewaySecret: {{ get $auth "secret" | default (randAlphaNum 64 | b64enc) | quote }}
gatewayHostKey: {{ $hostKey | quote }}
gatewayHostPublicKey: {{ include "devspace.ecdsaP256PublicKey" (b64dec $hostKey) | quote }}
metricsToken: {{ get $metrics "token" | default (randAlphaNum 64 | b64enc) | quote }}
bootstrapAdminPassword: {{ get $admin "password" | default (randAlphaNum 32 | b64enc) | quote }}
{{- /* randBytes gives 32 random bytes in base64: the key file's one line. */}}
hostKeyEncryptionKeys: {{ get $sealing "keys" | default (randBytes 32 | b64enc) | quote }}
{{- end -}}

{{/*
OpenSSH public key lines from PEM private keys. Helm has no function for this, but it can
sign a throwaway certificate with the key: the certificate's SubjectPublicKeyInfo holds the
public key after a fixed DER prefix for each algorithm, and an OpenSSH public key is that key
in SSH wire format (RFC 4253 §6.6: length-prefixed strings). The tests check the result
against the `cryptography` package and ssh-keygen.
*/}}
{{- define "devspace.spkiKey" -}}
{{- $cert := genSelfSignedCertWithKey "devspace" nil nil 1 (index . 0) -}}
{{- $der := regexReplaceAll "-----[A-Z ]+-----|\\s" $cert.Cert "" | b64dec -}}
{{- $key := index (splitn (index . 1) 2 $der) "_1" -}}
{{- if lt (len $key) (index . 2) -}}
{{- fail "devspace: a generated key was not of the expected type (chart bug)" -}}
{{- end -}}
{{- substr 0 (index . 2) $key -}}
{{- end -}}

{{- define "devspace.ed25519PublicKey" -}}
{{- $key := include "devspace.spkiKey" (list . "\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00" 32) -}}
{{- printf "ssh-ed25519 %s" (printf "\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20%s" $key | b64enc) -}}
{{- end -}}

{{- define "devspace.ecdsaP256PublicKey" -}}
{{- $prefix := "\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00" -}}
{{- $point := include "devspace.spkiKey" (list . $prefix 65) -}}
{{- $wire := printf "\x00\x00\x00\x13ecdsa-sha2-nistp256\x00\x00\x00\x08nistp256\x00\x00\x00\x41%s" $point -}}
{{- printf "ecdsa-sha2-nistp256 %s" ($wire | b64enc) -}}
{{- end -}}

{{/* The CA's public key line: the user's, or derived from the generated key. */}}
{{- define "devspace.sshCAPublicKey" -}}
{{- if .Values.server.existingSecret -}}
{{- .Values.sshCA.publicKey | trim -}}
{{- else -}}
{{- (include "devspace.generatedKeys" . | fromYaml).sshCAPublicKey -}}
{{- end -}}
{{- end -}}

{{- define "devspace.gatewayHostPublicKey" -}}
{{- if .Values.gateway.hostKey.existingSecret -}}
{{- .Values.gateway.hostKey.publicKey | trim -}}
{{- else -}}
{{- (include "devspace.generatedKeys" . | fromYaml).gatewayHostPublicKey -}}
{{- end -}}
{{- end -}}
