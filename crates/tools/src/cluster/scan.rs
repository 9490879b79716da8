//! The health scan (`health_scan`): a read-only look across a namespace, or the whole
//! cluster, for what needs a person: containers crash-looping or unable to start, pods
//! pending or not ready, Deployments that stopped progressing or lack replicas, and
//! PersistentVolumeClaims that never bound.
//!
//! It lists Pods, Deployments and PersistentVolumeClaims (and StorageClasses, to tell a
//! claim waiting for its first consumer from one that cannot bind) through the gate, so
//! the policies judge every read, and [`assess_health`] turns them into findings with
//! deterministic rules. It changes nothing; each finding about a pod or a Deployment names
//! the read-only step that looks closer (`pod_facts`, then `diagnose_pod`).
//!
//! States that pass on their own in a healthy cluster (a pod being scheduled, a rollout
//! under way, a claim being provisioned) are reported only once they have lasted
//! [`DEFAULT_GRACE_SECONDS`]; crash loops, containers that cannot start and Deployments
//! past their progress deadline are reported at once.

use super::{ClusterGate, ListQuery};
use crate::error::{Error, Result};
use crate::registry::{Tool, ToolContext, ToolFuture, ToolRegistry};
use crate::sandbox::WorkspaceAccess;
use crate::spec::ToolSpec;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a pending or not-ready pod, an unavailable Deployment or a pending claim must
/// last before it is reported, unless the caller says otherwise.
pub const DEFAULT_GRACE_SECONDS: u32 = 300;
/// Restarts at which a running container counts as restarting too often.
pub const DEFAULT_RESTART_THRESHOLD: u32 = 5;
/// The tool's name.
pub const HEALTH_SCAN: &str = "health_scan";

/// Waiting reasons that mean a container cannot start (as opposed to starting).
const CANNOT_START: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// `health_scan`'s input.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthScanInput {
    /// One namespace; omit for every namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Report pending or not-ready pods, Deployments short of replicas and pending claims
    /// only once they have lasted this many seconds (default 300).
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub grace_seconds: Option<u32>,
    /// Restarts at which a running container counts as restarting too often (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    pub restart_threshold: Option<u32>,
}

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Something is degraded.
    Medium,
    /// Something is down or cannot start.
    High,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthFinding {
    /// `crash_loop`, `container_cannot_start`, `frequent_restarts`, `pod_pending`,
    /// `pod_not_ready`, `deployment_stuck`, `deployment_unavailable`, `pvc_pending`,
    /// `pvc_lost`.
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// The object, e.g. `v1 Pod shop/api-0`.
    pub object: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The container, for container findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The pod's controller, e.g. `ReplicaSet api-7d9f8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The container's restarts, for container findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i64>,
    /// Since when, as the cluster recorded it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// A read-only step that looks closer: `{"tool", "input"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<Value>,
}

/// How many objects of each kind were looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Scanned {
    /// Pods.
    pub pods: usize,
    /// Deployments.
    pub deployments: usize,
    /// PersistentVolumeClaims.
    pub persistent_volume_claims: usize,
}

/// What the health scan found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthReport {
    /// The namespace scanned; `None` for every namespace.
    pub namespace: Option<String>,
    /// Whether nothing was found.
    pub healthy: bool,
    /// One line for a person.
    pub summary: String,
    /// Findings, worst first.
    pub findings: Vec<HealthFinding>,
    /// Findings per severity, e.g. `{"high": 2, "medium": 1}`.
    pub counts: BTreeMap<String, usize>,
    /// What was looked at.
    pub scanned: Scanned,
}

/// How [`assess_health`] judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthOptions {
    /// How long passing states must last to be reported.
    pub grace: chrono::Duration,
    /// Restarts at which a running container counts as restarting too often.
    pub restart_threshold: i64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            grace: chrono::Duration::seconds(i64::from(DEFAULT_GRACE_SECONDS)),
            restart_threshold: i64::from(DEFAULT_RESTART_THRESHOLD),
        }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn time(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    text(value, pointer)
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|condition| condition.get("type").and_then(Value::as_str) == Some(kind))
}

