//! `deployment`: writes a production-ready Kubernetes Deployment (apps/v1) into the workspace.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use generate::Written;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const DEFAULT_REPLICAS: u32 = 2;
/// Above this a typo is likelier than a real need; the HPA tool is the way to go bigger.
const MAX_REPLICAS: u32 = 1000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative path of the YAML file to write, e.g. `k8s/web/deployment.yaml`.
    path: String,
    /// Replace the file if it exists (default false: an existing file is an error).
    #[serde(default)]
    overwrite: bool,
    /// Name of the Deployment, also its container's name and its `app.kubernetes.io/name`
    /// label (a DNS-1123 label: lowercase letters, digits, '-').
    name: String,
    /// Namespace to put the Deployment in; omit to use the namespace it is applied to.
    namespace: Option<String>,
    /// Container image, pinned to a tag or digest, e.g. `ghcr.io/acme/web:1.4.2`.
    image: String,
    /// Number of pods (default 2, so one can be lost without downtime; 0 to 1000).
    replicas: Option<u32>,
    /// Port the container listens on (1-65535); omit for a worker without a port.
    container_port: Option<u32>,
    /// Name of the container port (default `http`), which Services can target by name.
    port_name: Option<String>,
    /// CPU and memory requests and limits; omitted values get defaults (requests
    /// 100m CPU / 128Mi memory, limits 500m CPU / 256Mi memory).
    resources: Option<Resources>,
    /// Liveness probe: the kubelet restarts the container when it fails. Omit for none.
    liveness_probe: Option<Probe>,
    /// Readiness probe: the pod gets traffic only while it passes. Omit for none.
    readiness_probe: Option<Probe>,
    /// Extra labels on the Deployment and its pods (the selector always uses
    /// `app.kubernetes.io/name: NAME`).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Environment variables of the container, name to literal value. Never put secrets
    /// here: reference a Secret instead.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Require the container to run as a non-root user (default true). Set false only
    /// for images that must run as root.
    run_as_non_root: Option<bool>,
}

/// Requests and limits of the container.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct Resources {
    /// What the scheduler reserves for the container.
    requests: Option<CpuMemory>,
    /// The most the container may use (memory above it gets the container killed).
    limits: Option<CpuMemory>,
}

