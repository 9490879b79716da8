//! Pod diagnosis from what `pod_facts` gathers: the pod's status, its events and its
//! containers' current and previous logs. Each known failure (OOMKilled, a missing
//! ConfigMap or Secret key, an image that cannot be pulled, a pod that cannot be
//! scheduled, failing probes, a crash loop) is recognised from the words the cluster
//! uses, with the evidence quoted and a remediation that names the change.

use crate::advice::{Confidence, Patch, PatchType, Remediation};
use crate::k8s::{self, array_at, at, i64_at, str_at};
use crate::sre::logs;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Error lines quoted from a container's previous logs.
const MAX_QUOTED_LOG_LINES: usize = 6;

/// How much headroom an OOMKilled container gets over its old limit.
const OOM_LIMIT_GROWTH: f64 = 1.5;

/// How much headroom over observed peak memory a suggested limit gets.
const OBSERVED_PEAK_HEADROOM: f64 = 1.3;

/// What is wrong with a pod.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A container was killed for using more memory than its limit.
    OomKilled,
    /// A container cannot be created: a ConfigMap, Secret or key it needs is missing.
    ContainerConfig,
    /// A volume cannot be mounted.
    MountFailure,
    /// The image cannot be pulled (bad name or tag, no access, registry unreachable).
    ImagePull,
    /// No node can take the pod.
    Unschedulable,
    /// Liveness or readiness probes fail.
    ProbeFailure,
    /// A container keeps exiting and being restarted.
    CrashLoop,
    /// Nothing is wrong.
    Healthy,
    /// The facts do not show a known failure.
    Unknown,
}

impl Cause {
    /// The name plans, evals and people use (`oom_killed`, `crash_loop`, ...).
    pub fn id(self) -> &'static str {
        match self {
            Self::OomKilled => "oom_killed",
            Self::ContainerConfig => "container_config",
            Self::MountFailure => "mount_failure",
            Self::ImagePull => "image_pull",
            Self::Unschedulable => "unschedulable",
            Self::ProbeFailure => "probe_failure",
            Self::CrashLoop => "crash_loop",
            Self::Healthy => "healthy",
            Self::Unknown => "unknown",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// What kind of problem.
    pub cause: Cause,
    /// The container it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// One sentence.
    pub summary: String,
    /// What the cluster said, quoted.
    pub evidence: Vec<String>,
    /// What to do, most useful first.
    pub remediation: Vec<Remediation>,
    /// How sure the analysis is.
    pub confidence: Confidence,
}

/// A pod's diagnosis: the most likely cause first, with anything else found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Diagnosis {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The workload that owns it (`Deployment web`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The pod's phase.
    pub phase: String,
    /// One sentence: the cause in plain words.
    pub summary: String,
    /// The most likely cause.
    pub cause: Cause,
    /// What the cluster said, quoted.
    pub evidence: Vec<String>,
    /// What to do, most useful first.
    pub remediation: Vec<Remediation>,
    /// How sure the analysis is.
    pub confidence: Confidence,
    /// Other problems found, less likely to be the root cause.
    pub other_issues: Vec<Issue>,
}

/// Everything about the pod the analysis reads once.
struct Pod<'a> {
    pod: &'a Value,
    namespace: String,
    name: String,
    owner: Option<(String, String)>,
    events: Vec<Event>,
    previous_logs: &'a Value,
    logs: &'a Value,
    metrics: Option<&'a Value>,
}

struct Event {
    reason: String,
    message: String,
    count: i64,
}

impl Event {
    fn quote(&self) -> String {
        match self.count {
            count if count > 1 => format!("event {} (x{count}): {}", self.reason, self.message),
            _ => format!("event {}: {}", self.reason, self.message),
        }
    }
}

impl<'a> Pod<'a> {
    fn read(facts: &'a Value) -> Option<Self> {
        let pod = facts.get("pod").filter(|pod| pod.is_object())?;
        let name = k8s::name(pod).to_owned();
        let events = array_at(facts, &["events"])
            .iter()
            .filter(|event| {
                str_at(event, &["involvedObject", "name"]).is_none_or(|involved| involved == name)
            })
            .map(|event| Event {
                reason: str_at(event, &["reason"]).unwrap_or("").to_owned(),
                message: str_at(event, &["message"]).unwrap_or("").trim().to_owned(),
                count: i64_at(event, &["count"]).unwrap_or(1),
            })
            .collect();
        Some(Self {
            namespace: k8s::namespace(pod).unwrap_or("default").to_owned(),
            name,
            owner: k8s::pod_owner(pod),
            pod,
            events,
            previous_logs: facts.get("previous_logs").unwrap_or(&Value::Null),
            logs: facts.get("logs").unwrap_or(&Value::Null),
            metrics: facts.get("metrics"),
        })
    }

    fn container_statuses(&self) -> impl Iterator<Item = &'a Value> {
        array_at(self.pod, &["status", "initContainerStatuses"])
            .iter()
            .chain(array_at(self.pod, &["status", "containerStatuses"]))
    }

    fn container_spec(&self, container: &str) -> Option<&'a Value> {
        array_at(self.pod, &["spec", "containers"])
            .iter()
            .chain(array_at(self.pod, &["spec", "initContainers"]))
            .find(|spec| str_at(spec, &["name"]) == Some(container))
    }

    fn events_with(&self, reasons: &[&str]) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|event| reasons.contains(&event.reason.as_str()))
            .collect()
    }

    /// The object a fix goes to: the owning workload, else the pod.
    fn target(&self) -> String {
        match &self.owner {
            Some((kind, name))
                if kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" =>
            {
                format!("apps/v1 {kind} {}/{name}", self.namespace)
            }
            _ => format!("v1 Pod {}/{}", self.namespace, self.name),
        }
    }

    /// A strategic patch of one container of the target's pod template.
    fn container_patch(&self, container: &str, fields: Value) -> Patch {
        let mut entry = json!({"name": container});
        if let (Some(entry), Some(fields)) = (entry.as_object_mut(), fields.as_object()) {
            entry.extend(fields.clone());
        }
        let spec = json!({"containers": [entry]});
        let body = match self.target().contains(" Pod ") {
            true => json!({"spec": spec}),
            false => json!({"spec": {"template": {"spec": spec}}}),
        };
        Patch {
            target: self.target(),
            patch_type: PatchType::Strategic,
            body,
        }
    }

    fn restart_step(&self) -> Option<(String, String)> {
        match &self.owner {
            Some((kind, name))
                if matches!(kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") =>
            {
                Some((kind.clone(), name.clone()))
            }
            _ => None,
        }
    }
}