/// Whether a state that began at `since` (unknown: long ago) has lasted the grace period.
fn lasted(since: Option<DateTime<Utc>>, now: DateTime<Utc>, options: &HealthOptions) -> bool {
    since.is_none_or(|since| now - since >= options.grace)
}

fn rfc3339(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Who an object is about, for findings.
struct Subject {
    object: String,
    namespace: String,
    name: String,
    owner: Option<String>,
}

impl Subject {
    fn of(object: &Value, api_version: &str, kind: &str) -> Self {
        let namespace = text(object, "/metadata/namespace").unwrap_or("").to_owned();
        let name = text(object, "/metadata/name").unwrap_or("").to_owned();
        let owner = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|owners| {
                owners
                    .iter()
                    .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                    .or_else(|| owners.first())
            })
            .and_then(|owner| {
                Some(format!(
                    "{} {}",
                    owner.get("kind")?.as_str()?,
                    owner.get("name")?.as_str()?
                ))
            });
        Self {
            object: format!("{api_version} {kind} {namespace}/{name}"),
            namespace,
            name,
            owner,
        }
    }

    fn finding(&self, rule: &str, severity: Severity, message: String) -> HealthFinding {
        HealthFinding {
            rule: rule.to_owned(),
            severity,
            object: self.object.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            container: None,
            owner: self.owner.clone(),
            restarts: None,
            since: None,
            message,
            next_step: None,
        }
    }

    /// `pod_facts` on this pod or workload: the evidence `diagnose_pod` reads.
    fn facts_step(&self) -> Value {
        json!({"tool": "pod_facts", "input": {"namespace": self.namespace, "name": self.name}})
    }
}

/// The last termination of a container, in words: `exit code 1 (Error) at …`.
fn last_exit(status: &Value) -> Option<String> {
    let terminated = status.pointer("/lastState/terminated")?;
    let code = terminated.get("exitCode").and_then(Value::as_i64);
    let reason = terminated.get("reason").and_then(Value::as_str);
    let mut words = match code {
        Some(code) => format!("last exit code {code}"),
        None => "last terminated".to_owned(),
    };
    if let Some(reason) = reason {
        words.push_str(&format!(" ({reason})"));
    }
    if let Some(at) = terminated.get("finishedAt").and_then(Value::as_str) {
        words.push_str(&format!(" at {at}"));
    }
    Some(words)
}

fn restarts_word(restarts: i64) -> String {
    match restarts {
        1 => "1 restart".to_owned(),
        n => format!("{n} restarts"),
    }
}

