{{/* The release's base name: the release name, unless it already names the chart. */}}
{{- define "klg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "klg.nodeName" -}}
{{- printf "%s-node" (include "klg.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "klg.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role: include "klg.selector" (list . "gateway") */}}
{{- define "klg.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "klg.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "klg.tlsSecret" -}}
{{- if .Values.gateway.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "klg.fullname" .) -}}
{{- else -}}
{{- required "gateway.tls.existingSecret: name a Secret with tls.crt, tls.key and ca.crt, or enable gateway.tls.certManager" .Values.gateway.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The elasticsearch section both roles share, as a dict. */}}
{{- define "klg.elasticsearchConfig" -}}
{{- $es := .Values.elasticsearch -}}
{{- $dir := "/etc/kube-log-gateway/elasticsearch" -}}
{{- $auth := dict -}}
{{- if eq $es.auth "api_key" -}}
{{- $_ := set $auth "api_key_file" (printf "%s/api_key" $dir) -}}
{{- else if eq $es.auth "basic" -}}
{{- $_ := set $auth "password_file" (printf "%s/password" $dir) -}}
{{- else if eq $es.auth "bearer_token" -}}
{{- $_ := set $auth "bearer_token_file" (printf "%s/bearer_token" $dir) -}}
{{- else if ne $es.auth "none" -}}
{{- fail (printf "elasticsearch.auth: must be api_key, basic, bearer_token or none (got %q)" $es.auth) -}}
{{- end -}}
{{- if and (ne $es.auth "none") (not $es.existingSecret) -}}
{{- fail (printf "elasticsearch.existingSecret: elasticsearch.auth is %s, so name the Secret that holds the credentials" $es.auth) -}}
{{- end -}}
{{- if and $es.ca (not $es.existingSecret) -}}
{{- fail "elasticsearch.existingSecret: elasticsearch.ca is true, so name the Secret that holds ca.crt" -}}
{{- end -}}
{{- $out := dict "urls" $es.urls -}}
{{- if $auth -}}{{- $_ := set $out "auth" $auth -}}{{- end -}}
{{- if $es.ca -}}{{- $_ := set $out "tls" (dict "ca_file" (printf "%s/ca.crt" $dir)) -}}{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Whether the Elasticsearch Secret is mounted. */}}
{{- define "klg.esSecretMounted" -}}
{{- if and .Values.elasticsearch.existingSecret (or (ne .Values.elasticsearch.auth "none") .Values.elasticsearch.ca) -}}true{{- end -}}
{{- end -}}

{{/* Container env both roles share: NODE_NAME, the basic-auth user, extraEnv. */}}
{{- define "klg.env" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if eq .Values.elasticsearch.auth "basic" }}
- name: KLG__ELASTICSEARCH__AUTH__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.elasticsearch.existingSecret }}
      key: username
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "klg.esVolumeMount" -}}
{{- if include "klg.esSecretMounted" . }}
- name: elasticsearch
  mountPath: /etc/kube-log-gateway/elasticsearch
  readOnly: true
{{- end }}
{{- end -}}

{{- define "klg.esVolume" -}}
{{- if include "klg.esSecretMounted" . }}
- name: elasticsearch
  secret:
    secretName: {{ .Values.elasticsearch.existingSecret }}
{{- end }}
{{- end -}}

{{/* The webhook URL kube-apiserver posts to. */}}
{{- define "klg.webhookURL" -}}
{{- if .Values.controlPlane.webhookURL -}}
{{- .Values.controlPlane.webhookURL -}}
{{- else -}}
{{- $ip := required "controlPlane.webhookURL: set it, or gateway.service.clusterIP (kube-apiserver cannot resolve Service names)" .Values.gateway.service.clusterIP -}}
{{- printf "https://%s:%v%s" $ip .Values.gateway.port .Values.gateway.auditPath -}}
{{- end -}}
{{- end -}}