/// Diagnoses a pod from `pod_facts` output: `{"pod", "events", "logs", "previous_logs"}`
/// (and optional `metrics`: `{"containers": {"NAME": {"memory_peak_bytes", "cpu_p95_millicores"}}}`).
pub fn diagnose_pod(facts: &Value) -> Diagnosis {
    let Some(pod) = Pod::read(facts) else {
        return Diagnosis {
            pod: "unknown".into(),
            owner: None,
            phase: "Unknown".into(),
            summary: "The facts hold no pod object, so there is nothing to diagnose.".into(),
            cause: Cause::Unknown,
            evidence: vec!["`pod` is missing or not an object".into()],
            remediation: vec![Remediation::advice(
                "Check the pod's name and namespace; gather its facts again with pod_facts.",
            )],
            confidence: Confidence::Low,
            other_issues: Vec::new(),
        };
    };
    let mut issues = Vec::new();
    for status in pod.container_statuses() {
        issues.extend(container_issues(&pod, status));
    }
    issues.extend(scheduling_issue(&pod));
    issues.extend(mount_issue(&pod));
    issues.extend(probe_issues(&pod));
    // A liveness kill shows as a crash loop too; the probe is the root cause then.
    let liveness_kills = issues
        .iter()
        .any(|issue| issue.cause == Cause::ProbeFailure && issue.summary.contains("liveness"));
    if liveness_kills {
        for issue in issues
            .iter_mut()
            .filter(|issue| issue.cause == Cause::CrashLoop)
        {
            issue.confidence = Confidence::Low;
        }
    }
    issues.sort_by_key(|issue| {
        let rank = match (issue.cause, liveness_kills) {
            (Cause::ProbeFailure, true) => 0,
            (cause, _) => 1 + cause as usize,
        };
        (rank, std::cmp::Reverse(issue.confidence))
    });
    let phase = str_at(pod.pod, &["status", "phase"])
        .unwrap_or("Unknown")
        .to_owned();
    let owner = pod
        .owner
        .as_ref()
        .map(|(kind, name)| format!("{kind} {name}"));
    let pod_name = format!("{}/{}", pod.namespace, pod.name);
    if issues.is_empty() {
        return healthy_or_unknown(&pod, pod_name, owner, phase);
    }
    let primary = issues.remove(0);
    Diagnosis {
        pod: pod_name,
        owner,
        phase,
        summary: primary.summary,
        cause: primary.cause,
        evidence: primary.evidence,
        remediation: primary.remediation,
        confidence: primary.confidence,
        other_issues: issues,
    }
}

fn healthy_or_unknown(
    pod: &Pod<'_>,
    pod_name: String,
    owner: Option<String>,
    phase: String,
) -> Diagnosis {
    let ready = array_at(pod.pod, &["status", "conditions"])
        .iter()
        .any(|condition| {
            str_at(condition, &["type"]) == Some("Ready")
                && str_at(condition, &["status"]) == Some("True")
        });
    let restarts: i64 = pod
        .container_statuses()
        .filter_map(|status| i64_at(status, &["restartCount"]))
        .sum();
    let mut evidence = vec![format!(
        "phase {phase}, ready: {ready}, restarts: {restarts}"
    )];
    evidence.extend(
        pod.events
            .iter()
            .filter(|event| event.reason != "Normal")
            .take(3)
            .map(Event::quote),
    );
    let (cause, summary, confidence) = match (phase.as_str(), ready) {
        ("Running", true) => (
            Cause::Healthy,
            format!("Pod {pod_name} is running and ready; nothing is failing right now."),
            Confidence::High,
        ),
        ("Succeeded", _) => (
            Cause::Healthy,
            format!("Pod {pod_name} ran to completion."),
            Confidence::High,
        ),
        _ => (
            Cause::Unknown,
            format!("Pod {pod_name} is {phase} and not ready, but its status and events name no known failure."),
            Confidence::Low,
        ),
    };
    let remediation = match cause {
        Cause::Healthy => vec![Remediation::advice(
            "Nothing to fix. If it misbehaved earlier, look at the events and previous logs from that time.",
        )],
        _ => vec![Remediation::advice(
            "Read the pod's full events and the node's condition; the failure may be outside the pod (node pressure, network).",
        )],
    };
    Diagnosis {
        pod: pod_name,
        owner,
        phase,
        summary,
        cause,
        evidence,
        remediation,
        confidence,
        other_issues: Vec::new(),
    }
}

fn container_issues(pod: &Pod<'_>, status: &Value) -> Vec<Issue> {
    let container = str_at(status, &["name"]).unwrap_or("?").to_owned();
    let waiting_reason = str_at(status, &["state", "waiting", "reason"]).unwrap_or("");
    let waiting_message = str_at(status, &["state", "waiting", "message"]).unwrap_or("");
    let terminated =
        at(status, &["lastState", "terminated"]).or_else(|| at(status, &["state", "terminated"]));
    let restarts = i64_at(status, &["restartCount"]).unwrap_or(0);
    let mut issues = Vec::new();

    let oom = terminated.and_then(|t| str_at(t, &["reason"])) == Some("OOMKilled");
    if oom {
        issues.push(oom_issue(pod, &container, restarts));
    }
    match waiting_reason {
        "CreateContainerConfigError" | "CreateContainerError" => {
            issues.push(config_issue(
                pod,
                &container,
                waiting_reason,
                waiting_message,
            ));
        }
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
            issues.push(image_issue(
                pod,
                &container,
                status,
                waiting_reason,
                waiting_message,
            ));
        }
        _ => {}
    }
    let crashed = waiting_reason == "CrashLoopBackOff"
        || waiting_reason == "RunContainerError"
        || (restarts > 0
            && terminated
                .and_then(|t| i64_at(t, &["exitCode"]))
                .is_some_and(|code| code != 0));
    if crashed && !oom {
        issues.push(crash_issue(
            pod,
            &container,
            waiting_reason,
            waiting_message,
            terminated,
            restarts,
        ));
    }
    issues
}

