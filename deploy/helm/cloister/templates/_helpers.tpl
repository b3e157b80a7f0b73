{{/* Names and labels shared by every object. */}}
{{- define "cloister.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cloister.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: cloister
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "cloister.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* The in-cluster URL of a service. */}}
{{- define "cloister.internalUrl" -}}
{{- $svc := index .root.Values.services .key -}}
https://{{ include "cloister.fullname" (dict "root" .root "name" .name) }}.{{ .root.Release.Namespace }}.svc:{{ $svc.port }}
{{- end -}}

{{/* The four TEE services: values key -> name. */}}
{{- define "cloister.teeServices" -}}
attestationService: attestation-service
keyBroker: key-broker
inferenceServer: inference-server
platformApi: platform-api
{{- end -}}

{{/* The EPC request: a quantity (64Mi) for sgx.intel.com/epc, or MiB (64) for the older AKS resource. */}}
{{- define "cloister.epc" -}}
{{- if eq .root.Values.sgx.epcResource "kubernetes.azure.com/sgx_epc_mem_in_MiB" -}}
{{- if hasSuffix "Gi" .size -}}{{ mul (trimSuffix "Gi" .size | int) 1024 }}{{- else -}}{{ trimSuffix "Mi" .size | int }}{{- end -}}
{{- else -}}
{{- .size -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy peers: a service of this release, and DNS. */}}
{{- define "cloister.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ .name }}
      app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}
{{- define "cloister.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
  ports:
    - { protocol: UDP, port: 53 }
    - { protocol: TCP, port: 53 }
{{- end }}