/// The findings about one pod.
fn assess_pod(pod: &Value, now: DateTime<Utc>, options: &HealthOptions) -> Vec<HealthFinding> {
    let subject = Subject::of(pod, "v1", "Pod");
    let phase = text(pod, "/status/phase").unwrap_or("Pending");
    if matches!(phase, "Succeeded" | "Failed") {
        // Finished pods (Jobs, evicted pods) are history, not health.
        return Vec::new();
    }
    let mut findings = Vec::new();
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|pointer| pod.pointer(pointer).and_then(Value::as_array))
        .flatten();
    for status in statuses {
        let container = status.get("name").and_then(Value::as_str).unwrap_or("");
        let restarts = status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let waiting = text(status, "/state/waiting/reason");
        let waiting_message = text(status, "/state/waiting/message").unwrap_or("");
        let exit = last_exit(status);
        let mut finding = match waiting {
            Some("CrashLoopBackOff") => {
                let mut message = format!(
                    "container {container} is crash-looping: {}",
                    restarts_word(restarts)
                );
                if let Some(exit) = &exit {
                    message.push_str(&format!(", {exit}"));
                }
                subject.finding("crash_loop", Severity::High, message)
            }
            Some(reason) if CANNOT_START.contains(&reason) => {
                let mut message = format!("container {container} cannot start: {reason}");
                if !waiting_message.is_empty() {
                    message.push_str(&format!(" ({waiting_message})"));
                }
                subject.finding("container_cannot_start", Severity::High, message)
            }
            _ if restarts >= options.restart_threshold => {
                let mut message = format!(
                    "container {container} has restarted often: {}",
                    restarts_word(restarts)
                );
                if let Some(exit) = &exit {
                    message.push_str(&format!(", {exit}"));
                }
                subject.finding("frequent_restarts", Severity::Medium, message)
            }
            _ => continue,
        };
        finding.container = Some(container.to_owned());
        finding.restarts = Some(restarts);
        finding.since = rfc3339(time(status, "/lastState/terminated/finishedAt"));
        finding.next_step = Some(subject.facts_step());
        findings.push(finding);
    }
    if !findings.is_empty() {
        // The container findings say why the pod is not ready.
        return findings;
    }
    let created = time(pod, "/metadata/creationTimestamp");
    if phase == "Pending" {
        let scheduled = condition(pod, "PodScheduled");
        let unschedulable =
            scheduled.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("False"));
        let since = scheduled
            .filter(|_| unschedulable)
            .and_then(|c| time(c, "/lastTransitionTime"))
            .or(created);
        if !lasted(since, now, options) {
            return findings;
        }
        let why = match scheduled.filter(|_| unschedulable) {
            Some(condition) => format!(
                "not scheduled: {}{}",
                text(condition, "/reason").unwrap_or("Unschedulable"),
                text(condition, "/message")
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
            None if scheduled.is_none() && text(pod, "/spec/nodeName").is_none() => {
                "not scheduled to a node yet".to_owned()
            }
            None => "scheduled, but its containers have not started".to_owned(),
        };
        let mut finding = subject.finding(
            "pod_pending",
            if unschedulable {
                Severity::High
            } else {
                Severity::Medium
            },
            format!("pod is Pending: {why}"),
        );
        finding.since = rfc3339(since);
        finding.next_step = Some(subject.facts_step());
        findings.push(finding);
        return findings;
    }
    let ready = condition(pod, "Ready");
    let not_ready = phase == "Unknown"
        || ready.is_some_and(|c| c.get("status").and_then(Value::as_str) != Some("True"));
    if not_ready {
        let since = ready
            .and_then(|c| time(c, "/lastTransitionTime"))
            .or(created);
        if lasted(since, now, options) {
            let unready: Vec<&str> = pod
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(|statuses| {
                    statuses
                        .iter()
                        .filter(|s| s.get("ready").and_then(Value::as_bool) != Some(true))
                        .filter_map(|s| s.get("name").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let mut message = if phase == "Unknown" {
                "pod state is Unknown (its node stopped reporting)".to_owned()
            } else {
                format!("pod is {phase} but not ready")
            };
            if !unready.is_empty() {
                message.push_str(&format!("; containers not ready: {}", unready.join(", ")));
            }
            if let Some(why) = ready.and_then(|c| text(c, "/message")) {
                message.push_str(&format!(" ({why})"));
            }
            let mut finding = subject.finding("pod_not_ready", Severity::Medium, message);
            finding.since = rfc3339(since);
            finding.next_step = Some(subject.facts_step());
            findings.push(finding);
        }
    }
    findings
}

/// The findings about one Deployment.
fn assess_deployment(
    deployment: &Value,
    now: DateTime<Utc>,
    options: &HealthOptions,
) -> Option<HealthFinding> {
    let subject = Subject::of(deployment, "apps/v1", "Deployment");
    let desired = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if desired == 0 {
        return None;
    }
    let available = deployment
        .pointer("/status/availableReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let progressing = condition(deployment, "Progressing");
    let replicas = format!("{available} of {desired} replicas available");
    let stuck = progressing.filter(|c| {
        c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = stuck {
        let mut finding = subject.finding(
            "deployment_stuck",
            Severity::High,
            format!(
                "rollout stopped progressing (ProgressDeadlineExceeded): {}; {replicas}",
                text(condition, "/message").unwrap_or("no message")
            ),
        );
        finding.since = rfc3339(time(condition, "/lastTransitionTime"));
        finding.next_step = Some(subject.facts_step());
        return Some(finding);
    }
    if available >= desired {
        return None;
    }
    let unavailable_condition = condition(deployment, "Available")
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("False"));
    let since = unavailable_condition
        .and_then(|c| time(c, "/lastTransitionTime"))
        .or_else(|| progressing.and_then(|c| time(c, "/lastUpdateTime")))
        .or_else(|| time(deployment, "/metadata/creationTimestamp"));
    if !lasted(since, now, options) {
        return None;
    }
    let paused = deployment
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut message = format!(
        "{} unavailable: {replicas}",
        replicas_word(desired - available)
    );
    if paused {
        message.push_str(" (the rollout is paused)");
    }
    let mut finding = subject.finding(
        "deployment_unavailable",
        if available == 0 {
            Severity::High
        } else {
            Severity::Medium
        },
        message,
    );
    finding.since = rfc3339(since);
    finding.next_step = Some(subject.facts_step());
    Some(finding)
}

/// `1 replica`, `3 replicas`.
fn replicas_word(count: i64) -> String {
    match count {
        1 => "1 replica".to_owned(),
        n => format!("{n} replicas"),
    }
}

/// The findings about one PersistentVolumeClaim.
fn assess_claim(
    claim: &Value,
    classes: &BTreeMap<String, Value>,
    now: DateTime<Utc>,
    options: &HealthOptions,
) -> Option<HealthFinding> {
    let subject = Subject::of(claim, "v1", "PersistentVolumeClaim");
    let since = time(claim, "/metadata/creationTimestamp");
    match text(claim, "/status/phase").unwrap_or("Pending") {
        "Lost" => Some(
            subject.finding(
                "pvc_lost",
                Severity::High,
                "claim is Lost: its PersistentVolume is gone; the data it held is unreachable"
                    .to_owned(),
            ),
        ),
        "Pending" => {
            let class_name = text(claim, "/spec/storageClassName").filter(|c| !c.is_empty());
            let class = class_name.and_then(|name| classes.get(name));
            let waits_for_consumer = class
                .and_then(|c| c.get("volumeBindingMode"))
                .and_then(Value::as_str)
                == Some("WaitForFirstConsumer");
            let selected = claim
                .pointer("/metadata/annotations/volume.kubernetes.io~1selected-node")
                .is_some();
            if (waits_for_consumer && !selected) || !lasted(since, now, options) {
                // Binding waits for the first pod that uses it: nothing wrong yet.
                return None;
            }
            let why = match (class_name, class) {
                (None, _) => "no storage class: it needs a matching PersistentVolume (or a default StorageClass)".to_owned(),
                (Some(name), None) => format!("storage class {name} does not exist"),
                (Some(name), Some(_)) => format!("storage class {name} has not provisioned a volume"),
            };
            let mut finding = subject.finding(
                "pvc_pending",
                Severity::Medium,
                format!("claim is not bound: {why}"),
            );
            finding.since = rfc3339(since);
            Some(finding)
        }
        _ => None,
    }
}

/// Judges the cluster's health from its Pods, Deployments, PersistentVolumeClaims and
/// StorageClasses as the API server returns them (JSON), at `now`.
pub fn assess_health(
    namespace: Option<&str>,
    pods: &[Value],
    deployments: &[Value],
    claims: &[Value],
    storage_classes: &[Value],
    now: DateTime<Utc>,
    options: &HealthOptions,
) -> HealthReport {
    let classes: BTreeMap<String, Value> = storage_classes
        .iter()
        .filter_map(|class| Some((text(class, "/metadata/name")?.to_owned(), class.clone())))
        .collect();
    let mut findings: Vec<HealthFinding> = pods
        .iter()
        .flat_map(|pod| assess_pod(pod, now, options))
        .chain(
            deployments
                .iter()
                .filter_map(|deployment| assess_deployment(deployment, now, options)),
        )
        .chain(
            claims
                .iter()
                .filter_map(|claim| assess_claim(claim, &classes, now, options)),
        )
        .collect();
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.cmp(&b.object))
            .then_with(|| a.container.cmp(&b.container))
    });
    let mut counts = BTreeMap::new();
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in &findings {
        *counts
            .entry(finding.severity.as_str().to_owned())
            .or_insert(0) += 1;
        *rules.entry(finding.rule.as_str()).or_insert(0) += 1;
    }
    let scanned = Scanned {
        pods: pods.len(),
        deployments: deployments.len(),
        persistent_volume_claims: claims.len(),
    };
    let scope = match namespace {
        Some(namespace) => format!("namespace {namespace}"),
        None => "every namespace".to_owned(),
    };
    let looked_at = format!(
        "{} pods, {} deployments, {} claims",
        scanned.pods, scanned.deployments, scanned.persistent_volume_claims
    );
    let summary = if findings.is_empty() {
        format!("No problems in {scope} ({looked_at}).")
    } else {
        let severities: Vec<String> = ["high", "medium", "low"]
            .iter()
            .filter_map(|severity| counts.get(*severity).map(|n| format!("{n} {severity}")))
            .collect();
        let rules: Vec<String> = rules
            .iter()
            .map(|(rule, n)| format!("{rule} x{n}"))
            .collect();
        format!(
            "{} problem{} in {scope} ({}): {} ({looked_at}).",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            severities.join(", "),
            rules.join(", ")
        )
    };
    HealthReport {
        namespace: namespace.map(str::to_owned),
        healthy: findings.is_empty(),
        summary,
        findings,
        counts,
        scanned,
    }
}

impl ClusterGate {
    /// The health scan: lists what it needs through the gate (judged by the policies as
    /// `list`) and judges it at `now`. StorageClasses the policies or RBAC hide are
    /// treated as unknown.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`], [`Error::Cluster`] for the Pods, Deployments and claims.
    pub async fn health_scan(
        &self,
        namespace: Option<&str>,
        options: &HealthOptions,
        requested_by: &str,
    ) -> Result<HealthReport> {
        let query = |api_version: &str, kind: &str, namespace: Option<&str>| ListQuery {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            ..ListQuery::default()
        };
        let pods = self
            .list_all(&query("v1", "Pod", namespace), requested_by)
            .await?;
        let deployments = self
            .list_all(&query("apps/v1", "Deployment", namespace), requested_by)
            .await?;
        let claims = self
            .list_all(
                &query("v1", "PersistentVolumeClaim", namespace),
                requested_by,
            )
            .await?;
        let pending_claim = claims
            .iter()
            .any(|claim| text(claim, "/status/phase").is_none_or(|phase| phase == "Pending"));
        let classes = if pending_claim {
            match self
                .list_all(
                    &query("storage.k8s.io/v1", "StorageClass", None),
                    requested_by,
                )
                .await
            {
                Ok(classes) => classes,
                Err(error) => {
                    tracing::info!(%error, "health scan: StorageClasses not readable; judging claims without them");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Ok(assess_health(
            namespace,
            &pods,
            &deployments,
            &claims,
            &classes,
            Utc::now(),
            options,
        ))
    }
}

/// `health_scan` as a tool.
struct HealthScanTool {
    spec: ToolSpec,
    gate: ClusterGate,
}

impl Tool for HealthScanTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let input: HealthScanInput =
                serde_json::from_value(input.clone()).map_err(|error| Error::InvalidChange {
                    message: format!("{HEALTH_SCAN}: {error}"),
                })?;
            let options = HealthOptions {
                grace: chrono::Duration::seconds(i64::from(
                    input.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS),
                )),
                restart_threshold: i64::from(
                    input
                        .restart_threshold
                        .unwrap_or(DEFAULT_RESTART_THRESHOLD)
                        .max(1),
                ),
            };
            let who = if context.requested_by.is_empty() {
                "unknown"
            } else {
                &context.requested_by
            };
            let report = self
                .gate
                .health_scan(input.namespace.as_deref(), &options, who)
                .await?;
            serde_json::to_value(report).map_err(|error| Error::MalformedResult {
                tool: HEALTH_SCAN.to_owned(),
                message: error.to_string(),
            })
        })
    }
}