fn oom_issue(pod: &Pod<'_>, container: &str, restarts: i64) -> Issue {
    let resources = pod
        .container_spec(container)
        .and_then(|spec| spec.get("resources"))
        .unwrap_or(&Value::Null);
    let limit = str_at(resources, &["limits", "memory"]);
    let request = str_at(resources, &["requests", "memory"]);
    let observed_peak = pod
        .metrics
        .and_then(|metrics| at(metrics, &["containers", container, "memory_peak_bytes"]))
        .and_then(Value::as_f64);
    let mut evidence = vec![format!(
        "container {container}: last terminated with reason OOMKilled (exit code 137), {restarts} restart(s)"
    )];
    evidence.push(format!(
        "memory request {}, limit {}",
        request.unwrap_or("not set"),
        limit.unwrap_or("not set")
    ));
    let limit_bytes = limit.and_then(k8s::memory_bytes);
    let suggested = match (observed_peak, limit_bytes) {
        (Some(peak), _) => {
            evidence.push(format!("observed peak memory {}", k8s::format_memory(peak)));
            Some(peak * OBSERVED_PEAK_HEADROOM)
        }
        (None, Some(limit)) => Some(limit * OOM_LIMIT_GROWTH),
        (None, None) => None,
    };
    let mut remediation = Vec::new();
    match (suggested, limit) {
        (Some(bytes), _) => {
            let new_limit = k8s::format_memory(bytes);
            let mut resources = json!({"limits": {"memory": new_limit}});
            // A request above the new limit would be refused; one far below it invites
            // the node to overcommit, so it is raised to half the limit.
            let request_bytes = request.and_then(k8s::memory_bytes).unwrap_or(0.0);
            if request_bytes < bytes / 2.0 {
                resources["requests"] = json!({"memory": k8s::format_memory(bytes / 2.0)});
            }
            remediation.push(
                Remediation::advice(format!(
                    "Raise container {container}'s memory limit from {} to {new_limit} (then watch its peak; if it keeps growing, look for a leak instead).",
                    limit.unwrap_or("unset")
                ))
                .with_patch(pod.container_patch(container, json!({"resources": resources}))),
            );
        }
        (None, _) => remediation.push(Remediation::advice(format!(
            "Container {container} has no memory limit, so the node ran out of memory and the kernel killed it: set a memory request and limit near its real peak."
        ))),
    }
    remediation.push(Remediation::advice(
        "If the application sizes its heap itself (JVM -Xmx, Node --max-old-space-size), keep that below about 75% of the limit.",
    ));
    Issue {
        cause: Cause::OomKilled,
        container: Some(container.to_owned()),
        summary: format!(
            "Container {container} of pod {} is being killed for running out of memory (OOMKilled) at its {} limit.",
            pod.name,
            limit.unwrap_or("(unset)")
        ),
        evidence,
        remediation,
        confidence: Confidence::High,
    }
}

fn config_issue(pod: &Pod<'_>, container: &str, reason: &str, message: &str) -> Issue {
    let mut evidence = vec![format!(
        "container {container}: waiting, {reason}: {message}"
    )];
    evidence.extend(
        pod.events_with(&["Failed"])
            .iter()
            .take(2)
            .map(|e| e.quote()),
    );
    let text = format!("{message} {}", evidence.join(" "));
    let mut remediation = Vec::new();
    let missing = missing_reference(&text);
    match &missing {
        Some(Missing { kind, name, key: Some(key) }) => {
            remediation.push(
                Remediation::advice(format!(
                    "Add the key {key:?} to {kind} {name} in namespace {} (or fix the key name the container refers to).",
                    pod.namespace
                ))
                .with_step("kube_get", json!({"apiVersion": "v1", "kind": kind, "namespace": pod.namespace, "name": name}), false),
            );
        }
        Some(Missing { kind, name, key: None }) => {
            remediation.push(
                Remediation::advice(format!(
                    "Create {kind} {name} in namespace {} (deckhand's {} generator writes a template), or fix the name the pod refers to.",
                    pod.namespace,
                    if kind == "Secret" { "secret" } else { "configmap" }
                ))
                .with_step("kube_get", json!({"apiVersion": "v1", "kind": kind, "namespace": pod.namespace, "name": name}), false),
            );
        }
        None if text.contains("runAsNonRoot") => remediation.push(Remediation::advice(
            "The pod requires a non-root user but the image runs as root: set securityContext.runAsUser to the image's non-root UID, or use an image built to run as non-root.",
        )),
        None => remediation.push(Remediation::advice(
            "Read the message above: the container's configuration refers to something the cluster cannot provide.",
        )),
    }
    let what = match &missing {
        Some(Missing {
            kind,
            name,
            key: Some(key),
        }) => format!("key {key:?} is missing from {kind} {name}"),
        Some(Missing {
            kind,
            name,
            key: None,
        }) => format!("{kind} {name} does not exist"),
        None => "its configuration cannot be satisfied".to_owned(),
    };
    Issue {
        cause: Cause::ContainerConfig,
        container: Some(container.to_owned()),
        summary: format!(
            "Container {container} of pod {} cannot be created: {what}.",
            pod.name
        ),
        evidence,
        remediation,
        confidence: if missing.is_some() {
            Confidence::High
        } else {
            Confidence::Medium
        },
    }
}