/// A CPU and a memory quantity.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct CpuMemory {
    /// CPU, e.g. `250m` (a quarter core) or `1`.
    cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1Gi`.
    memory: Option<String>,
}

/// An HTTP GET or TCP probe.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Probe {
    /// HTTP path to GET, e.g. `/healthz`; omit for a TCP connect check.
    path: Option<String>,
    /// Port to probe (default: the container port).
    port: Option<u32>,
    /// Seconds to wait after start before the first probe (default 10).
    initial_delay_seconds: Option<u32>,
    /// Seconds between probes (default 10).
    period_seconds: Option<u32>,
    /// Consecutive failures before the probe counts as failed (default 3).
    failure_threshold: Option<u32>,
}

fn quantities(field: &str, given: Option<&CpuMemory>, cpu: &str, memory: &str) -> Result<(String, String, f64, f64), ToolError> {
    let cpu = given.and_then(|g| g.cpu.clone()).unwrap_or_else(|| cpu.to_owned());
    let memory = given.and_then(|g| g.memory.clone()).unwrap_or_else(|| memory.to_owned());
    let cpu_value = generate::quantity(&format!("{field}.cpu"), &cpu)?;
    let memory_value = generate::quantity(&format!("{field}.memory"), &memory)?;
    Ok((cpu, memory, cpu_value, memory_value))
}

fn resources(given: Option<&Resources>) -> Result<Value, ToolError> {
    let given = given.unwrap_or(&Resources { requests: None, limits: None });
    let (req_cpu, req_mem, req_cpu_n, req_mem_n) = quantities("resources.requests", given.requests.as_ref(), "100m", "128Mi")?;
    let (lim_cpu, lim_mem, lim_cpu_n, lim_mem_n) = quantities("resources.limits", given.limits.as_ref(), "500m", "256Mi")?;
    // The API server rejects requests above limits; say so here, naming the field.
    if req_cpu_n > lim_cpu_n {
        return Err(ToolError::invalid_input(format!("resources.requests.cpu: {req_cpu} is above the limit {lim_cpu}")));
    }
    if req_mem_n > lim_mem_n {
        return Err(ToolError::invalid_input(format!("resources.requests.memory: {req_mem} is above the limit {lim_mem}")));
    }
    Ok(json!({
        "requests": { "cpu": req_cpu, "memory": req_mem },
        "limits": { "cpu": lim_cpu, "memory": lim_mem },
    }))
}

fn probe(field: &str, probe: &Probe, container_port: Option<i32>) -> Result<Value, ToolError> {
    let port = match (probe.port, container_port) {
        (Some(port), _) => generate::port(&format!("{field}.port"), port)?,
        (None, Some(port)) => port,
        (None, None) => {
            return Err(ToolError::invalid_input(format!("{field}.port: give a port to probe (there is no container_port)")))
        }
    };
    let mut value = Map::new();
    match &probe.path {
        Some(path) if !path.starts_with('/') || path.chars().any(char::is_whitespace) => {
            return Err(ToolError::invalid_input(format!("{field}.path: {path:?} must start with '/' and have no spaces")))
        }
        Some(path) => value.insert("httpGet".into(), json!({ "path": path, "port": port })),
        None => value.insert("tcpSocket".into(), json!({ "port": port })),
    };
    let positive = |name: &str, given: Option<u32>, default: u32| -> Result<u32, ToolError> {
        match given.unwrap_or(default) {
            0 => Err(ToolError::invalid_input(format!("{field}.{name}: must be at least 1"))),
            n => Ok(n),
        }
    };
    value.insert("initialDelaySeconds".into(), probe.initial_delay_seconds.unwrap_or(10).into());
    value.insert("periodSeconds".into(), positive("period_seconds", probe.period_seconds, 10)?.into());
    value.insert("failureThreshold".into(), positive("failure_threshold", probe.failure_threshold, 3)?.into());
    Ok(Value::Object(value))
}

/// Environment variable names the API server accepts (C identifiers plus '-' and '.').
fn env_name(name: &str) -> Result<(), ToolError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ToolError::invalid_input(format!("env: {name:?} is not a valid variable name")))
    }
}

fn build(input: &Input) -> Result<(Vec<Value>, Vec<String>), ToolError> {
    generate::name_and_namespace(&input.name, input.namespace.as_deref())?;
    generate::labels("labels", &input.labels)?;
    let mut warnings = Vec::new();
    warnings.extend(generate::image("image", &input.image)?);
    let replicas = input.replicas.unwrap_or(DEFAULT_REPLICAS);
    if replicas > MAX_REPLICAS {
        return Err(ToolError::invalid_input(format!("replicas: {replicas} is above {MAX_REPLICAS}")));
    }
    let container_port = input.container_port.map(|p| generate::port("container_port", p)).transpose()?;
    let port_name = input.port_name.as_deref().unwrap_or("http");
    generate::port_name("port_name", port_name)?;

    let mut container = Map::new();
    container.insert("name".into(), input.name.clone().into());
    container.insert("image".into(), input.image.clone().into());
    container.insert("imagePullPolicy".into(), "IfNotPresent".into());
    if let Some(port) = container_port {
        container.insert("ports".into(), json!([{ "name": port_name, "containerPort": port, "protocol": "TCP" }]));
    }
    if !input.env.is_empty() {
        input.env.keys().try_for_each(|name| env_name(name))?;
        let env: Vec<Value> = input.env.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
        container.insert("env".into(), env.into());
    }
    container.insert("resources".into(), resources(input.resources.as_ref())?);
    if let Some(p) = &input.liveness_probe {
        container.insert("livenessProbe".into(), probe("liveness_probe", p, container_port)?);
    }
    if let Some(p) = &input.readiness_probe {
        container.insert("readinessProbe".into(), probe("readiness_probe", p, container_port)?);
    }
    if input.liveness_probe.is_none() && input.readiness_probe.is_none() && container_port.is_some() {
        warnings.push("no readiness_probe: pods get traffic as soon as they start".to_owned());
    }
    // Least privilege that nearly every image tolerates.
    container.insert(
        "securityContext".into(),
        json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }),
    );

    let pod_labels = generate::standard_labels(&input.name, &input.labels);
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": generate::metadata(&input.name, input.namespace.as_deref(), &input.labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": { "matchLabels": { (generate::NAME_LABEL): input.name } },
            // Never below the desired count during a rollout.
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": 0 } },
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": input.run_as_non_root.unwrap_or(true),
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [Value::Object(container)],
                },
            },
        },
    });
    Ok((vec![deployment], warnings))
}

fn deployment(input: Input) -> Result<Written, ToolError> {
    let (objects, warnings) = build(&input)?;
    generate::write_manifest(&input.path, input.overwrite, "Deployment generated by deckhand.", &objects, warnings)
}

fn main() {
    run(
        ToolInfo {
            name: "deployment",
            description: "Write a production-ready Kubernetes Deployment YAML (image, replicas, port, resources, probes, labels, env) to a workspace file.",
            workspace: WorkspaceAccess::Write,
        },
        deployment,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: Value) -> Input {
        let mut base = json!({ "path": "d.yaml", "name": "web", "image": "nginx:1.27" });
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid input")
    }

    #[test]
    fn defaults_give_a_complete_deployment() {
        let (objects, warnings) = build(&input(json!({ "container_port": 8080, "readiness_probe": { "path": "/ready" } }))).unwrap();
        let d = &objects[0];
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], "web");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "web");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(c["readinessProbe"]["httpGet"], json!({ "path": "/ready", "port": 8080 }));
        assert!(c.get("livenessProbe").is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "name": "Web" }), "name:"),
            (json!({ "namespace": "a_b" }), "namespace:"),
            (json!({ "container_port": 70000 }), "container_port:"),
            (json!({ "replicas": 5000 }), "replicas:"),
            (json!({ "resources": { "requests": { "memory": "1Gi" } } }), "resources.requests.memory:"),
            (json!({ "resources": { "limits": { "cpu": "lots" } } }), "resources.limits.cpu:"),
            (json!({ "liveness_probe": { "path": "/healthz" } }), "liveness_probe.port:"),
            (json!({ "env": { "1BAD": "x" } }), "env:"),
            (json!({ "labels": { "team": "a b" } }), "labels:"),
        ];
        for (extra, prefix) in cases {
            let error = build(&input(extra.clone())).unwrap_err();
            assert_eq!(error.kind, "invalid_input", "{extra}");
            assert!(error.message.starts_with(prefix), "{extra}: {}", error.message);
        }
    }

    #[test]
    fn unknown_input_fields_are_refused() {
        let error = serde_json::from_value::<Input>(json!({ "path": "d", "name": "w", "image": "i", "replica": 3 }));
        assert!(error.is_err());
    }

    #[test]
    fn an_unpinned_image_is_a_warning() {
        let (_, warnings) = build(&input(json!({ "image": "nginx" }))).unwrap();
        assert!(warnings.iter().any(|w| w.contains("not pinned")), "{warnings:?}");
    }
}
