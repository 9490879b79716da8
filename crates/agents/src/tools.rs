//! The analyzers as host tools, so plans call them like any other tool: `diagnose_pod`,
//! `scan_workloads`, `scan_rbac`, `triage_alert`, `compress_logs` and
//! `suggest_resources`. None touches the workspace or the cluster; each computes from its
//! input alone, and their schemas come from the Rust types.

use crate::error::{Error, Result};
use crate::security::{self, RbacReport, WorkloadReport};
use crate::sre::{self, CompressedLogs, Diagnosis, ObservedUsage, ResourceSuggestion, Triage};
use deckhand_tools::{
    InputProblem, Tool, ToolContext, ToolFuture, ToolRegistry, ToolSpec, WorkspaceAccess,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The budget `compress_logs` uses when none is given: a quarter of a small local
/// model's 8k context, leaving room for the question and the answer.
pub const DEFAULT_LOG_BUDGET_TOKENS: usize = 2_000;

/// Where the analyzers say they come from in the registry.
pub const SOURCE: &str = "built-in (deckhand-agents)";

/// `diagnose_pod`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseInput {
    /// The output of `pod_facts`: `{"pod", "events", "logs", "previous_logs"}`, and
    /// optionally `metrics` (`{"containers": {"NAME": {"memory_peak_bytes": N}}}`).
    pub facts: Map<String, Value>,
}

/// `scan_workloads`' and `scan_rbac`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectsInput {
    /// Kubernetes objects; `*List` objects and arrays of objects (such as several
    /// `kube_list` outputs' `items`) are flattened.
    pub objects: Vec<Value>,
}

/// `triage_alert`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertInput {
    /// An Alertmanager webhook payload (`{"alerts": [...]}`) or one alert.
    pub alert: Map<String, Value>,
}

/// `compress_logs`' input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressInput {
    /// The log text.
    pub text: String,
    /// Roughly how many tokens the result may take (default 2000, at least 64).
    #[serde(default)]
    pub budget_tokens: Option<usize>,
}

/// `suggest_resources`' input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageInput {
    /// Observed usage per container.
    pub usage: Vec<ObservedUsage>,
}

/// `suggest_resources`' output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageOutput {
    /// One suggestion per container.
    pub suggestions: Vec<ResourceSuggestion>,
}

type Run = fn(&'static str, &Value) -> deckhand_tools::Result<Value>;

/// One analyzer behind the [`Tool`] trait.
pub struct AnalyzerTool {
    spec: ToolSpec,
    run: Run,
}

impl std::fmt::Debug for AnalyzerTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzerTool")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl Tool for AnalyzerTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, _context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        let name: &'static str = tool_name(&self.spec.name);
        let run = self.run;
        Box::pin(async move { run(name, input) })
    }
}

/// The analyzers' names, for [`AnalyzerTool::call`] (which needs a `'static` name).
const NAMES: [&str; 6] = [
    "diagnose_pod",
    "scan_workloads",
    "scan_rbac",
    "triage_alert",
    "compress_logs",
    "suggest_resources",
];

fn tool_name(name: &str) -> &'static str {
    NAMES
        .iter()
        .copied()
        .find(|known| *known == name)
        .unwrap_or("analyzer")
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true))
}

fn parse<T: DeserializeOwned>(tool: &'static str, input: &Value) -> deckhand_tools::Result<T> {
    serde_json::from_value(input.clone()).map_err(|error| deckhand_tools::Error::InvalidInput {
        tool: tool.to_owned(),
        problems: vec![InputProblem {
            path: String::new(),
            message: error.to_string(),
        }],
    })
}

fn output<T: Serialize>(tool: &'static str, value: T) -> deckhand_tools::Result<Value> {
    serde_json::to_value(value).map_err(|error| deckhand_tools::Error::MalformedResult {
        tool: tool.to_owned(),
        message: error.to_string(),
    })
}

fn analyzer<I: JsonSchema, O: JsonSchema>(name: &str, description: &str, run: Run) -> AnalyzerTool {
    AnalyzerTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            workspace: WorkspaceAccess::None,
            mutating: false,
            input_schema: schema::<I>(),
            output_schema: schema::<O>(),
        },
        run,
    }
}

/// Every analyzer tool.
pub fn analyzer_tools() -> Vec<AnalyzerTool> {
    vec![
        analyzer::<DiagnoseInput, Diagnosis>(
            "diagnose_pod",
            "Diagnose a failing pod from pod_facts output (status, events, previous logs): CrashLoopBackOff with exit code and error lines, OOMKilled with a new limit, ImagePullBackOff (bad tag, auth, registry), Pending (cpu/memory, taints, selectors, unbound PVCs), failing probes, missing ConfigMap/Secret keys. Returns cause, evidence, remediation and confidence.",
            |tool, input| {
                let input: DiagnoseInput = parse(tool, input)?;
                output(tool, sre::diagnose_pod(&Value::Object(input.facts)))
            },
        ),
        analyzer::<ObjectsInput, WorkloadReport>(
            "scan_workloads",
            "Scan Pods, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs for security misconfigurations: privileged, privilege escalation, hostPath/hostNetwork/hostPID/hostIPC, running as root, no resource limits, :latest images, no probes, writable root filesystem, dangerous capabilities. Findings have severity and a patch.",
            |tool, input| {
                let input: ObjectsInput = parse(tool, input)?;
                output(tool, security::scan_workloads(&security::flatten_objects(&input.objects)))
            },
        ),
        analyzer::<ObjectsInput, RbacReport>(
            "scan_rbac",
            "Scan Roles, ClusterRoles and their bindings: wildcard rules, cluster-admin bindings, escalate/bind/impersonate, pods/exec, and every subject that can read Secrets (with the binding and role that grant it).",
            |tool, input| {
                let input: ObjectsInput = parse(tool, input)?;
                output(tool, security::scan_rbac(&security::flatten_objects(&input.objects)))
            },
        ),
        analyzer::<AlertInput, Triage>(
            "triage_alert",
            "Triage an Alertmanager webhook payload: for each alert the three most likely causes with a remediation each, and read-only steps that gather evidence.",
            |tool, input| {
                let input: AlertInput = parse(tool, input)?;
                output(tool, sre::triage_alert(&Value::Object(input.alert)))
            },
        ),
        analyzer::<CompressInput, CompressedLogs>(
            "compress_logs",
            "Compress log text to a token budget: repeated lines folded by template (timestamps, ids and numbers masked), every distinct error and stack trace kept, and a count of what was dropped.",
            |tool, input| {
                let input: CompressInput = parse(tool, input)?;
                output(tool, sre::compress_logs(&input.text, input.budget_tokens.unwrap_or(DEFAULT_LOG_BUDGET_TOKENS)))
            },
        ),
        analyzer::<UsageInput, UsageOutput>(
            "suggest_resources",
            "Suggest CPU and memory requests and a memory limit per container from observed usage (p95 CPU, peak memory) and say whether the current settings are worth changing.",
            |tool, input| {
                let input: UsageInput = parse(tool, input)?;
                output(tool, UsageOutput { suggestions: sre::suggest_resources(&input.usage) })
            },
        ),
    ]
}

