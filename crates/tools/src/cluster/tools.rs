//! The cluster tools agents call: thin [`Tool`]s over the [`ClusterGate`], so every read
//! and write they do is judged by the policy engine, dry-run first, and audited.
//!
//! | tool | mutating | does |
//! |---|---|---|
//! | `kube_get` | no | reads one object |
//! | `kube_list` | no | lists objects of a kind (label/field selectors, pages) |
//! | `kube_describe` | no | an object, its events and its owner chain |
//! | `kube_events` | no | events in a namespace, or about one object |
//! | `kube_logs` | no | a container's log (tail, since, previous run, byte cap) |
//! | `pod_facts` | no | a pod (or a workload's most troubled pod), its events and logs |
//! | `kube_dry_run` | no | both policy checkpoints around a server-side dry run |
//! | `kube_apply` | yes | the same, then the write (needs an approval) |
//! | `kube_scale` | yes | sets replicas through the scale subresource |
//! | `kube_restart` | yes | a rollout restart (the pod template's restartedAt annotation) |
//! | `kube_delete` | yes | deletes one object |
//!
//! Secret values never come back from any of them: Secrets show their keys and sizes.

use super::read::event_time;
use super::{
    redact_secrets, AccessCheck, Approval, ClusterChange, ClusterGate, ListQuery, LogQuery,
    ObjectRef, PatchType,
};
use crate::error::{Error, Result};
use crate::registry::{Tool, ToolContext, ToolFuture, ToolRegistry};
use crate::sandbox::WorkspaceAccess;
use crate::spec::ToolSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The most log bytes `pod_facts` returns per container (the tail is kept).
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// The most events `pod_facts`, `kube_describe` and `kube_events` return (the newest).
pub const MAX_EVENTS: usize = 50;
/// The log lines `pod_facts` and, by default, `kube_logs` return (the tail).
pub const DEFAULT_TAIL_LINES: u32 = 2000;
/// The largest manifest file `kube_dry_run` and `kube_apply` read from the workspace.
pub const MAX_MANIFEST_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Registers every cluster tool over `gate`.
///
/// # Errors
/// [`Error::DuplicateTool`] when a tool of the same name is already registered.
pub fn register_cluster_tools(registry: &mut ToolRegistry, gate: &ClusterGate) -> Result<()> {
    for kind in ToolKind::ALL {
        registry.register(
            Arc::new(ClusterTool {
                spec: kind.spec(),
                kind,
                gate: gate.clone(),
                people: std::sync::Mutex::default(),
            }),
            "cluster",
        )?;
    }
    Ok(())
}

