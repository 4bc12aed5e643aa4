{{/* Names */}}
{{- define "notebench.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Labels of every object; "component" is one of the contract's (docs/kubernetes.md). Call with (dict "root" $ "component" "hub"). */}}
{{- define "notebench.labels" -}}
{{ include "notebench.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "notebench.selectorLabels" -}}
app.kubernetes.io/name: notebench
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A pod selector term for a platform component of this release (NetworkPolicy peers). */}}
{{- define "notebench.peer" -}}
podSelector:
  matchLabels:
    {{- include "notebench.selectorLabels" . | nindent 4 }}
{{- end }}

{{/* image: repository:tag, the tag defaulting to the chart's appVersion. Call with (dict "root" $ "image" .Values.hub.image). */}}
{{- define "notebench.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end }}

{{/*
The restricted pod and container security contexts (Pod Security Standard "restricted"):
non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp. Every pod the chart
makes uses them; the hub and the executor give user workloads the same.
*/}}
{{- define "notebench.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .gid }}
  fsGroup: {{ .gid }}
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "notebench.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "notebench.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "notebench.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Service URLs (docs/kubernetes.md) */}}
{{- define "notebench.hubUrl" -}}http://{{ include "notebench.fullname" . }}-hub:8081{{- end }}
{{- define "notebench.executorUrl" -}}http://{{ include "notebench.fullname" . }}-executor:8090{{- end }}
{{- define "notebench.mlflowUrl" -}}http://{{ include "notebench.fullname" . }}-mlflow:5000{{- end }}

{{/*
A secret's value, base64: the value given in the values, else the one <fullname>-secrets already
holds (found by `lookup`: kept across upgrades), else a new random one.
Call with (dict "existing" <the Secret's data, or an empty dict> "key" "proxy-token" "given" "").
*/}}
{{- define "notebench.secretValue" -}}
{{- if .given -}}
{{- .given | b64enc -}}
{{- else if hasKey .existing .key -}}
{{- get .existing .key -}}
{{- else -}}
{{- /* 64 hex digits (32 bytes): JupyterHub's crypt key and cookie secret must be hex */ -}}
{{- randAlphaNum 64 | sha256sum | b64enc -}}
{{- end -}}
{{- end }}

{{/* The values the pods read: the chart's values without secrets. */}}
{{- define "notebench.publicValues" -}}
{{- $values := deepCopy .Values -}}
{{- $_ := unset $values.auth.oidc "clientSecret" -}}
{{- $_ := unset $values.postgresql.auth "password" -}}
{{- $_ := unset $values.externalDatabase "password" -}}
{{- /* image tags resolved, so that the hub and executor start user pods with the release's images */ -}}
{{- range list $values.hub.image $values.executor.image $values.executor.modelServer.image $values.singleuser.image -}}
{{- $_ := set . "tag" (default $.Chart.AppVersion .tag) -}}
{{- end -}}
{{- toYaml $values -}}
{{- end }}

{{/* Mount of the values ConfigMap at /etc/notebench and the env that says so. */}}
{{- define "notebench.valuesVolume" -}}
- name: values
  configMap:
    name: {{ include "notebench.fullname" . }}-values
{{- end }}

{{- define "notebench.valuesMount" -}}
- name: values
  mountPath: /etc/notebench
  readOnly: true
{{- end }}

{{/* Env every Notebench pod (hub, executor, MLflow) gets. */}}
{{- define "notebench.commonEnv" -}}
- name: NOTEBENCH_MODE
  value: kubernetes
- name: NOTEBENCH_VALUES
  value: /etc/notebench/values.yaml
- name: NOTEBENCH_RELEASE
  value: {{ .Release.Name }}
- name: NOTEBENCH_HUB_URL
  value: {{ include "notebench.hubUrl" . }}
- name: NOTEBENCH_EXECUTOR_URL
  value: {{ include "notebench.executorUrl" . }}
- name: NOTEBENCH_MLFLOW_URL
  value: {{ include "notebench.mlflowUrl" . }}
- name: NOTEBENCH_PROXY_PUBLIC_URL
  value: http://{{ include "notebench.fullname" . }}-proxy-public
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/* Env with a value from <fullname>-secrets. Call with (dict "root" $ "env" "NAME" "key" "proxy-token"). */}}
{{- define "notebench.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "notebench.fullname" .root }}-secrets
      key: {{ .key }}
{{- end }}

{{/*
A database URL as env, built from the PostgreSQL password (Kubernetes expands $(VAR) from the
env defined before it). Call with (dict "root" $ "env" "NOTEBENCH_HUB_DB_URL" "database" "hub").
Use after "notebench.dbPasswordEnv".
*/}}
{{- define "notebench.dbPasswordEnv" -}}
{{- $secret := printf "%s-secrets" (include "notebench.fullname" .) -}}
{{- $key := "postgresql-password" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret -}}
{{- $secret = .Values.externalDatabase.existingSecret -}}
{{- else if not .Values.postgresql.enabled -}}
{{- $key = "external-database-password" -}}
{{- end -}}
- name: NOTEBENCH_POSTGRESQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}

{{- define "notebench.dbUrlEnv" -}}
{{- $v := .root.Values -}}
{{- $host := printf "%s-postgresql" (include "notebench.fullname" .root) -}}
{{- $port := 5432 -}}
{{- $user := $v.postgresql.auth.username -}}
{{- if not $v.postgresql.enabled -}}
{{- $host = required "externalDatabase.host is required when postgresql.enabled is false" $v.externalDatabase.host -}}
{{- $port = $v.externalDatabase.port -}}
{{- $user = $v.externalDatabase.username -}}
{{- end -}}
- name: {{ .env }}
  value: postgresql+psycopg://{{ $user }}:$(NOTEBENCH_POSTGRESQL_PASSWORD)@{{ $host }}:{{ $port }}/{{ .database }}
{{- end }}

{{/*
Env of a JupyterHub service that runs in its own pod (the executor, MLflow): what the hub gives
the services it starts itself. Call with (dict "root" $ "name" "executor" "port" 8090 "tokenKey" "executor-api-token").
*/}}
{{- define "notebench.hubServiceEnv" -}}
- name: JUPYTERHUB_SERVICE_NAME
  value: {{ .name }}
- name: JUPYTERHUB_SERVICE_URL
  value: http://0.0.0.0:{{ .port }}
- name: JUPYTERHUB_SERVICE_PREFIX
  value: /services/{{ .name }}/
- name: JUPYTERHUB_BASE_URL
  value: /
- name: JUPYTERHUB_API_URL
  value: {{ include "notebench.hubUrl" .root }}/hub/api
- name: JUPYTERHUB_CLIENT_ID
  value: service-{{ .name }}
- name: JUPYTERHUB_OAUTH_CALLBACK_URL
  value: /services/{{ .name }}/oauth_callback
- name: JUPYTERHUB_OAUTH_ACCESS_SCOPES
  value: {{ printf "[\"access:services!service=%s\"]" .name | quote }}
{{ include "notebench.secretEnv" (dict "root" .root "env" "JUPYTERHUB_API_TOKEN" "key" .tokenKey) }}
{{- end }}

{{/* An IPv4 address as a number. */}}
{{- define "notebench.ipNumber" -}}
{{- $number := 0 -}}
{{- range splitList "." . }}{{ $number = add (mul $number 256) (int .) }}{{ end -}}
{{- $number -}}
{{- end }}

{{/* Does an IPv4 CIDR contain the cloud metadata address 169.254.169.254? Prints "true" or nothing. */}}
{{- define "notebench.containsMetadataIP" -}}
{{- $parts := splitList "/" . -}}
{{- $address := include "notebench.ipNumber" (first $parts) | int64 -}}
{{- $metadata := include "notebench.ipNumber" "169.254.169.254" | int64 -}}
{{- $block := 1 -}}
{{- range until (sub 32 (int (last $parts)) | int) }}{{ $block = mul $block 2 }}{{ end -}}
{{- if eq (div $address $block) (div $metadata $block) -}}true{{- end -}}
{{- end }}

{{/* An ipBlock peer for a CIDR, with the metadata address excepted when the CIDR contains it. */}}
{{- define "notebench.ipBlock" -}}
ipBlock:
  cidr: {{ . }}
  {{- if include "notebench.containsMetadataIP" . }}
  {{- if hasSuffix "/32" . }}
  {{- fail (printf "networkPolicy.allowedEgress: %s is the cloud metadata address, which is never reachable" .) }}
  {{- end }}
  except: [169.254.169.254/32]
  {{- end }}
{{- end }}

{{/* DNS: port 53 to in-cluster pods (kube-dns, node-local caches) and private addresses. */}}
{{- define "notebench.dnsEgress" -}}
- to:
    - namespaceSelector: {}
    {{- range list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" }}
    - {{ include "notebench.ipBlock" . | nindent 6 | trim }}
    {{- end }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}

{{/* The Kubernetes API and HTTPS services outside the cluster (OIDC, image registries): 443/6443 anywhere but the metadata address. */}}
{{- define "notebench.apiEgress" -}}
- to:
    - {{ include "notebench.ipBlock" "0.0.0.0/0" | nindent 6 | trim }}
  ports:
    - {protocol: TCP, port: 443}
    - {protocol: TCP, port: 6443}
{{- end }}

{{/* A label selector of user workloads, optionally only some components. Call with (list) or (list "job" "dask-worker"). */}}
{{- define "notebench.userSelector" -}}
matchLabels:
  notebench.io/workload: user
{{- if . }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: [{{ join ", " . }}]}
{{- end }}
{{- end }}

{{- define "notebench.userPeer" -}}
podSelector:
  {{- include "notebench.userSelector" . | nindent 2 }}
{{- end }}

{{/* Metadata of a NetworkPolicy. Call with (dict "root" $ "name" "hub" "component" "hub"). */}}
{{- define "notebench.networkPolicyMetadata" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "notebench.fullname" .root }}-{{ .name }}
  labels:
    {{- include "notebench.labels" (dict "root" .root "component" .component) | nindent 4 }}
{{- end }}

{{/* Egress to the database, wherever it is. */}}
{{- define "notebench.databaseEgress" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    - {{ include "notebench.peer" (dict "root" . "component" "postgresql") | nindent 6 | trim }}
  ports:
    - {protocol: TCP, port: 5432}
{{- else -}}
- to:
    - {{ include "notebench.ipBlock" "0.0.0.0/0" | nindent 6 | trim }}
  ports:
    - {protocol: TCP, port: {{ .Values.externalDatabase.port }}}
{{- end }}
{{- end }}
