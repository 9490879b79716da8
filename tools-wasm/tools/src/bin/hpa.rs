//! `hpa`: writes a Kubernetes HorizontalPodAutoscaler (autoscaling/v2, or v2beta2 for
//! clusters older than 1.23) into the workspace.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use generate::Written;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The CPU target used when the caller gives neither target.
const DEFAULT_CPU_UTILIZATION: u32 = 80;
/// Utilization is relative to requests and may exceed 100; past this it is surely a typo.
const MAX_UTILIZATION: u32 = 1000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative path of the YAML file to write, e.g. `k8s/web/hpa.yaml`.
    path: String,
    /// Replace the file if it exists (default false: an existing file is an error).
    #[serde(default)]
    overwrite: bool,
    /// Name of the HorizontalPodAutoscaler (a DNS-1123 label).
    name: String,
    /// Namespace of the autoscaler and its target; omit to use the namespace it is
    /// applied to.
    namespace: Option<String>,
    /// Name of the workload to scale (in the same namespace).
    target: String,
    /// Kind of the workload to scale (default Deployment).
    #[serde(default)]
    target_kind: TargetKind,
    /// Fewest replicas (default 2, at least 1).
    min_replicas: Option<u32>,
    /// Most replicas (at least min_replicas).
    max_replicas: u32,
    /// Target average CPU use, percent of the pods' CPU requests (default 80 when no
    /// memory target is given either).
    cpu_utilization: Option<u32>,
    /// Target average memory use, percent of the pods' memory requests.
    memory_utilization: Option<u32>,
    /// API version to write (default `autoscaling/v2`; `autoscaling/v2beta2` for clusters
    /// before Kubernetes 1.23, which have no v2).
    #[serde(default)]
    api_version: ApiVersion,
    /// Extra labels on the autoscaler.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Workload kinds an HPA can scale.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
enum TargetKind {
    /// apps/v1 Deployment.
    #[default]
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

/// The HPA API versions with metric targets.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
enum ApiVersion {
    /// Kubernetes 1.23 and later.
    #[default]
    #[serde(rename = "autoscaling/v2")]
    V2,
    /// Kubernetes 1.12 to 1.25 (removed in 1.26).
    #[serde(rename = "autoscaling/v2beta2")]
    V2beta2,
}

fn utilization(field: &str, value: u32) -> Result<u32, ToolError> {
    if (1..=MAX_UTILIZATION).contains(&value) {
        Ok(value)
    } else {
        Err(ToolError::invalid_input(format!("{field}: {value} is outside 1-{MAX_UTILIZATION} percent")))
    }
}

fn metric(resource: &str, percent: u32) -> Value {
    json!({
        "type": "Resource",
        "resource": { "name": resource, "target": { "type": "Utilization", "averageUtilization": percent } },
    })
}

fn build(input: &Input) -> Result<(Vec<Value>, Vec<String>), ToolError> {
    generate::name_and_namespace(&input.name, input.namespace.as_deref())?;
    generate::dns_subdomain("target", &input.target)?;
    generate::labels("labels", &input.labels)?;
    let min = input.min_replicas.unwrap_or(2);
    if min == 0 {
        return Err(ToolError::invalid_input("min_replicas: must be at least 1"));
    }
    if input.max_replicas < min {
        return Err(ToolError::invalid_input(format!(
            "max_replicas: {} is below min_replicas {min}",
            input.max_replicas
        )));
    }
    let cpu = input.cpu_utilization.map(|v| utilization("cpu_utilization", v)).transpose()?;
    let memory = input.memory_utilization.map(|v| utilization("memory_utilization", v)).transpose()?;
    let mut metrics = Vec::new();
    match (cpu, memory) {
        (None, None) => metrics.push(metric("cpu", DEFAULT_CPU_UTILIZATION)),
        (cpu, memory) => {
            metrics.extend(cpu.map(|p| metric("cpu", p)));
            metrics.extend(memory.map(|p| metric("memory", p)));
        }
    }
    let mut warnings = Vec::new();
    if min == input.max_replicas {
        warnings.push(format!("min_replicas equals max_replicas ({min}): the autoscaler will never scale"));
    }
    let api_version = match input.api_version {
        ApiVersion::V2 => "autoscaling/v2",
        ApiVersion::V2beta2 => "autoscaling/v2beta2",
    };
    let kind = match input.target_kind {
        TargetKind::Deployment => "Deployment",
        TargetKind::StatefulSet => "StatefulSet",
    };
    let hpa = json!({
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": generate::metadata(&input.name, input.namespace.as_deref(), &input.labels),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": kind, "name": input.target },
            "minReplicas": min,
            "maxReplicas": input.max_replicas,
            "metrics": metrics,
        },
    });
    Ok((vec![hpa], warnings))
}

fn hpa(input: Input) -> Result<Written, ToolError> {
    let (objects, warnings) = build(&input)?;
    generate::write_manifest(&input.path, input.overwrite, "HorizontalPodAutoscaler generated by deckhand.", &objects, warnings)
}

fn main() {
    run(
        ToolInfo {
            name: "hpa",
            description: "Write a Kubernetes HorizontalPodAutoscaler YAML (target workload, min/max replicas, CPU/memory utilization targets) to a workspace file.",
            workspace: WorkspaceAccess::Write,
        },
        hpa,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: Value) -> Input {
        let mut base = json!({ "path": "h.yaml", "name": "web", "target": "web", "max_replicas": 10 });
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid input")
    }

    #[test]
    fn defaults_scale_a_deployment_on_cpu() {
        let (objects, _) = build(&input(json!({}))).unwrap();
        let hpa = &objects[0];
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["scaleTargetRef"], json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" }));
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["metrics"], json!([metric("cpu", 80)]));
    }

    #[test]
    fn v2beta2_and_memory_targets_are_honoured() {
        let (objects, _) = build(&input(json!({ "api_version": "autoscaling/v2beta2", "memory_utilization": 70 }))).unwrap();
        assert_eq!(objects[0]["apiVersion"], "autoscaling/v2beta2");
        assert_eq!(objects[0]["spec"]["metrics"], json!([metric("memory", 70)]));
        assert!(serde_json::from_value::<Input>(json!({ "path": "h", "name": "w", "target": "w", "max_replicas": 2, "api_version": "autoscaling/v1" })).is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "min_replicas": 0 }), "min_replicas:"),
            (json!({ "min_replicas": 11 }), "max_replicas:"),
            (json!({ "cpu_utilization": 0 }), "cpu_utilization:"),
            (json!({ "memory_utilization": 5000 }), "memory_utilization:"),
            (json!({ "target": "Web" }), "target:"),
        ];
        for (extra, prefix) in cases {
            let error = build(&input(extra.clone())).unwrap_err();
            assert!(error.message.starts_with(prefix), "{extra}: {}", error.message);
        }
    }
}