/// Adds every analyzer tool to `registry`.
///
/// # Errors
/// [`Error::Register`] when a tool of the same name is already registered.
pub fn register_analyzers(registry: &mut ToolRegistry) -> Result<()> {
    for tool in analyzer_tools() {
        let name = tool.spec.name.clone();
        registry
            .register(Arc::new(tool), SOURCE)
            .map_err(|source| Error::Register { tool: name, source })?;
    }
    Ok(())
}

/// The tools of `registry` as the catalog plans are validated against.
pub fn catalog(registry: &ToolRegistry) -> deckhand_runtime::ToolCatalog {
    catalog_from_specs(registry.specs())
}

/// A catalog of these manifests.
pub fn catalog_from_specs<'a>(
    specs: impl IntoIterator<Item = &'a ToolSpec>,
) -> deckhand_runtime::ToolCatalog {
    deckhand_runtime::ToolCatalog::new(specs.into_iter().map(|spec| {
        deckhand_runtime::CatalogEntry {
            name: spec.name.clone(),
            description: spec.description.clone(),
            input_schema: spec.input_schema.clone(),
            mutating: spec.mutating,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn registry() -> ToolRegistry {
        let mut registry = ToolRegistry::new();
        register_analyzers(&mut registry).unwrap();
        registry
    }

    fn context() -> ToolContext {
        ToolContext {
            workspace: PathBuf::from("/nonexistent"),
            ..ToolContext::default()
        }
    }

    #[tokio::test]
    async fn every_analyzer_runs_through_the_registry_with_checked_output() {
        let registry = registry();
        assert_eq!(registry.len(), NAMES.len());
        assert!(registry
            .specs()
            .all(|spec| !spec.mutating && spec.workspace == WorkspaceAccess::None));
        let facts = json!({"facts": {"pod": {"kind": "Pod", "metadata": {"name": "api-0", "namespace": "shop"},
            "spec": {"containers": [{"name": "api", "image": "acme/api:1"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "api", "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 127, "reason": "Error"}}}]}},
            "events": [], "logs": {}, "previous_logs": {"api": "exec /app/server: no such file or directory\n"}}});
        let diagnosis = registry
            .call("diagnose_pod", &context(), &facts)
            .await
            .unwrap();
        assert_eq!(diagnosis["cause"], "crash_loop");

        let scan = registry.call("scan_workloads", &context(), &json!({"objects": [[{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}}]]})).await.unwrap();
        assert_eq!(scan["findings"][0]["rule"], "privileged");

        let rbac = registry.call("scan_rbac", &context(), &json!({"objects": [{"kind": "ClusterRoleBinding", "metadata": {"name": "x"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "bob"}]}]})).await.unwrap();
        assert_eq!(rbac["secret_readers"][0]["subject"], "User bob");

        let triage = registry.call("triage_alert", &context(), &json!({"alert": {"alerts": [{"labels": {"alertname": "TargetDown", "job": "api"}}]}})).await.unwrap();
        assert_eq!(triage["alerts"][0]["causes"].as_array().unwrap().len(), 3);

        let logs = registry
            .call(
                "compress_logs",
                &context(),
                &json!({"text": "a 1\na 2\nERROR boom\n", "budget_tokens": 100}),
            )
            .await
            .unwrap();
        assert_eq!(logs["dropped"]["duplicate_lines"], 1);

        let usage = registry.call("suggest_resources", &context(), &json!({"usage": [{"container": "c", "cpu_p95_millicores": 50, "memory_peak_bytes": 1e8}]})).await.unwrap();
        assert_eq!(usage["suggestions"][0]["change_recommended"], true);
    }

    #[tokio::test]
    async fn bad_inputs_are_refused_before_any_analyzer_runs() {
        let registry = registry();
        let error = registry
            .call(
                "diagnose_pod",
                &context(),
                &json!({"facts": "not an object"}),
            )
            .await
            .unwrap_err();
        assert!(error.is_usage_error(), "{error}");
        let error = registry
            .call(
                "compress_logs",
                &context(),
                &json!({"text": "x", "budget": 5}),
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("budget"), "{error}");
        let mut again = registry;
        assert!(matches!(
            register_analyzers(&mut again),
            Err(Error::Register { .. })
        ));
    }
}