/// The cluster tools' manifests, for planning where no cluster is connected (plans name
/// these tools; running them needs the cluster).
pub fn cluster_tool_specs() -> Vec<ToolSpec> {
    ToolKind::ALL.iter().map(|kind| kind.spec()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolKind {
    Get,
    List,
    Describe,
    Events,
    Logs,
    PodFacts,
    DryRun,
    Apply,
    Scale,
    Restart,
    Delete,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListInput {
    /// `v1`, `apps/v1`, ...
    api_version: String,
    /// `Pod`, `Deployment`, ...
    kind: String,
    /// One namespace; omit for all namespaces (or a cluster-scoped kind).
    #[serde(default)]
    namespace: Option<String>,
    /// A label selector, e.g. `app=web,tier!=cache`.
    #[serde(default)]
    label_selector: Option<String>,
    /// A field selector, e.g. `status.phase=Running` or `spec.nodeName=node-1`.
    #[serde(default)]
    field_selector: Option<String>,
    /// At most this many objects (up to 500); the answer's `continue` fetches the rest.
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventsInput {
    /// The namespace; omit for all namespaces.
    #[serde(default)]
    namespace: Option<String>,
    /// Only events about objects of this kind (e.g. `Pod`).
    #[serde(default)]
    kind: Option<String>,
    /// Only events about the object of this name.
    #[serde(default)]
    name: Option<String>,
    /// Only warnings.
    #[serde(default)]
    warnings_only: bool,
    /// At most this many (the newest); default 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LogsInput {
    /// The namespace.
    namespace: String,
    /// The pod.
    pod: String,
    /// The container; may be omitted when the pod has one.
    #[serde(default)]
    container: Option<String>,
    /// The previous run of the container (after a crash).
    #[serde(default)]
    previous: bool,
    /// Only the last lines (default 2000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    tail_lines: Option<u32>,
    /// Only lines from the last seconds.
    #[serde(default)]
    #[schemars(range(min = 1))]
    since_seconds: Option<u32>,
    /// At most this many bytes (default and maximum 65536).
    #[serde(default)]
    #[schemars(range(min = 1, max = 65536))]
    limit_bytes: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PodInput {
    /// The namespace.
    namespace: String,
    /// A pod's name, or a Deployment's or StatefulSet's (then its most troubled pod).
    name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ManifestsInput {
    /// The objects, as JSON.
    #[serde(default)]
    manifests: Vec<Value>,
    /// Or a workspace-relative YAML file (several documents allowed).
    #[serde(default)]
    file: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScaleInput {
    /// `Deployment`, `StatefulSet` or `ReplicaSet`.
    kind: String,
    /// The namespace.
    namespace: String,
    /// The workload's name.
    name: String,
    /// The new replica count.
    #[schemars(range(min = 0, max = 1000))]
    replicas: i32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RestartInput {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    kind: String,
    /// The namespace.
    namespace: String,
    /// The workload's name.
    name: String,
}

impl ToolKind {
    const ALL: [ToolKind; 11] = [
        Self::Get,
        Self::List,
        Self::Describe,
        Self::Events,
        Self::Logs,
        Self::PodFacts,
        Self::DryRun,
        Self::Apply,
        Self::Scale,
        Self::Restart,
        Self::Delete,
    ];

    /// The tool's name in the catalogue.
    fn name(self) -> &'static str {
        match self {
            Self::Get => "kube_get",
            Self::List => "kube_list",
            Self::Describe => "kube_describe",
            Self::Events => "kube_events",
            Self::Logs => "kube_logs",
            Self::PodFacts => "pod_facts",
            Self::DryRun => "kube_dry_run",
            Self::Apply => "kube_apply",
            Self::Scale => "kube_scale",
            Self::Restart => "kube_restart",
            Self::Delete => "kube_delete",
        }
    }

    /// The cluster tool called `tool`, if it is one (without building any manifest).
    fn named(tool: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == tool)
    }

    fn spec(self) -> ToolSpec {
        let schema = |value: schemars::Schema| serde_json::to_value(value).unwrap_or(json!({}));
        let object_ref = schema(schemars::schema_for!(ObjectRef));
        let (description, mutating, input) = match self {
            Self::Get => ("Reads one Kubernetes object (judged by the policies as a `get`).", false, object_ref),
            Self::List => ("Lists Kubernetes objects of one kind (label/field selectors, pages).", false, schema(schemars::schema_for!(ListInput))),
            Self::Describe => ("An object, its events and its owners (like kubectl describe).", false, object_ref.clone()),
            Self::Events => ("Recent events, optionally about one object or warnings only.", false, schema(schemars::schema_for!(EventsInput))),
            Self::Logs => ("A container's log (tail, since, previous run).", false, schema(schemars::schema_for!(LogsInput))),
            Self::PodFacts => ("Gathers what a diagnosis needs about a pod (or a Deployment's/StatefulSet's most troubled pod): the pod, its recent events, and its current and previous containers' logs (tails).", false, schema(schemars::schema_for!(PodInput))),
            Self::DryRun => ("Checks manifests without changing anything: the policies judge each object as asked, the API server dry-runs it, and the policies judge the result as it would be stored.", false, schema(schemars::schema_for!(ManifestsInput))),
            Self::Apply => ("Applies manifests (server-side apply) after both policy checkpoints and a dry run; runs only with the person's approval.", true, schema(schemars::schema_for!(ManifestsInput))),
            Self::Scale => ("Sets a Deployment's, StatefulSet's or ReplicaSet's replicas; runs only with the person's approval.", true, schema(schemars::schema_for!(ScaleInput))),
            Self::Restart => ("Restarts a Deployment's, StatefulSet's or DaemonSet's pods the way `kubectl rollout restart` does; runs only with the person's approval.", true, schema(schemars::schema_for!(RestartInput))),
            Self::Delete => ("Deletes one Kubernetes object (never a Namespace); runs only with the person's approval.", true, object_ref),
        };
        ToolSpec {
            name: self.name().to_owned(),
            description: description.to_owned(),
            workspace: if matches!(self, Self::DryRun | Self::Apply) {
                WorkspaceAccess::Read
            } else {
                WorkspaceAccess::None
            },
            mutating,
            input_schema: input,
            output_schema: json!({"type": "object"}),
        }
    }
}

struct ClusterTool {
    spec: ToolSpec,
    kind: ToolKind,
    gate: ClusterGate,
    /// Gates acting as the people calls were made for, by person.
    people: std::sync::Mutex<std::collections::HashMap<super::Person, ClusterGate>>,
}

/// Impersonating gates kept per tool before the cache starts over.
const MAX_PEOPLE_KEPT: usize = 256;

impl Tool for ClusterTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move { self.run(context, input).await })
    }
}

fn parse<T: serde::de::DeserializeOwned>(tool: &str, input: &Value) -> Result<T> {
    serde_json::from_value(input.clone()).map_err(|error| Error::InvalidChange {
        message: format!("{tool}: {error}"),
    })
}

impl ClusterTool {
    fn requested_by(context: &ToolContext) -> &str {
        if context.requested_by.is_empty() {
            "unknown"
        } else {
            &context.requested_by
        }
    }

    fn approval(&self, context: &ToolContext) -> Result<Approval> {
        match &context.approved_by {
            Some(who) if !who.trim().is_empty() => {
                let approval = Approval::by(who.clone());
                Ok(match &context.thread_id {
                    Some(thread) => approval.in_thread(thread.clone()),
                    None => approval,
                })
            }
            _ => Err(Error::InvalidChange {
                message: format!(
                    "{} changes the cluster and runs only with the person's approval",
                    self.spec.name
                ),
            }),
        }
    }

    /// The gate to call through: deckhand's own, or one acting as the person the call is
    /// made for (kept per person: making a client builds its TLS set-up).
    fn gate_for(&self, context: &ToolContext) -> Result<ClusterGate> {
        let Some(person) = &context.acting_as else {
            return Ok(self.gate.clone());
        };
        let mut people = self
            .people
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(gate) = people.get(person) {
            return Ok(gate.clone());
        }
        let gate = self.gate.acting_as(person)?;
        if people.len() >= MAX_PEOPLE_KEPT {
            people.clear();
        }
        people.insert(person.clone(), gate.clone());
        Ok(gate)
    }

    async fn run(&self, context: &ToolContext, input: &Value) -> Result<Value> {
        let gate = &self.gate_for(context)?;
        let who = Self::requested_by(context);
        let name = self.spec.name.as_str();
        match self.kind {
            ToolKind::Get => {
                let target: ObjectRef = parse(name, input)?;
                let object = gate.get(&target, who).await?;
                Ok(json!({"found": object.is_some(), "object": object}))
            }
            ToolKind::List => {
                let list: ListInput = parse(name, input)?;
                let query = ListQuery {
                    api_version: list.api_version,
                    kind: list.kind,
                    namespace: list.namespace,
                    label_selector: list.label_selector,
                    field_selector: list.field_selector,
                    limit: list.limit,
                    continue_token: list.continue_token,
                };
                let page = gate.list(&query, who).await?;
                Ok(json!({"items": page.items, "continue": page.continue_token}))
            }
            ToolKind::Describe => {
                let target: ObjectRef = parse(name, input)?;
                let described = gate.describe(&target, MAX_EVENTS, who).await?;
                Ok(match described {
                    Some(described) => described,
                    None => json!({"found": false, "object": target.to_string()}),
                })
            }
            ToolKind::Events => {
                let events: EventsInput = parse(name, input)?;
                self.events(gate, events, who).await
            }
            ToolKind::Logs => {
                let logs: LogsInput = parse(name, input)?;
                self.logs(gate, logs, who).await
            }
            ToolKind::PodFacts => {
                let pod: PodInput = parse(name, input)?;
                self.pod_facts(gate, &pod.namespace, &pod.name, who).await
            }
            ToolKind::DryRun | ToolKind::Apply => {
                let manifests: ManifestsInput = parse(name, input)?;
                let objects = manifest_objects(context, manifests)?;
                let approval = match self.kind {
                    ToolKind::Apply => Some(self.approval(context)?),
                    _ => None,
                };
                let mut results = Vec::with_capacity(objects.len());
                for object in objects {
                    let prepared = self
                        .gate
                        .prepare(ClusterChange::Apply { object }, who)
                        .await?;
                    let operation = if prepared.current.is_some() {
                        "update"
                    } else {
                        "create"
                    };
                    match &approval {
                        None => results.push(json!({
                            "object": prepared.target.to_string(),
                            "operation": operation,
                            "dry_run": redact_secrets(prepared.dry_run.clone()),
                            "diff": prepared.diff(),
                            "warnings": prepared.warnings,
                        })),
                        Some(approval) => {
                            let written = gate.execute(&prepared, approval).await?;
                            results.push(json!({
                                "object": prepared.target.to_string(),
                                "operation": operation,
                                "result": redact_secrets(written),
                            }));
                        }
                    }
                }
                Ok(match self.kind {
                    ToolKind::Apply => json!({"applied": results}),
                    _ => json!({"results": results}),
                })
            }
            ToolKind::Scale => {
                let scale: ScaleInput = parse(name, input)?;
                if !matches!(
                    scale.kind.as_str(),
                    "Deployment" | "StatefulSet" | "ReplicaSet"
                ) {
                    return Err(Error::InvalidChange {
                        message: format!(
                            "{} cannot be scaled; Deployment, StatefulSet or ReplicaSet can",
                            scale.kind
                        ),
                    });
                }
                let approval = self.approval(context)?;
                let target = ObjectRef {
                    api_version: "apps/v1".into(),
                    kind: scale.kind,
                    namespace: Some(scale.namespace),
                    name: scale.name,
                };
                let prepared = self
                    .gate
                    .prepare(
                        ClusterChange::Scale {
                            target: target.clone(),
                            replicas: scale.replicas,
                        },
                        who,
                    )
                    .await?;
                gate.execute(&prepared, &approval).await?;
                Ok(json!({"object": target.to_string(), "replicas": scale.replicas}))
            }
            ToolKind::Restart => {
                let restart: RestartInput = parse(name, input)?;
                if !matches!(
                    restart.kind.as_str(),
                    "Deployment" | "StatefulSet" | "DaemonSet"
                ) {
                    return Err(Error::InvalidChange {
                        message: format!(
                            "{} cannot be restarted; Deployment, StatefulSet or DaemonSet can",
                            restart.kind
                        ),
                    });
                }
                let approval = self.approval(context)?;
                let target = ObjectRef {
                    api_version: "apps/v1".into(),
                    kind: restart.kind,
                    namespace: Some(restart.namespace),
                    name: restart.name,
                };
                let restarted_at = chrono_like_now();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": restarted_at
                }}}}});
                let prepared = self
                    .gate
                    .prepare(
                        ClusterChange::Patch {
                            target: target.clone(),
                            patch_type: PatchType::Strategic,
                            patch,
                        },
                        who,
                    )
                    .await?;
                gate.execute(&prepared, &approval).await?;
                Ok(json!({"object": target.to_string(), "restarted_at": restarted_at}))
            }
            ToolKind::Delete => {
                let target: ObjectRef = parse(name, input)?;
                let approval = self.approval(context)?;
                let prepared = self
                    .gate
                    .prepare(
                        ClusterChange::Delete {
                            target: target.clone(),
                        },
                        who,
                    )
                    .await?;
                let result = gate.execute(&prepared, &approval).await?;
                Ok(json!({"object": target.to_string(), "result": redact_secrets(result)}))
            }
        }
    }

    /// The pod (or the most troubled pod of a workload), its events and its logs.
    async fn pod_facts(
        &self,
        gate: &ClusterGate,
        namespace: &str,
        name: &str,
        who: &str,
    ) -> Result<Value> {
        let pod_ref = |name: &str| ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        };
        let pod = match gate.get(&pod_ref(name), who).await? {
            Some(pod) => pod,
            None => self.troubled_pod_of(gate, namespace, name, who).await?,
        };
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        let events = self
            .gate
            .events_of(&pod_ref(&pod_name), None, MAX_EVENTS, who)
            .await?;
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|containers| {
                containers
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut logs = serde_json::Map::new();
        let mut previous_logs = serde_json::Map::new();
        let mut unavailable = Vec::new();
        for container in &containers {
            for (previous, into) in [(false, &mut logs), (true, &mut previous_logs)] {
                let query = LogQuery {
                    namespace: namespace.to_owned(),
                    pod: pod_name.clone(),
                    container: container.clone(),
                    previous,
                    tail_lines: Some(DEFAULT_TAIL_LINES),
                    since_seconds: None,
                    limit_bytes: MAX_LOG_BYTES,
                };
                match gate.logs(&query, who).await {
                    Ok(text) => {
                        into.insert(container.clone(), Value::String(text));
                    }
                    // Logs need a kubelet; a pod never started has none. Say so, go on.
                    Err(error @ Error::Cluster { .. }) => unavailable.push(format!(
                        "{container}{}: {error}",
                        if previous { " (previous)" } else { "" }
                    )),
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(json!({
            "pod": pod,
            "events": events,
            "logs": logs,
            "previous_logs": previous_logs,
            "logs_unavailable": unavailable,
        }))
    }

    /// Events in a namespace (or everywhere), optionally about one kind or object.
    async fn events(&self, gate: &ClusterGate, input: EventsInput, who: &str) -> Result<Value> {
        let mut selectors = Vec::new();
        if let Some(kind) = &input.kind {
            selectors.push(format!("involvedObject.kind={kind}"));
        }
        if let Some(name) = &input.name {
            selectors.push(format!("involvedObject.name={name}"));
        }
        if input.warnings_only {
            selectors.push("type=Warning".to_owned());
        }
        let limit = input.limit.map_or(MAX_EVENTS, |limit| limit as usize);
        let query = ListQuery {
            api_version: "v1".to_owned(),
            kind: "Event".to_owned(),
            namespace: input.namespace,
            field_selector: (!selectors.is_empty()).then(|| selectors.join(",")),
            ..ListQuery::default()
        };
        let mut events = gate.list_all(&query, who).await?;
        events.sort_by_key(event_time);
        let total = events.len();
        if total > limit {
            events.drain(..total - limit);
        }
        Ok(json!({"events": events, "total": total}))
    }

    /// One container's log, as asked.
    async fn logs(&self, gate: &ClusterGate, input: LogsInput, who: &str) -> Result<Value> {
        let container = match input.container {
            Some(container) => container,
            None => {
                let pod = ObjectRef {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: Some(input.namespace.clone()),
                    name: input.pod.clone(),
                };
                let pod = self
                    .gate
                    .get(&pod, who)
                    .await?
                    .ok_or_else(|| Error::InvalidChange {
                        message: format!("no pod {} in namespace {}", input.pod, input.namespace),
                    })?;
                let names: Vec<&str> = pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map(|containers| {
                        containers
                            .iter()
                            .filter_map(|c| c.get("name").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                match names.as_slice() {
                    [only] => (*only).to_owned(),
                    _ => {
                        return Err(Error::InvalidChange {
                            message: format!(
                                "pod {}/{} has containers {}: name one in `container`",
                                input.namespace,
                                input.pod,
                                names.join(", ")
                            ),
                        })
                    }
                }
            }
        };
        let query = LogQuery {
            namespace: input.namespace,
            pod: input.pod,
            container: container.clone(),
            previous: input.previous,
            tail_lines: Some(input.tail_lines.unwrap_or(DEFAULT_TAIL_LINES)),
            since_seconds: input.since_seconds,
            limit_bytes: input
                .limit_bytes
                .map_or(MAX_LOG_BYTES, |bytes| (bytes as usize).min(MAX_LOG_BYTES)),
        };
        let text = gate.logs(&query, who).await?;
        Ok(json!({"container": container, "previous": query.previous, "log": text}))
    }

    /// A workload's pod that looks worst: not ready first, then most restarts.
    async fn troubled_pod_of(
        &self,
        gate: &ClusterGate,
        namespace: &str,
        name: &str,
        who: &str,
    ) -> Result<Value> {
        let mut selector = None;
        for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
            let workload = ObjectRef {
                api_version: "apps/v1".into(),
                kind: kind.into(),
                namespace: Some(namespace.to_owned()),
                name: name.to_owned(),
            };
            if let Some(object) = gate.get(&workload, who).await? {
                selector = object
                    .pointer("/spec/selector/matchLabels")
                    .and_then(Value::as_object)
                    .map(|labels| {
                        labels
                            .iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                break;
            }
        }
        let selectors = match selector {
            Some(selector) => vec![selector],
            None => vec![
                format!("app={name}"),
                format!("app.kubernetes.io/name={name}"),
            ],
        };
        for selector in selectors {
            let query = ListQuery {
                api_version: "v1".to_owned(),
                kind: "Pod".to_owned(),
                namespace: Some(namespace.to_owned()),
                label_selector: Some(selector),
                ..ListQuery::default()
            };
            let pods = gate.list(&query, who).await?.items;
            if let Some(worst) = pods.into_iter().max_by_key(trouble_score) {
                return Ok(worst);
            }
        }
        Err(Error::InvalidChange {
            message: format!(
                "no pod, Deployment or StatefulSet named {name} in namespace {namespace}"
            ),
        })
    }
}

/// Higher is worse: not ready, then restarts.
fn trouble_score(pod: &Value) -> (bool, i64) {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let not_ready = statuses.is_empty()
        || statuses
            .iter()
            .any(|status| status.get("ready") != Some(&Value::Bool(true)));
    let restarts = statuses
        .iter()
        .filter_map(|status| status.get("restartCount").and_then(Value::as_i64))
        .sum();
    (not_ready, restarts)
}

/// Now as RFC 3339 UTC (what `kubectl rollout restart` writes), without a date crate.
fn chrono_like_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let (hour, minute, second) = (
        (seconds % 86_400) / 3600,
        (seconds % 3600) / 60,
        seconds % 60,
    );
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// The objects of a manifests input: inline, or from a YAML file in the workspace
/// (confined like the sandbox: no absolute paths, no `..`, no symlinks out).
fn manifest_objects(context: &ToolContext, input: ManifestsInput) -> Result<Vec<Value>> {
    manifests_in(&context.workspace, input)
}

/// The changes a mutating cluster tool would ask for with `input` (a workspace-relative
/// manifest file is read from `workspace`): what a preview shows before approval.
/// `Ok(None)` for a tool that is not a mutating cluster tool.
///
/// # Errors
/// [`Error::InvalidChange`] for an input the tool would refuse (or a file not written
/// yet).
pub fn planned_changes(
    tool: &str,
    input: &Value,
    workspace: &std::path::Path,
) -> Result<Option<Vec<ClusterChange>>> {
    let Some(kind) = ToolKind::named(tool) else {
        return Ok(None);
    };
    let workload = |kind: String, namespace: String, name: String| ObjectRef {
        api_version: "apps/v1".into(),
        kind,
        namespace: Some(namespace),
        name,
    };
    Ok(Some(match kind {
        ToolKind::Apply => manifests_in(workspace, parse(tool, input)?)?
            .into_iter()
            .map(|object| ClusterChange::Apply { object })
            .collect(),
        ToolKind::Scale => {
            let scale: ScaleInput = parse(tool, input)?;
            vec![ClusterChange::Scale {
                target: workload(scale.kind, scale.namespace, scale.name),
                replicas: scale.replicas,
            }]
        }
        ToolKind::Restart => {
            let restart: RestartInput = parse(tool, input)?;
            vec![ClusterChange::Patch {
                target: workload(restart.kind, restart.namespace, restart.name),
                patch_type: PatchType::Strategic,
                patch: json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": chrono_like_now()
                }}}}}),
            }]
        }
        ToolKind::Delete => vec![ClusterChange::Delete {
            target: parse(tool, input)?,
        }],
        _ => return Ok(None),
    }))
}

