{{- define "mcpgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcpgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mcpgate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mcpgate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcpgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcpgate.labels" -}}
{{ include "mcpgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mcpgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcpgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The public host: probes send it as Host, so the gateway's Host check
     (allowed_hosts, DNS rebinding) accepts them. */}}
{{- define "mcpgate.publicHost" -}}
{{- required "config.public_url is required: the URL clients use (https://mcp.example.com)" (get .Values.config "public_url") | urlParse | dig "host" "" -}}
{{- end -}}

{{/* The configuration file: values' config plus what the chart's own
     switches imply (built-in AS, its PostgreSQL DSN variable). */}}
{{- define "mcpgate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if .Values.authorizationServer.builtin -}}
{{- $b := deepCopy .Values.authorizationServer.settings -}}
{{- if .Values.authorizationServer.postgres.enabled -}}
{{- $_ := set $b "store_env" "MCPGATE_AUTHSERVER_DSN" -}}
{{- end -}}
{{- $_ := set $cfg "authorization_server" "builtin" -}}
{{- $_ := set $cfg "builtin" $b -}}
{{- end -}}
{{- if .Values.state.redis.enabled -}}
{{- $st := get $cfg "state" | default dict | deepCopy -}}
{{- $r := get $st "redis" | default dict | deepCopy -}}
{{- $_ := set $r "url" .Values.state.redis.url -}}
{{- with .Values.state.redis.username }}{{ $_ := set $r "username" . }}{{ end -}}
{{- if .Values.state.redis.existingSecret -}}
{{- $_ := set $r "password_env" "MCPGATE_REDIS_PASSWORD" -}}
{{- end -}}
{{- $_ := set $st "redis" $r -}}
{{- if .Values.state.replica.existingSecret -}}
{{- $rep := get $st "replica" | default dict | deepCopy -}}
{{- $_ := set $rep "secret_env" "MCPGATE_HOP_KEY" -}}
{{- $_ := set $st "replica" $rep -}}
{{- end -}}
{{- $_ := set $cfg "state" $st -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "mcpgate.checks" -}}
{{- if and .Values.authorizationServer.builtin (not .Values.authorizationServer.postgres.enabled) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) -}}
{{- fail "authorizationServer.builtin with more than one replica needs authorizationServer.postgres.enabled (the bbolt store is one gateway per file): enable PostgreSQL, or set replicaCount: 1 and autoscaling.enabled: false" -}}
{{- end -}}
{{- if and .Values.authorizationServer.postgres.enabled (not .Values.authorizationServer.postgres.existingSecret) -}}
{{- fail "authorizationServer.postgres.existingSecret is required: the name of a Secret holding the PostgreSQL DSN under authorizationServer.postgres.dsnKey" -}}
{{- end -}}
{{- if and .Values.authorizationServer.postgres.enabled (not .Values.authorizationServer.builtin) -}}
{{- fail "authorizationServer.postgres.enabled needs authorizationServer.builtin: true (PostgreSQL is the built-in authorization server's store)" -}}
{{- end -}}
{{- if and .Values.state.redis.enabled (not .Values.state.redis.url) -}}
{{- fail "state.redis.enabled needs state.redis.url (redis://host:6379/0 or rediss://…)" -}}
{{- end -}}
{{- if and .Values.state.redis.url (contains "@" .Values.state.redis.url) -}}
{{- fail "state.redis.url must not carry a password (values are not secret, and the gateway refuses it): put the password in a Secret and set state.redis.existingSecret" -}}
{{- end -}}
{{- if and .Values.state.replica.existingSecret (not .Values.state.redis.enabled) -}}
{{- fail "state.replica.existingSecret needs state.redis.enabled: replicas find each other's sessions in Redis" -}}
{{- end -}}
{{- if or (hasKey .Values.config "listen") (hasKey (get .Values.config "metrics" | default dict) "listen") -}}
{{- fail "config.listen and config.metrics.listen are set by the chart from service.port and metrics.port: remove them from config" -}}
{{- end -}}
{{- end -}}

{{/* The container environment: state and store settings, then secretEnv
     (secretKeyRef only), then plain env. */}}
{{- define "mcpgate.env" -}}
{{- if and .Values.state.redis.enabled .Values.state.redis.existingSecret }}
- name: MCPGATE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.state.redis.existingSecret }}
      key: {{ .Values.state.redis.passwordKey }}
{{- end }}
{{- if and .Values.state.redis.enabled .Values.state.replica.existingSecret }}
- name: MCPGATE_POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: MCPGATE_ADVERTISE_URL
  value: "http://$(MCPGATE_POD_IP):{{ .Values.service.port }}"
- name: MCPGATE_HOP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.state.replica.existingSecret }}
      key: {{ .Values.state.replica.secretKey }}
{{- end }}
{{- if .Values.authorizationServer.postgres.enabled }}
- name: MCPGATE_AUTHSERVER_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.authorizationServer.postgres.existingSecret }}
      key: {{ .Values.authorizationServer.postgres.dsnKey }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- with .Values.env }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