struct Missing {
    kind: String,
    name: String,
    key: Option<String>,
}

/// `secret "db" not found`, `couldn't find key password in Secret shop/db`,
/// `configmap "app" not found`.
fn missing_reference(text: &str) -> Option<Missing> {
    let key_pattern =
        regex::Regex::new(r"couldn't find key (\S+) in (Secret|ConfigMap) (?:[\w.-]+/)?([\w.-]+)")
            .ok()?;
    if let Some(found) = key_pattern.captures(text) {
        return Some(Missing {
            key: Some(found[1].to_owned()),
            kind: found[2].to_owned(),
            name: found[3].to_owned(),
        });
    }
    let object_pattern =
        regex::Regex::new(r#"(?i)(secret|configmap)s? "([\w.-]+)" not found"#).ok()?;
    let found = object_pattern.captures(text)?;
    Some(Missing {
        kind: if found[1].eq_ignore_ascii_case("secret") {
            "Secret"
        } else {
            "ConfigMap"
        }
        .to_owned(),
        name: found[2].to_owned(),
        key: None,
    })
}

fn image_issue(
    pod: &Pod<'_>,
    container: &str,
    status: &Value,
    reason: &str,
    message: &str,
) -> Issue {
    let image = pod
        .container_spec(container)
        .and_then(|spec| str_at(spec, &["image"]))
        .or_else(|| str_at(status, &["image"]))
        .unwrap_or("?")
        .to_owned();
    let mut evidence = vec![format!(
        "container {container}: waiting, {reason}: {message}"
    )];
    let pull_events: Vec<&Event> = pod
        .events_with(&["Failed"])
        .into_iter()
        .filter(|event| event.message.contains("pull") || event.message.contains("image"))
        .collect();
    evidence.extend(pull_events.iter().take(2).map(|e| e.quote()));
    let text = format!(
        "{message} {}",
        pull_events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .to_lowercase();
    let target = pod.target();
    let (why, remediation, confidence) = if reason == "InvalidImageName" {
        (
            format!("the image reference {image:?} is not valid"),
            vec![Remediation::advice(format!(
                "Fix the image reference {image:?} (registry/repository:tag, lowercase)."
            ))],
            Confidence::High,
        )
    } else if text.contains("toomanyrequests") || text.contains("rate limit") {
        (
            "the registry is rate-limiting pulls".to_owned(),
            vec![Remediation::advice("Authenticate pulls (an imagePullSecret) or mirror the image to your own registry; Docker Hub limits anonymous pulls.")],
            Confidence::High,
        )
    } else if text.contains("unauthorized")
        || text.contains("authentication required")
        || text.contains("401")
        || text.contains("403")
        || text.contains("no basic auth")
        || text.contains("denied") && !text.contains("repository does not exist")
    {
        (
            format!("the node is not allowed to pull {image}"),
            vec![auth_remediation(&target, &image)],
            Confidence::High,
        )
    } else if text.contains("pull access denied") || text.contains("repository does not exist") {
        (
            format!(
                "{image} does not exist, or it is private and the pod has no credentials for it"
            ),
            vec![
                Remediation::advice(format!(
                    "Check the repository name in {image}; a typo looks exactly like this."
                )),
                auth_remediation(&target, &image),
            ],
            Confidence::Medium,
        )
    } else if text.contains("not found")
        || text.contains("manifest unknown")
        || text.contains("notfound")
    {
        (
            format!("the tag or repository of {image} does not exist in the registry"),
            vec![Remediation::advice(format!(
                "Use a tag that exists (list the repository's tags); fix the image of container {container} in {target}."
            ))],
            Confidence::High,
        )
    } else if text.contains("no such host")
        || text.contains("i/o timeout")
        || text.contains("connection refused")
        || text.contains("tls handshake")
        || text.contains("x509")
        || text.contains("deadline exceeded")
        || text.contains("network is unreachable")
    {
        (
            format!("the node cannot reach the registry of {image}"),
            vec![Remediation::advice(
                "Check the registry's host name, the node's DNS and egress (proxy, firewall), and for x509 errors the registry's certificate.",
            )],
            Confidence::High,
        )
    } else {
        (
            format!("{image} cannot be pulled"),
            vec![Remediation::advice(
                "Read the pull error in the events; check the image name, tag and credentials.",
            )],
            Confidence::Medium,
        )
    };
    Issue {
        cause: Cause::ImagePull,
        container: Some(container.to_owned()),
        summary: format!(
            "Container {container} of pod {} cannot start: {why}.",
            pod.name
        ),
        evidence,
        remediation,
        confidence,
    }
}

fn auth_remediation(target: &str, image: &str) -> Remediation {
    let body = match target.contains(" Pod ") {
        true => json!({"spec": {"imagePullSecrets": [{"name": "REGISTRY-CREDENTIALS"}]}}),
        false => {
            json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "REGISTRY-CREDENTIALS"}]}}}})
        }
    };
    Remediation::advice(format!(
        "Create a docker-registry Secret with credentials for {image}'s registry and reference it in imagePullSecrets (or in the ServiceAccount)."
    ))
    .with_patch(Patch {
        target: target.to_owned(),
        patch_type: PatchType::Merge,
        body,
    })
}