/// The permissions a cluster tool call with `input` needs, as RBAC names them: what the
/// access review before a plan asks the cluster about. `Ok(None)` for a tool that is not
/// a cluster tool. A dry run needs what the write would (the API server authorizes a
/// dry run like the request itself).
///
/// # Errors
/// [`Error::InvalidChange`] for an input the tool would refuse (or a manifest file not
/// written yet); [`Error::Cluster`] when discovery fails or the kind is unknown.
pub async fn access_needed_for(
    gate: &ClusterGate,
    tool: &str,
    input: &Value,
    workspace: &std::path::Path,
) -> Result<Option<Vec<AccessCheck>>> {
    let Some(kind) = ToolKind::named(tool) else {
        return Ok(None);
    };
    let pod = |namespace: String, name: String| ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(namespace),
        name,
    };
    let of_kind = |api_version: String, kind: String, namespace: Option<String>| ObjectRef {
        api_version,
        kind,
        namespace,
        name: String::new(),
    };
    let mut checks = Vec::new();
    match kind {
        ToolKind::Get | ToolKind::Describe => {
            let target: ObjectRef = parse(tool, input)?;
            checks.push(gate.access_to(target, "get", None).await?);
        }
        ToolKind::List => {
            let list: ListInput = parse(tool, input)?;
            let target = of_kind(list.api_version, list.kind, list.namespace);
            checks.push(gate.access_to(target, "list", None).await?);
        }
        ToolKind::Events => {
            let events: EventsInput = parse(tool, input)?;
            let target = of_kind("v1".into(), "Event".into(), events.namespace);
            checks.push(gate.access_to(target, "list", None).await?);
        }
        ToolKind::Logs => {
            let logs: LogsInput = parse(tool, input)?;
            let target = pod(logs.namespace, logs.pod);
            checks.push(gate.access_to(target, "get", Some("log")).await?);
        }
        ToolKind::PodFacts => {
            let facts: PodInput = parse(tool, input)?;
            let target = pod(facts.namespace, facts.name);
            checks.push(gate.access_to(target.clone(), "get", None).await?);
            checks.push(gate.access_to(target, "get", Some("log")).await?);
        }
        ToolKind::DryRun => {
            for object in manifests_in(workspace, parse(tool, input)?)? {
                let change = ClusterChange::Apply { object };
                checks.push(gate.access_needed(&change).await?);
            }
        }
        ToolKind::Apply | ToolKind::Scale | ToolKind::Restart | ToolKind::Delete => {
            for change in planned_changes(tool, input, workspace)?.unwrap_or_default() {
                checks.push(gate.access_needed(&change).await?);
            }
        }
    }
    Ok(Some(checks))
}

