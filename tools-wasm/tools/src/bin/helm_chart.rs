//! `helm_chart`: writes a Helm chart (apiVersion v2) for one containerised service into a
//! workspace folder: Chart.yaml, values.yaml, and templates for a Deployment, a Service,
//! helper names and install notes.
//!
//! The templates use only Go text/template built-ins (`if`, `else if`, `eq`, `printf`,
//! `define`/`template`), no Sprig functions, so any Go-template engine renders them the way
//! Helm does, and the host tests render them and dry-run the result on a real API server.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Replaced by the chart's name in the templates below (it names the helper templates).
const CHART: &str = "__CHART__";

const HELPERS: &str = r#"{{/* The name of the release's objects: fullnameOverride, else RELEASE-CHART (just
RELEASE when the two are equal). Keep it within 63 characters. */}}
{{- define "__CHART__.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride }}
{{- else if eq .Release.Name .Chart.Name -}}
{{ .Release.Name }}
{{- else -}}
{{ printf "%s-%s" .Release.Name .Chart.Name }}
{{- end -}}
{{- end -}}

{{/* The helm.sh/chart label: CHART-VERSION. */}}
{{- define "__CHART__.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ template "__CHART__.fullname" . }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ printf "%q" .Chart.AppVersion }}
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    helm.sh/chart: {{ template "__CHART__.chart" . }}
spec:
  replicas: {{ .Values.replicaCount }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Chart.Name }}
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ .Chart.Name }}
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      securityContext:
        runAsNonRoot: {{ .Values.podSecurityContext.runAsNonRoot }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ if .Values.image.tag }}{{ .Values.image.tag }}{{ else }}{{ .Chart.AppVersion }}{{ end }}"
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.containerPort }}
              protocol: TCP
          {{- if .Values.probe.path }}
          livenessProbe:
            httpGet:
              path: {{ .Values.probe.path }}
              port: http
          readinessProbe:
            httpGet:
              path: {{ .Values.probe.path }}
              port: http
          {{- else }}
          livenessProbe:
            tcpSocket:
              port: http
          readinessProbe:
            tcpSocket:
              port: http
          {{- end }}
          resources:
            requests:
              cpu: {{ .Values.resources.requests.cpu }}
              memory: {{ .Values.resources.requests.memory }}
            limits:
              cpu: {{ .Values.resources.limits.cpu }}
              memory: {{ .Values.resources.limits.memory }}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: {{ template "__CHART__.fullname" . }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ printf "%q" .Chart.AppVersion }}
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    helm.sh/chart: {{ template "__CHART__.chart" . }}
spec:
  type: {{ .Values.service.type }}
  selector:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
  ports:
    - name: http
      port: {{ .Values.service.port }}
      targetPort: http
      protocol: TCP
"#;

const NOTES: &str = r#"{{ .Chart.Name }} {{ .Chart.AppVersion }} is installed as release {{ .Release.Name }} in namespace {{ .Release.Namespace }}.

Inside the cluster it answers at:
  http://{{ template "__CHART__.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.service.port }}
"#;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative folder to write the chart into (default: the chart's name).
    path: Option<String>,
    /// Replace chart files that exist (default false: any existing file is an error and
    /// nothing is written).
    #[serde(default)]
    overwrite: bool,
    /// Chart name (a DNS-1123 label), also the container's name.
    name: String,
    /// One line saying what the chart deploys.
    description: Option<String>,
    /// Chart version, SemVer `MAJOR.MINOR.PATCH` (default `0.1.0`).
    version: Option<String>,
    /// Version of the application (default: `tag`, else `1.0.0`); the image tag when
    /// `tag` is not given.
    app_version: Option<String>,
    /// Image repository without a tag, e.g. `ghcr.io/acme/web`.
    image: String,
    /// Image tag (default: the chart's appVersion).
    tag: Option<String>,
    /// Number of pods (default 2).
    replicas: Option<u32>,
    /// Port the container listens on (default 8080).
    container_port: Option<u32>,
    /// Port the Service exposes (default 80).
    service_port: Option<u32>,
    /// Service type: ClusterIP (default), NodePort or LoadBalancer.
    service_type: Option<String>,
    /// HTTP path for the liveness and readiness probes, e.g. `/healthz`; omit for TCP
    /// probes on the container port.
    health_path: Option<String>,
}

/// One file of the chart.
#[derive(Serialize, JsonSchema)]
struct ChartFile {
    /// Workspace-relative path.
    path: String,
    /// The text written.
    content: String,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The chart's folder, workspace-relative.
    path: String,
    /// The chart's name.
    name: String,
    /// The chart's version.
    version: String,
    /// Every file written, with its text.
    files: Vec<ChartFile>,
}

/// SemVer as Helm requires of chart versions (pre-release allowed, build metadata not:
/// `+` is not allowed in the helm.sh/chart label value).
fn semver(field: &str, text: &str) -> Result<(), ToolError> {
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let pre_ok = pre.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    if numeric && pre_ok {
        Ok(())
    } else {
        Err(ToolError::invalid_input(format!("{field}: {text:?} is not a version like 1.2.3 or 1.2.3-rc.1")))
    }
}

/// A YAML plain-scalar-safe token (image repository, tag, path): no spaces, quotes, `#`,
/// `{` or `:` tricks that would change the rendered YAML.
fn token(field: &str, text: &str) -> Result<(), ToolError> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ToolError::invalid_input(format!("{field}: {text:?} may only hold letters, digits and . - _ / : @")))
    }
}

/// The chart's folder, its version, and its files (chart-relative name, text).
type Chart = (String, String, Vec<(String, String)>);