/// The scan tools' manifests.
pub fn scan_tool_specs() -> Vec<ToolSpec> {
    let schema = |value: schemars::Schema| serde_json::to_value(value).unwrap_or(json!({}));
    vec![ToolSpec {
        name: HEALTH_SCAN.to_owned(),
        description: "Read-only health check of a namespace or the cluster: crash loops (restarts, last exit), containers that cannot start, pods pending or not ready, stuck or short Deployments, unbound claims.".to_owned(),
        workspace: WorkspaceAccess::None,
        mutating: false,
        input_schema: schema(schemars::schema_for!(HealthScanInput)),
        output_schema: schema(schemars::schema_for!(HealthReport)),
    }]
}

/// Registers the scan tools over `gate`.
///
/// # Errors
/// [`Error::DuplicateTool`] when a tool of the same name is already registered.
pub fn register_scan_tools(registry: &mut ToolRegistry, gate: &ClusterGate) -> Result<()> {
    for spec in scan_tool_specs() {
        registry.register(
            Arc::new(HealthScanTool {
                spec,
                gate: gate.clone(),
            }),
            "cluster",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-25T12:00:00Z";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(NOW)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn pod(name: &str, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-11-25T10:00:00Z",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "api-7d9f8", "controller": true}]},
            "spec": {"containers": [{"name": "api", "image": "acme/api:1"}]},
            "status": status})
    }

    fn young(mut pod: Value) -> Value {
        pod["metadata"]["creationTimestamp"] = json!("2026-11-25T11:59:00Z");
        pod
    }

    fn rules(report: &HealthReport) -> Vec<(&str, &str)> {
        report
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.name.as_str()))
            .collect()
    }

    #[test]
    fn every_rule_fires_on_its_state_and_healthy_objects_stay_quiet() {
        let pods = vec![
            pod(
                "crashing",
                json!({"phase": "Running", "containerStatuses": [{"name": "api", "ready": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-25T11:58:00Z"}}}]}),
            ),
            pod(
                "bad-image",
                json!({"phase": "Pending", "containerStatuses": [{"name": "api", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"acme/api:nope\""}}}]}),
            ),
            pod(
                "flapping",
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "api", "ready": true, "restartCount": 12, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
            ),
            pod(
                "unschedulable",
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu.",
                "lastTransitionTime": "2026-11-25T10:00:00Z"}]}),
            ),
            pod(
                "unready",
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": "2026-11-25T11:00:00Z", "message": "containers with unready status: [api]"}],
                "containerStatuses": [{"name": "api", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
            ),
            // Within the grace period: scheduling takes a moment.
            young(pod("new", json!({"phase": "Pending"}))),
            pod(
                "fine",
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "api", "ready": true, "restartCount": 1, "state": {"running": {}}}]}),
            ),
            pod("done", json!({"phase": "Succeeded"})),
        ];
        let deployments = vec![
            json!({"metadata": {"name": "stuck", "namespace": "shop", "creationTimestamp": "2026-11-25T09:00:00Z"},
                "spec": {"replicas": 3}, "status": {"availableReplicas": 1, "unavailableReplicas": 2, "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": "ReplicaSet \"stuck-5c\" has timed out progressing.", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}}),
            json!({"metadata": {"name": "down", "namespace": "shop", "creationTimestamp": "2026-11-25T09:00:00Z"},
                "spec": {"replicas": 2}, "status": {"unavailableReplicas": 2, "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "lastTransitionTime": "2026-11-25T11:00:00Z"}]}}),
            json!({"metadata": {"name": "rolling", "namespace": "shop", "creationTimestamp": "2026-11-25T09:00:00Z"},
                "spec": {"replicas": 2}, "status": {"availableReplicas": 1, "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-11-25T11:59:30Z"}]}}),
            json!({"metadata": {"name": "idle", "namespace": "shop"}, "spec": {"replicas": 0}, "status": {}}),
            json!({"metadata": {"name": "ok", "namespace": "shop"}, "spec": {"replicas": 2}, "status": {"availableReplicas": 2}}),
        ];
        let claims = vec![
            json!({"metadata": {"name": "data", "namespace": "shop", "creationTimestamp": "2026-11-25T10:00:00Z"},
                "spec": {}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "cache", "namespace": "shop", "creationTimestamp": "2026-11-25T10:00:00Z"},
                "spec": {"storageClassName": "local"}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "gone", "namespace": "shop"}, "status": {"phase": "Lost"}}),
            json!({"metadata": {"name": "bound", "namespace": "shop"}, "status": {"phase": "Bound"}}),
        ];
        let classes = vec![
            json!({"metadata": {"name": "local"}, "volumeBindingMode": "WaitForFirstConsumer"}),
        ];
        let report = assess_health(
            Some("shop"),
            &pods,
            &deployments,
            &claims,
            &classes,
            now(),
            &HealthOptions::default(),
        );
        assert_eq!(
            rules(&report),
            vec![
                ("deployment_unavailable", "down"),
                ("deployment_stuck", "stuck"),
                ("pvc_lost", "gone"),
                ("container_cannot_start", "bad-image"),
                ("crash_loop", "crashing"),
                ("pod_pending", "unschedulable"),
                ("pvc_pending", "data"),
                ("frequent_restarts", "flapping"),
                ("pod_not_ready", "unready"),
            ],
            "{:#?}",
            report.findings
        );
        let crash = &report.findings[4];
        assert_eq!(crash.restarts, Some(7));
        assert_eq!(crash.container.as_deref(), Some("api"));
        assert_eq!(crash.owner.as_deref(), Some("ReplicaSet api-7d9f8"));
        assert_eq!(
            crash.message,
            "container api is crash-looping: 7 restarts, last exit code 1 (Error) at 2026-11-25T11:58:00Z"
        );
        assert_eq!(
            crash.next_step,
            Some(json!({"tool": "pod_facts", "input": {"namespace": "shop", "name": "crashing"}}))
        );
        assert!(report.findings[5].message.contains("3 Insufficient cpu"));
        assert_eq!(report.findings[5].severity, Severity::High);
        let stuck = report
            .findings
            .iter()
            .find(|f| f.name == "stuck")
            .expect("stuck");
        assert!(
            stuck.message.contains("1 of 3 replicas available"),
            "{}",
            stuck.message
        );
        let down = report
            .findings
            .iter()
            .find(|f| f.name == "down")
            .expect("down");
        assert_eq!(
            down.message,
            "2 replicas unavailable: 0 of 2 replicas available"
        );
        assert_eq!(report.counts.get("high"), Some(&6));
        assert_eq!(report.counts.get("medium"), Some(&3));
        assert!(!report.healthy);
        assert!(
            report
                .summary
                .starts_with("9 problems in namespace shop (6 high, 3 medium): "),
            "{}",
            report.summary
        );

        // With no grace, what was too young is reported too; restart threshold is honoured.
        let strict = assess_health(
            Some("shop"),
            &pods,
            &deployments,
            &claims,
            &[],
            now(),
            &HealthOptions {
                grace: chrono::Duration::zero(),
                restart_threshold: 20,
            },
        );
        let found = rules(&strict);
        assert!(found.contains(&("pod_pending", "new")), "{found:?}");
        assert!(
            found.contains(&("deployment_unavailable", "rolling")),
            "{found:?}"
        );
        assert!(
            found.contains(&("pvc_pending", "cache")),
            "an unknown class: {found:?}"
        );
        assert!(
            !found.contains(&("frequent_restarts", "flapping")),
            "{found:?}"
        );
    }

    #[test]
    fn an_empty_namespace_is_healthy() {
        let report = assess_health(None, &[], &[], &[], &[], now(), &HealthOptions::default());
        assert!(report.healthy);
        assert_eq!(
            report.summary,
            "No problems in every namespace (0 pods, 0 deployments, 0 claims)."
        );
    }

    #[test]
    fn the_manifest_is_read_only_and_validates_the_report() {
        let specs = scan_tool_specs();
        assert_eq!(specs.len(), 1);
        assert!(!specs[0].mutating);
        let report = assess_health(None, &[], &[], &[], &[], now(), &HealthOptions::default());
        let validator =
            jsonschema::validator_for(&specs[0].output_schema).expect("output schema compiles");
        assert!(validator.is_valid(&serde_json::to_value(report).expect("json")));
    }
}
