{{/* Names and labels. */}}
{{- define "oomstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oomstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "oomstream.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "oomstream.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oomstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oomstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oomstream.labels" -}}
{{ include "oomstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "oomstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oomstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "oomstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where Secrets are mounted in the container. */}}
{{- define "oomstream.saslPasswordPath" -}}/etc/oomstream/secrets/sasl/{{ .Values.kafka.security.sasl.passwordSecret.key }}{{- end -}}
{{- define "oomstream.tlsDir" -}}/etc/oomstream/secrets/tls{{- end -}}

{{/*
The service's configuration as a dict, put in .holder.config (a dict cannot be returned from a
template without a YAML round trip), rendered to TOML by the ConfigMap. This is the one place that
maps chart values to configuration keys: when the configuration layout changes, only this changes.
.Values.config is merged last and wins.
*/}}
{{- define "oomstream.configDict" -}}
{{- $v := .root.Values -}}
{{- $sec := $v.kafka.security -}}
{{- $kafka := dict
    "bootstrap_servers" $v.kafka.bootstrapServers
    "events_topic" $v.kafka.topics.events
    "dead_letter_topic" $v.kafka.topics.deadLetter
    "key_fields" $v.kafka.keyFields
    "topic_policy" $v.kafka.topicPolicy
    "topic_partitions" (int $v.kafka.topicPartitions)
    "security_protocol" $sec.protocol -}}
{{- if hasPrefix "SASL_" $sec.protocol -}}
{{- $_ := set $kafka "sasl_mechanism" $sec.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_username" (required "kafka.security.sasl.username is required with a SASL protocol" $sec.sasl.username) -}}
{{- $_ := required "kafka.security.sasl.passwordSecret.name is required with a SASL protocol" $sec.sasl.passwordSecret.name -}}
{{- $_ := set $kafka "sasl_password_file" (include "oomstream.saslPasswordPath" .root) -}}
{{- end -}}
{{- if hasSuffix "SSL" $sec.protocol -}}
{{- $_ := set $kafka "ssl_check_hostname" $sec.tls.checkHostname -}}
{{- if $sec.tls.secretName -}}
{{- if $sec.tls.caKey -}}{{- $_ := set $kafka "ssl_cafile" (printf "%s/%s" (include "oomstream.tlsDir" .root) $sec.tls.caKey) -}}{{- end -}}
{{- if $sec.tls.certKey -}}{{- $_ := set $kafka "ssl_certfile" (printf "%s/%s" (include "oomstream.tlsDir" .root) $sec.tls.certKey) -}}{{- end -}}
{{- if $sec.tls.keyKey -}}{{- $_ := set $kafka "ssl_keyfile" (printf "%s/%s" (include "oomstream.tlsDir" .root) $sec.tls.keyKey) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $sources := dict "enabled" (list $v.sources.kind) -}}
{{- $kube := dict
    "mode" (ternary "in_cluster" "off" $v.enrichment.enabled)
    "watch_events" $v.enrichment.watchEvents
    "label_allowlist" $v.enrichment.labelAllowlist
    "annotation_allowlist" $v.enrichment.annotationAllowlist
    "max_backfill_occurrences" $v.enrichment.bounds.maxBackfillOccurrences
    "max_ledger_signals" $v.enrichment.bounds.maxLedgerSignals -}}
{{- $sinks := dict "enabled" (list "kafka") "kafka" $kafka -}}
{{- if $v.eventSink.enabled -}}
{{- /* Kafka stays first: the first sink decides delivery; the Event sink gets copies. */ -}}
{{- $events := dict
    "repeat_window_seconds" $v.eventSink.repeatWindowSeconds
    "burst_calls" $v.eventSink.burstCalls
    "refill_seconds" $v.eventSink.refillSeconds
    "queue_events" $v.eventSink.queueEvents
    "reporting_instance" $v.eventSink.reportingInstance -}}
{{- $_ := set $sinks "enabled" (list "kafka" "k8s_events") -}}
{{- $_ := set $sinks "k8s_events" $events -}}
{{- end -}}
{{- $grace := int $v.terminationGracePeriodSeconds -}}
{{- if le $grace 10 -}}
{{- fail "terminationGracePeriodSeconds must be more than 10: the service drains for that minus 10 s before the kubelet kills it" -}}
{{- end -}}
{{- $config := dict
    "sources" $sources
    "sinks" $sinks
    "kubernetes" $kube
    "pipeline" (dict "shutdown_timeout_seconds" (sub $grace 10))
    "state" (dict "directory" "/var/lib/oomstream/state")
    "spool" (dict "directory" "/var/lib/oomstream/spool" "max_bytes" $v.spool.maxBytes)
    "metrics" (dict "listen_address" (printf ":%d" (int $v.metrics.port)))
    "log" (dict "format" "json") -}}
{{- $_ := set .holder "config" (mustMergeOverwrite $config (deepCopy $v.config)) -}}
{{- end -}}

{{/*
TOML of a dict of tables (nested dicts become [a.b] tables). Written here rather than with toToml:
Helm reads every number in values as a float, and toToml would print 6 as 6.0, which the service
rightly rejects for an integer option. Whole numbers print as integers.
Call with (dict "table" $dict "path" "").
*/}}
{{- define "oomstream.toml" -}}
{{- $path := .path -}}
{{- $tables := list -}}
{{- range $key, $value := .table -}}
{{- if kindIs "map" $value -}}
{{- $tables = append $tables $key -}}
{{- else if not (kindIs "invalid" $value) -}}
{{ $key }} = {{ include "oomstream.tomlValue" $value }}
{{ end -}}
{{- end -}}
{{- range $key := $tables -}}
{{- $name := ternary $key (printf "%s.%s" $path $key) (eq $path "") }}
[{{ $name }}]
{{ include "oomstream.toml" (dict "table" (get $.table $key) "path" $name) -}}
{{- end -}}
{{- end -}}

{{- define "oomstream.tomlValue" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "oomstream.tomlValue" $item }}{{ end }}]
{{- else -}}{{ . }}
{{- end -}}
{{- end -}}