fn manifests_in(workspace: &std::path::Path, input: ManifestsInput) -> Result<Vec<Value>> {
    let mut objects = input.manifests;
    if let Some(file) = input.file {
        let relative = std::path::Path::new(&file);
        if relative.is_absolute()
            || relative
                .components()
                .any(|part| !matches!(part, std::path::Component::Normal(_)))
        {
            return Err(Error::InvalidChange {
                message: format!("{file:?} must be a plain path inside the workspace"),
            });
        }
        let root = workspace
            .canonicalize()
            .map_err(|error| Error::InvalidChange {
                message: format!("the workspace {} is unusable: {error}", workspace.display()),
            })?;
        let path = root
            .join(relative)
            .canonicalize()
            .map_err(|error| Error::InvalidChange {
                message: format!("cannot read {file}: {error}"),
            })?;
        if !path.starts_with(&root) {
            return Err(Error::InvalidChange {
                message: format!("{file} leads outside the workspace"),
            });
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_MANIFEST_FILE_BYTES {
            return Err(Error::InvalidChange {
                message: format!(
                    "{file} is {size} bytes; at most {MAX_MANIFEST_FILE_BYTES} are read"
                ),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|error| Error::InvalidChange {
            message: format!("cannot read {file}: {error}"),
        })?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).map_err(|error| Error::InvalidChange {
                message: format!("{file} is not valid YAML: {error}"),
            })?;
            match value {
                Value::Null => {}
                Value::Object(ref fields)
                    if fields.get("kind").and_then(Value::as_str) == Some("List") =>
                {
                    if let Some(items) = fields.get("items").and_then(Value::as_array) {
                        objects.extend(items.iter().cloned());
                    }
                }
                other => objects.push(other),
            }
        }
    }
    if objects.is_empty() {
        return Err(Error::InvalidChange {
            message: "no manifests: give `manifests` or a `file` with at least one object"
                .to_owned(),
        });
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_valid_manifest() {
        for kind in ToolKind::ALL {
            let spec = kind.spec();
            assert!(
                spec.problems().is_empty(),
                "{}: {:?}",
                spec.name,
                spec.problems()
            );
        }
        let mutating: Vec<String> = ToolKind::ALL
            .iter()
            .map(|kind| kind.spec())
            .filter(|spec| spec.mutating)
            .map(|spec| spec.name)
            .collect();
        assert_eq!(
            mutating,
            ["kube_apply", "kube_scale", "kube_restart", "kube_delete"]
        );
    }

    #[test]
    fn restart_stamps_are_rfc3339() {
        let stamp = chrono_like_now();
        assert_eq!(stamp.len(), 20, "{stamp}");
        assert!(stamp.starts_with("20") && stamp.ends_with('Z') && stamp.contains('T'));
    }

    #[test]
    fn manifest_files_stay_inside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n").unwrap();
        let context = ToolContext {
            workspace: dir.path().to_owned(),
            ..ToolContext::default()
        };
        let read = |file: &str| {
            manifest_objects(
                &context,
                ManifestsInput {
                    manifests: vec![],
                    file: Some(file.into()),
                },
            )
        };
        assert_eq!(read("ok.yaml").unwrap().len(), 2);
        for escape in ["../ok.yaml", "/etc/passwd", "./ok.yaml/.."] {
            assert!(read(escape).is_err(), "{escape}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link.yaml")).unwrap();
            let error = read("link.yaml").unwrap_err();
            assert!(
                error.to_string().contains("outside the workspace"),
                "{error}"
            );
        }
    }
}