fn build(input: &Input) -> Result<Chart, ToolError> {
    generate::dns_label("name", &input.name)?;
    let folder = input.path.clone().unwrap_or_else(|| input.name.clone());
    let version = input.version.clone().unwrap_or_else(|| "0.1.0".to_owned());
    semver("version", &version)?;
    token("image", &input.image)?;
    if input.image.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(ToolError::invalid_input("image: give the repository without a tag and the tag in `tag`"));
    }
    if let Some(tag) = &input.tag {
        token("tag", tag)?;
    }
    let app_version = input.app_version.clone().or_else(|| input.tag.clone()).unwrap_or_else(|| "1.0.0".to_owned());
    token("app_version", &app_version)?;
    let container_port = generate::port("container_port", input.container_port.unwrap_or(8080))?;
    let service_port = generate::port("service_port", input.service_port.unwrap_or(80))?;
    let service_type = input.service_type.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&service_type.as_str()) {
        return Err(ToolError::invalid_input(format!("service_type: {service_type:?} is not ClusterIP, NodePort or LoadBalancer")));
    }
    if let Some(path) = &input.health_path {
        if !path.starts_with('/') {
            return Err(ToolError::invalid_input(format!("health_path: {path:?} must start with '/'")));
        }
        token("health_path", path)?;
    }
    let description = input.description.clone().unwrap_or_else(|| format!("{} on Kubernetes", input.name));

    let chart = json!({
        "apiVersion": "v2",
        "name": input.name,
        "description": description,
        "type": "application",
        "version": version,
        "appVersion": app_version,
    });
    let values = json!({
        "replicaCount": input.replicas.unwrap_or(2),
        "image": { "repository": input.image, "tag": input.tag.clone().unwrap_or_default(), "pullPolicy": "IfNotPresent" },
        "fullnameOverride": "",
        "containerPort": container_port,
        "service": { "type": service_type, "port": service_port },
        "probe": { "path": input.health_path.clone().unwrap_or_default() },
        "resources": {
            "requests": { "cpu": "100m", "memory": "128Mi" },
            "limits": { "cpu": "500m", "memory": "256Mi" },
        },
        "podSecurityContext": { "runAsNonRoot": true },
    });
    let chart_yaml = generate::to_yaml("", &[chart])?;
    let values_yaml = generate::to_yaml(
        "Default values of the chart; override with --set or -f.\nimage.tag empty: the chart's appVersion.\nprobe.path empty: TCP probes on the container port.",
        &[values],
    )?;
    let files = vec![
        ("Chart.yaml".to_owned(), chart_yaml),
        ("values.yaml".to_owned(), values_yaml),
        ("templates/_helpers.tpl".to_owned(), HELPERS.replace(CHART, &input.name)),
        ("templates/deployment.yaml".to_owned(), DEPLOYMENT.replace(CHART, &input.name)),
        ("templates/service.yaml".to_owned(), SERVICE.replace(CHART, &input.name)),
        ("templates/NOTES.txt".to_owned(), NOTES.replace(CHART, &input.name)),
    ];
    Ok((folder, version, files))
}

fn helm_chart(input: Input) -> Result<Output, ToolError> {
    let (folder, version, files) = build(&input)?;
    let paths: Vec<String> = files.iter().map(|(name, _)| generate::join(&folder, name)).collect();
    // All or nothing: every refusal comes before the first write.
    for path in &paths {
        generate::check_writable(path, input.overwrite)?;
    }
    let mut written = Vec::new();
    for (path, (_, content)) in paths.into_iter().zip(files) {
        let path = generate::write_file(&path, input.overwrite, &content)?;
        written.push(ChartFile { path, content });
    }
    Ok(Output { path: folder, name: input.name, version, files: written })
}

fn main() {
    run(
        ToolInfo {
            name: "helm_chart",
            description: "Write a Helm chart (Chart.yaml v2, values.yaml, templates for a Deployment and a Service, _helpers.tpl, NOTES.txt) for one containerised service into a workspace folder.",
            workspace: WorkspaceAccess::Write,
        },
        helm_chart,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: serde_json::Value) -> Input {
        let mut base = json!({ "name": "web", "image": "ghcr.io/acme/web" });
        if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid input")
    }

    #[test]
    fn the_chart_has_its_files_and_names_its_helpers_after_itself() {
        let (folder, version, files) = build(&input(json!({ "tag": "1.4.2", "health_path": "/healthz" }))).unwrap();
        assert_eq!((folder.as_str(), version.as_str()), ("web", "0.1.0"));
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Chart.yaml", "values.yaml", "templates/_helpers.tpl", "templates/deployment.yaml", "templates/service.yaml", "templates/NOTES.txt"]);
        assert!(files[0].1.contains("apiVersion: v2\nname: web\n"), "{}", files[0].1);
        assert!(files[0].1.contains("appVersion: 1.4.2"), "{}", files[0].1);
        assert!(files[1].1.contains("path: /healthz"), "{}", files[1].1);
        assert!(files[2].1.contains(r#"define "web.fullname""#));
        assert!(files.iter().all(|(_, text)| !text.contains(CHART)));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "name": "Web" }), "name:"),
            (json!({ "version": "1.0" }), "version:"),
            (json!({ "version": "1.0.0+build" }), "version:"),
            (json!({ "image": "nginx:1.27" }), "image:"),
            (json!({ "tag": "1 2" }), "tag:"),
            (json!({ "container_port": 0 }), "container_port:"),
            (json!({ "service_type": "ExternalName" }), "service_type:"),
            (json!({ "health_path": "healthz" }), "health_path:"),
        ];
        for (extra, prefix) in cases {
            let error = build(&input(extra.clone())).unwrap_err();
            assert!(error.message.starts_with(prefix), "{extra}: {}", error.message);
        }
    }
}