fn scheduling_issue(pod: &Pod<'_>) -> Option<Issue> {
    let condition_message = array_at(pod.pod, &["status", "conditions"])
        .iter()
        .find(|c| {
            str_at(c, &["type"]) == Some("PodScheduled") && str_at(c, &["status"]) == Some("False")
        })
        .and_then(|c| str_at(c, &["message"]));
    let events = pod.events_with(&["FailedScheduling"]);
    if condition_message.is_none() && events.is_empty() {
        return None;
    }
    let message = events
        .last()
        .map(|event| event.message.clone())
        .or(condition_message.map(str::to_owned))
        .unwrap_or_default();
    let mut evidence: Vec<String> = events.iter().rev().take(2).map(|e| e.quote()).collect();
    if evidence.is_empty() {
        evidence.push(format!("condition PodScheduled=False: {message}"));
    }
    let lower = message.to_lowercase();
    let mut reasons = Vec::new();
    let mut remediation = Vec::new();
    let requests = |resource: &str| -> String {
        let values: Vec<String> = array_at(pod.pod, &["spec", "containers"])
            .iter()
            .filter_map(|c| {
                str_at(c, &["resources", "requests", resource])
                    .map(|v| format!("{}={v}", str_at(c, &["name"]).unwrap_or("?")))
            })
            .collect();
        if values.is_empty() {
            "none".to_owned()
        } else {
            values.join(", ")
        }
    };
    for resource in ["cpu", "memory"] {
        if lower.contains(&format!("insufficient {resource}")) {
            reasons.push(format!("not enough free {resource} on any node"));
            evidence.push(format!("{resource} requests: {}", requests(resource)));
            remediation.push(Remediation::advice(format!(
                "Lower the pod's {resource} request if it asks for more than it uses, free capacity (scale down something idle), or add a node."
            )));
        }
    }
    if lower.contains("taint") {
        let taints = regex::Regex::new(r"taint \{([^}]*)\}")
            .ok()
            .map(|re| {
                re.captures_iter(&message)
                    .map(|c| c[1].to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        reasons.push(format!(
            "nodes carry taints the pod does not tolerate ({})",
            if taints.is_empty() {
                "see the event".to_owned()
            } else {
                taints.join(", ")
            }
        ));
        remediation.push(Remediation::advice(
            "Add a toleration for the taint if the pod belongs on those nodes; otherwise make room on untainted nodes.",
        ));
    }
    if lower.contains("node affinity")
        || lower.contains("node selector")
        || lower.contains("nodeselector")
    {
        let selector = at(pod.pod, &["spec", "nodeSelector"])
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(affinity rules)".into());
        reasons.push(format!(
            "no node matches the pod's node selector/affinity {selector}"
        ));
        remediation.push(Remediation::advice(format!(
            "Label a node to match {selector}, or correct the selector: a typo in a label value leaves the pod Pending forever."
        )));
    }
    if lower.contains("persistentvolumeclaim") || lower.contains("unbound") {
        let claims: Vec<&str> = array_at(pod.pod, &["spec", "volumes"])
            .iter()
            .filter_map(|v| str_at(v, &["persistentVolumeClaim", "claimName"]))
            .collect();
        reasons.push(format!(
            "its PersistentVolumeClaim is not bound ({})",
            claims.join(", ")
        ));
        let mut advice = Remediation::advice(
            "Check the claim: its StorageClass must exist and be able to provision, or a matching PersistentVolume must be free.",
        );
        if let Some(claim) = claims.first() {
            advice = advice.with_step("kube_get", json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": pod.namespace, "name": claim}), false);
        }
        remediation.push(advice);
    }
    if lower.contains("free ports") {
        reasons.push("the hostPort it asks for is taken on every node".into());
        remediation.push(Remediation::advice(
            "Drop the hostPort (use a Service) or run fewer replicas than nodes.",
        ));
    }
    if lower.contains("too many pods") {
        reasons.push("nodes are at their pod limit".into());
        remediation.push(Remediation::advice(
            "Add a node or raise the kubelet's maxPods.",
        ));
    }
    if reasons.is_empty() {
        reasons.push("the scheduler found no node for it".into());
        remediation.push(Remediation::advice(
            "Read the scheduler's message above; it lists each node's reason.",
        ));
    }
    Some(Issue {
        cause: Cause::Unschedulable,
        container: None,
        summary: format!(
            "Pod {} is Pending because {}.",
            pod.name,
            reasons.join("; and ")
        ),
        evidence,
        remediation,
        confidence: Confidence::High,
    })
}

fn mount_issue(pod: &Pod<'_>) -> Option<Issue> {
    let events = pod.events_with(&["FailedMount", "FailedAttachVolume"]);
    let event = events.last()?;
    let missing = missing_reference(&event.message);
    let mut remediation = vec![Remediation::advice(match &missing {
        Some(m) => format!("Create {} {} in namespace {}, or fix the volume that refers to it.", m.kind, m.name, pod.namespace),
        None => "Check the volume named in the event: its claim, Secret or ConfigMap must exist, and a block volume must be free to attach to this node.".to_owned(),
    })];
    if let Some(m) = &missing {
        remediation[0] = remediation[0].clone().with_step(
            "kube_get",
            json!({"apiVersion": "v1", "kind": m.kind, "namespace": pod.namespace, "name": m.name}),
            false,
        );
    }
    Some(Issue {
        cause: Cause::MountFailure,
        container: None,
        summary: format!(
            "Pod {} cannot start because a volume cannot be mounted.",
            pod.name
        ),
        evidence: events.iter().rev().take(2).map(|e| e.quote()).collect(),
        remediation,
        confidence: if missing.is_some() {
            Confidence::High
        } else {
            Confidence::Medium
        },
    })
}

fn probe_issues(pod: &Pod<'_>) -> Vec<Issue> {
    let unhealthy = pod.events_with(&["Unhealthy"]);
    let killed_for_liveness = pod
        .events_with(&["Killing"])
        .into_iter()
        .any(|event| event.message.contains("liveness probe"));
    let mut issues = Vec::new();
    for kind in ["Liveness", "Readiness", "Startup"] {
        let failures: Vec<&&Event> = unhealthy
            .iter()
            .filter(|e| e.message.starts_with(&format!("{kind} probe failed")))
            .collect();
        let Some(last) = failures.last() else {
            continue;
        };
        let total: i64 = failures.iter().map(|e| e.count.max(1)).sum();
        let container = container_in_probe_context(pod, kind);
        let probe = container
            .as_deref()
            .and_then(|c| pod.container_spec(c))
            .and_then(|spec| spec.get(format!("{}Probe", kind.to_lowercase())));
        let mut evidence = vec![last.quote(), format!("{kind} probe failures seen: {total}")];
        if let Some(probe) = probe {
            evidence.push(format!("{} probe: {}", kind.to_lowercase(), probe));
        }
        if kind == "Liveness" && killed_for_liveness {
            evidence
                .push("the kubelet restarted the container for failing its liveness probe".into());
        }
        let message = last.message.to_lowercase();
        let mut remediation = Vec::new();
        if message.contains("connection refused") {
            let container_ports: Vec<i64> = container
                .as_deref()
                .and_then(|c| pod.container_spec(c))
                .map(|spec| {
                    array_at(spec, &["ports"])
                        .iter()
                        .filter_map(|p| i64_at(p, &["containerPort"]))
                        .collect()
                })
                .unwrap_or_default();
            remediation.push(Remediation::advice(format!(
                "Nothing listens where the probe knocks: check the probe's port against the container's ports ({:?}) and that the app binds 0.0.0.0, not 127.0.0.1.",
                container_ports
            )));
        }
        if message.contains("timeout") || message.contains("deadline exceeded") {
            remediation.push(Remediation::advice(
                "The endpoint answers too slowly: raise timeoutSeconds, and keep the health endpoint free of slow dependency checks.",
            ));
        }
        if message.contains("statuscode: 5") || message.contains("status code 5") {
            remediation.push(Remediation::advice(
                "The app reports itself unhealthy (5xx): its logs say why; a liveness probe should not fail for a dependency that a restart cannot fix.",
            ));
        }
        if message.contains("statuscode: 404") {
            remediation.push(Remediation::advice(
                "The probe's path does not exist (404): fix the path.",
            ));
        }
        if kind == "Liveness" {
            if let Some(container) = &container {
                remediation.push(
                    Remediation::advice(format!(
                        "If the app is just slow to start, give container {container} a startupProbe (or a longer initialDelaySeconds) so liveness checks wait for it."
                    ))
                    .with_patch(pod.container_patch(container, json!({"startupProbe": startup_probe(probe)}))),
                );
            }
        }
        if remediation.is_empty() {
            remediation.push(Remediation::advice("Call the probe's endpoint from inside the pod and compare with the probe's settings."));
        }
        issues.push(Issue {
            cause: Cause::ProbeFailure,
            container,
            summary: format!(
                "Pod {}'s {} probe is failing{}.",
                pod.name,
                kind.to_lowercase(),
                match kind {
                    "Liveness" if killed_for_liveness =>
                        ", so the kubelet keeps restarting the container",
                    "Readiness" => ", so it gets no traffic",
                    _ => "",
                }
            ),
            evidence,
            remediation,
            confidence: if kind == "Liveness" && !killed_for_liveness {
                Confidence::Medium
            } else {
                Confidence::High
            },
        });
    }
    issues
}

/// A startup probe like the liveness probe `probe`, allowing 5 minutes to start.
fn startup_probe(probe: Option<&Value>) -> Value {
    let mut startup = probe
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    startup.remove("initialDelaySeconds");
    startup.insert("failureThreshold".into(), json!(30));
    startup.insert("periodSeconds".into(), json!(10));
    Value::Object(startup)
}

/// The container a probe failure is about: the only one that has such a probe.
fn container_in_probe_context(pod: &Pod<'_>, kind: &str) -> Option<String> {
    let field = format!("{}Probe", kind.to_lowercase());
    let containers = array_at(pod.pod, &["spec", "containers"]);
    containers
        .iter()
        .find(|c| c.get(&field).is_some())
        .or_else(|| containers.first())
        .and_then(|c| str_at(c, &["name"]))
        .map(str::to_owned)
}

fn exit_code_meaning(code: i64) -> &'static str {
    match code {
        0 => "exited normally, but a Deployment's container must keep running",
        1 => "the application failed (a general error)",
        2 => "misuse of a shell command or a bad argument",
        126 => "the command is not executable",
        127 => "the command was not found in the image",
        128 => "an invalid exit argument",
        134 => "aborted (SIGABRT), often a failed assertion",
        137 => "killed with SIGKILL (a liveness probe, an eviction or memory)",
        139 => "segmentation fault (SIGSEGV)",
        143 => "terminated with SIGTERM and did not come back",
        _ => "an application-specific failure",
    }
}

fn crash_issue(
    pod: &Pod<'_>,
    container: &str,
    reason: &str,
    message: &str,
    terminated: Option<&Value>,
    restarts: i64,
) -> Issue {
    let exit_code = terminated.and_then(|t| i64_at(t, &["exitCode"]));
    let last_reason = terminated
        .and_then(|t| str_at(t, &["reason"]))
        .unwrap_or("unknown");
    let mut evidence = vec![format!(
        "container {container}: {}, {restarts} restart(s)",
        if reason.is_empty() {
            "restarting".to_owned()
        } else {
            format!("waiting, {reason}")
        }
    )];
    if !message.is_empty() {
        evidence.push(format!("kubelet: {message}"));
    }
    if let Some(code) = exit_code {
        evidence.push(format!(
            "last termination: exit code {code} ({last_reason}): {}",
            exit_code_meaning(code)
        ));
    }
    if let Some(text) = terminated.and_then(|t| str_at(t, &["message"])) {
        evidence.push(format!("termination message: {}", text.trim()));
    }
    let log_text = pod
        .previous_logs
        .get(container)
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .or_else(|| pod.logs.get(container).and_then(Value::as_str))
        .unwrap_or("");
    let quoted = logs::error_lines(log_text, MAX_QUOTED_LOG_LINES);
    evidence.extend(quoted.iter().map(|line| format!("previous log: {line}")));
    let lower = quoted.join("\n").to_lowercase();
    let mut remediation = Vec::new();
    let mut why = String::new();
    if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("econnrefused")
        || lower.contains("could not connect")
        || lower.contains("dial tcp")
        || lower.contains("timed out")
    {
        why = "it cannot reach a service it depends on at startup".into();
        remediation.push(Remediation::advice(
            "Check that the dependency named in the log is up and its address and port are right (Service name, namespace, port); consider retrying at startup instead of exiting.",
        ));
    }
    if lower.contains("must be set")
        || lower.contains("missing required")
        || lower.contains("keyerror")
        || lower.contains("environment variable")
        || lower.contains("not set")
    {
        why = "a required setting (an environment variable or config key) is missing".into();
        remediation.push(Remediation::advice(
            "Provide the missing setting named in the log through the container's env (from a ConfigMap or Secret).",
        ));
    }
    if lower.contains("permission denied") || lower.contains("read-only file system") {
        why = "it is not allowed to write or open a file it needs".into();
        remediation.push(Remediation::advice(
            "Mount a writable emptyDir where the app writes (with readOnlyRootFilesystem), or fix the file's owner/fsGroup for the user the container runs as.",
        ));
    }
    if lower.contains("address already in use") {
        why = "its port is already taken".into();
        remediation.push(Remediation::advice(
            "Two processes bind the same port: check the container's command and sidecars.",
        ));
    }
    if lower.contains("no such file")
        || lower.contains("cannot find module")
        || lower.contains("modulenotfounderror")
        || lower.contains("executable file not found")
        || exit_code == Some(127)
    {
        if why.is_empty() {
            why = "a file, module or command it needs is not in the image".into();
        }
        remediation.push(Remediation::advice(
            "Check the image's entrypoint/command and that the file or module named in the log is in the image (or mounted).",
        ));
    }
    if exit_code == Some(0) && why.is_empty() {
        why = "its process exits successfully, but a long-running workload must not exit".into();
        remediation.push(Remediation::advice(
            "The command runs and ends: run a long-running process (not a one-off script), or use a Job for one-off work.",
        ));
    }
    remediation.push(Remediation::advice(
        "If this began with a new image or config, roll back to the previous revision while you fix it.",
    ));
    if let Some((kind, name)) = pod.restart_step() {
        remediation.push(
            Remediation::advice(format!(
                "After the fix is in, restart {kind} {name} so every pod picks it up."
            ))
            .with_step(
                "kube_restart",
                json!({"kind": kind, "namespace": pod.namespace, "name": name}),
                true,
            ),
        );
    }
    let code_text = exit_code
        .map(|c| format!(" with exit code {c}"))
        .unwrap_or_default();
    let summary = match why.is_empty() {
        true => format!("Container {container} of pod {} keeps crashing{code_text} ({last_reason}); the previous logs show the failure.", pod.name),
        false => format!("Container {container} of pod {} keeps crashing{code_text}: {why}.", pod.name),
    };
    Issue {
        cause: Cause::CrashLoop,
        container: Some(container.to_owned()),
        summary,
        evidence,
        remediation,
        confidence: if quoted.is_empty() || why.is_empty() {
            Confidence::Medium
        } else {
            Confidence::High
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod of Deployment `web` in `shop` with one container, and the status given.
    fn pod(container_status: Value, extra_spec: Value) -> Value {
        let mut container = json!({
            "name": "web", "image": "ghcr.io/acme/web:2.4.1",
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"memory": "128Mi", "cpu": "100m"}, "limits": {"memory": "256Mi", "cpu": "500m"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 5, "periodSeconds": 10}
        });
        if let (Some(c), Some(extra)) = (container.as_object_mut(), extra_spec.as_object()) {
            c.extend(extra.clone());
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-6d5f8c7b9-x2x7k", "namespace": "shop",
                "labels": {"app": "web", "pod-template-hash": "6d5f8c7b9"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d5f8c7b9", "controller": true}]},
            "spec": {"containers": [container]},
            "status": {"phase": "Running", "containerStatuses": [container_status]}
        })
    }

    fn event(reason: &str, message: &str, count: i64) -> Value {
        json!({"type": "Warning", "reason": reason, "message": message, "count": count,
            "involvedObject": {"kind": "Pod", "name": "web-6d5f8c7b9-x2x7k", "namespace": "shop"}})
    }

    #[test]
    fn crash_loop_quotes_the_exit_code_and_the_failing_log_lines() {
        let facts = json!({
            "pod": pod(json!({"name": "web", "ready": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container=web pod=web-6d5f8c7b9-x2x7k_shop"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}), json!({})),
            "events": [event("BackOff", "Back-off restarting failed container web in pod web-6d5f8c7b9-x2x7k_shop", 31)],
            "logs": {"web": ""},
            "previous_logs": {"web": "2025-03-02T10:00:00Z INFO starting web 2.4.1\n2025-03-02T10:00:01Z INFO connecting to postgres at orders-db.shop.svc:5432\n2025-03-02T10:00:31Z ERROR dial tcp 10.43.0.17:5432: connect: connection refused\n2025-03-02T10:00:31Z FATAL cannot start without a database\n"}
        });
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::CrashLoop, "{diagnosis:#?}");
        assert_eq!(diagnosis.owner.as_deref(), Some("Deployment web"));
        let evidence = diagnosis.evidence.join("\n");
        assert!(evidence.contains("exit code 1"), "{evidence}");
        assert!(evidence.contains("connection refused"), "{evidence}");
        assert!(
            !evidence.contains("INFO starting"),
            "only error lines are quoted: {evidence}"
        );
        assert!(
            diagnosis.summary.contains("cannot reach a service"),
            "{}",
            diagnosis.summary
        );
        let restart = diagnosis
            .remediation
            .iter()
            .find_map(|r| r.step.as_ref())
            .unwrap();
        assert_eq!(restart.tool, "kube_restart");
        assert_eq!(restart.input["name"], "web");
        assert!(restart.mutating);
    }

    #[test]
    fn oom_suggests_a_higher_limit_as_a_strategic_patch() {
        let facts = json!({
            "pod": pod(json!({"name": "web", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}), json!({})),
            "events": [], "logs": {}, "previous_logs": {}
        });
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::OomKilled);
        assert_eq!(diagnosis.confidence, Confidence::High);
        assert!(diagnosis
            .evidence
            .iter()
            .any(|e| e.contains("request 128Mi, limit 256Mi")));
        let patch = diagnosis.remediation[0].patch.as_ref().unwrap();
        assert_eq!(patch.target, "apps/v1 Deployment shop/web");
        assert_eq!(patch.patch_type, PatchType::Strategic);
        let container = &patch.body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["name"], "web");
        assert_eq!(container["resources"]["limits"]["memory"], "384Mi");
        assert!(
            diagnosis
                .other_issues
                .iter()
                .all(|i| i.cause != Cause::CrashLoop),
            "OOM is the crash's cause, not a second issue"
        );
    }

    #[test]
    fn oom_with_metrics_sizes_from_the_observed_peak() {
        let facts = json!({
            "pod": pod(json!({"name": "web", "restartCount": 1,
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}), json!({})),
            "metrics": {"containers": {"web": {"memory_peak_bytes": 500.0 * 1024.0 * 1024.0}}}
        });
        let diagnosis = diagnose_pod(&facts);
        let patch = diagnosis.remediation[0].patch.as_ref().unwrap();
        assert_eq!(
            patch.body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                ["memory"],
            "704Mi"
        );
    }

    #[test]
    fn image_pull_failures_are_told_apart() {
        let cases = [
            ("Failed to pull image \"ghcr.io/acme/web:2.4.10\": rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/acme/web:2.4.10\": failed to resolve reference \"ghcr.io/acme/web:2.4.10\": ghcr.io/acme/web:2.4.10: not found", "tag or repository"),
            ("Failed to pull image \"ghcr.io/acme/web:2.4.1\": failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized", "not allowed to pull"),
            ("Failed to pull image \"registry.acme.internal/web:2.4.1\": dial tcp: lookup registry.acme.internal on 10.96.0.10:53: no such host", "cannot reach the registry"),
        ];
        for (message, expected) in cases {
            let facts = json!({
                "pod": pod(json!({"name": "web", "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}), json!({})),
                "events": [event("Failed", message, 4), event("Failed", "Error: ErrImagePull", 4)]
            });
            let diagnosis = diagnose_pod(&facts);
            assert_eq!(diagnosis.cause, Cause::ImagePull);
            assert!(
                diagnosis.summary.contains(expected),
                "{expected}: {}",
                diagnosis.summary
            );
        }
    }

    #[test]
    fn pending_pods_name_each_scheduling_reason() {
        let mut facts = json!({
            "pod": pod(json!({"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}), json!({})),
            "events": [event("FailedScheduling", "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.", 12)]
        });
        facts["pod"]["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::Unschedulable);
        assert!(
            diagnosis.summary.contains("memory"),
            "{}",
            diagnosis.summary
        );
        assert!(
            diagnosis
                .summary
                .contains("node-role.kubernetes.io/control-plane"),
            "{}",
            diagnosis.summary
        );
        assert!(diagnosis
            .evidence
            .iter()
            .any(|e| e.contains("memory requests: web=128Mi")));
    }

    #[test]
    fn unbound_claims_suggest_reading_the_claim() {
        let mut facts = json!({
            "pod": pod(json!({"name": "web"}), json!({})),
            "events": [event("FailedScheduling", "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.", 3)]
        });
        facts["pod"]["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}]);
        facts["pod"]["status"] = json!({"phase": "Pending"});
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::Unschedulable);
        let step = diagnosis
            .remediation
            .iter()
            .find_map(|r| r.step.as_ref())
            .unwrap();
        assert_eq!(step.input["name"], "web-data");
        assert!(!step.mutating);
    }

    #[test]
    fn liveness_kills_outrank_the_crash_loop_they_cause() {
        let facts = json!({
            "pod": pod(json!({"name": "web", "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}), json!({})),
            "events": [
                event("Unhealthy", "Liveness probe failed: Get \"http://10.42.1.7:8080/healthz\": dial tcp 10.42.1.7:8080: connect: connection refused", 15),
                event("Killing", "Container web failed liveness probe, will be restarted", 5)
            ],
            "previous_logs": {"web": "loading 2.1 GB model into memory...\n"}
        });
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::ProbeFailure, "{diagnosis:#?}");
        assert!(diagnosis.summary.contains("liveness"));
        assert!(diagnosis.remediation.iter().any(|r| r
            .patch
            .as_ref()
            .is_some_and(|p| p.body.to_string().contains("startupProbe"))));
        assert!(diagnosis
            .other_issues
            .iter()
            .any(|i| i.cause == Cause::CrashLoop));
    }

    #[test]
    fn readiness_failures_alone_are_a_probe_failure() {
        let mut facts = json!({
            "pod": pod(json!({"name": "web", "ready": false, "restartCount": 0, "state": {"running": {}}}), json!({})),
            "events": [event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", 40)]
        });
        facts["pod"]["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::ProbeFailure);
        assert!(diagnosis.summary.contains("no traffic"));
    }

    #[test]
    fn missing_secret_keys_are_named() {
        let facts = json!({
            "pod": pod(json!({"name": "web", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "couldn't find key DB_PASSWORD in Secret shop/orders-db"}}}), json!({}))
        });
        let diagnosis = diagnose_pod(&facts);
        assert_eq!(diagnosis.cause, Cause::ContainerConfig);
        assert!(
            diagnosis
                .summary
                .contains("\"DB_PASSWORD\" is missing from Secret orders-db"),
            "{}",
            diagnosis.summary
        );
        let step = diagnosis.remediation[0].step.as_ref().unwrap();
        assert_eq!(
            step.input,
            json!({"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "orders-db"})
        );
    }

    #[test]
    fn healthy_pods_and_empty_facts_are_said_plainly() {
        let mut facts = json!({"pod": pod(json!({"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}), json!({}))});
        facts["pod"]["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(diagnose_pod(&facts).cause, Cause::Healthy);
        let empty = diagnose_pod(&json!({}));
        assert_eq!(empty.cause, Cause::Unknown);
        assert_eq!(empty.confidence, Confidence::Low);
    }
}
