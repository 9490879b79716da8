//! Alert triage from an Alertmanager webhook payload: for each alert, the three most
//! likely causes with a remediation each, chosen by rules over the alert's name and
//! labels, and the read-only steps that gather what confirms or rules them out.

use crate::advice::{Remediation, SuggestedStep};
use crate::k8s::str_at;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How many causes each alert gets.
pub const CAUSES_PER_ALERT: usize = 3;

/// One likely cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LikelyCause {
    /// The cause, in a few words.
    pub cause: String,
    /// Why it is likely for this alert, and what confirms it.
    pub why: String,
    /// What to do about it.
    pub remediation: Remediation,
}

/// One alert, triaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertTriage {
    /// The alert's name.
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The `severity` label, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// What it is about: `namespace/pod`, a node, a job.
    pub target: String,
    /// The alert's own summary or description.
    pub summary: String,
    /// The three most likely causes, most likely first.
    pub causes: Vec<LikelyCause>,
    /// Read-only steps that gather the evidence (pod facts, the workload).
    pub next_steps: Vec<SuggestedStep>,
}

/// The triage of a whole payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Triage {
    /// Firing alerts first, then resolved ones.
    pub alerts: Vec<AlertTriage>,
    /// One line.
    pub summary: String,
}

/// Triage of an Alertmanager webhook payload (`{"alerts": [...]}`), or of one alert
/// (`{"labels": ..., "annotations": ...}`).
pub fn triage_alert(payload: &Value) -> Triage {
    let alerts: Vec<&Value> = match payload.get("alerts").and_then(Value::as_array) {
        Some(alerts) => alerts.iter().collect(),
        None if payload.get("labels").is_some() => vec![payload],
        None => Vec::new(),
    };
    let mut triaged: Vec<AlertTriage> = alerts
        .into_iter()
        .map(|alert| triage_one(alert, payload))
        .collect();
    triaged.sort_by_key(|alert| alert.status != "firing");
    let firing = triaged.iter().filter(|a| a.status == "firing").count();
    let summary = match triaged.first() {
        None => "The payload holds no alerts.".to_owned(),
        Some(first) => format!(
            "{} alert(s), {firing} firing; first: {} on {}: most likely {}.",
            triaged.len(),
            first.alertname,
            first.target,
            first
                .causes
                .first()
                .map(|c| c.cause.as_str())
                .unwrap_or("unknown")
        ),
    };
    Triage {
        alerts: triaged,
        summary,
    }
}

fn label<'a>(alert: &'a Value, payload: &'a Value, key: &str) -> Option<&'a str> {
    str_at(alert, &["labels", key]).or_else(|| str_at(payload, &["commonLabels", key]))
}

fn cause(cause: &str, why: &str, remediation: Remediation) -> LikelyCause {
    LikelyCause {
        cause: cause.to_owned(),
        why: why.to_owned(),
        remediation,
    }
}

fn advice(text: &str) -> Remediation {
    Remediation::advice(text)
}

fn triage_one(alert: &Value, payload: &Value) -> AlertTriage {
    let alertname = label(alert, payload, "alertname")
        .unwrap_or("unnamed")
        .to_owned();
    let namespace = label(alert, payload, "namespace")
        .unwrap_or("default")
        .to_owned();
    let pod = label(alert, payload, "pod");
    let workload = label(alert, payload, "deployment")
        .map(|name| ("Deployment", name))
        .or_else(|| label(alert, payload, "statefulset").map(|name| ("StatefulSet", name)))
        .or_else(|| label(alert, payload, "daemonset").map(|name| ("DaemonSet", name)));
    let node = label(alert, payload, "node").or_else(|| label(alert, payload, "instance"));
    let container = label(alert, payload, "container");
    let target = match (pod, workload, node) {
        (Some(pod), _, _) => format!("pod {namespace}/{pod}"),
        (None, Some((kind, name)), _) => format!("{kind} {namespace}/{name}"),
        (None, None, Some(node)) => format!("node {node}"),
        _ => label(alert, payload, "job")
            .map(|job| format!("job {job}"))
            .unwrap_or_else(|| format!("namespace {namespace}")),
    };
    let summary = str_at(alert, &["annotations", "summary"])
        .or_else(|| str_at(alert, &["annotations", "description"]))
        .or_else(|| str_at(alert, &["annotations", "message"]))
        .unwrap_or("")
        .to_owned();
    let restart = |text: &str| match workload {
        Some((kind, name)) => advice(text).with_step(
            "kube_restart",
            json!({"kind": kind, "namespace": namespace, "name": name}),
            true,
        ),
        None => advice(text),
    };
    let container_text = container
        .map(|c| format!("container {c}"))
        .unwrap_or_else(|| "the container".into());
    let lower = alertname.to_lowercase();
    let causes: Vec<LikelyCause> = match alertname.as_str() {
        "KubePodCrashLooping" => vec![
            cause("The application exits on start (bad config, missing env or secret, failing migration)", &format!("{container_text} restarts repeatedly; the previous logs show the error it exits with"), advice("Read the previous container logs (pod_facts) and fix the error they show; roll back if it came with a new release.")),
            cause("It is OOMKilled", "a crash loop whose last termination reason is OOMKilled (exit 137) is a memory limit, not a bug", advice("If the last state says OOMKilled, raise the memory limit (diagnose_pod proposes a value).")),
            cause("A failing liveness probe restarts it", "Killing events that mention the liveness probe mean the kubelet, not the app, ends it", advice("Give slow starters a startupProbe, and keep liveness checks free of dependencies.")),
        ],
        "KubePodNotReady" | "KubeContainerWaiting" => vec![
            cause("The readiness probe fails", "a running pod that never turns Ready fails its readiness probe; Unhealthy events show how", advice("Check the probe's path and port against the app, and what the health endpoint depends on.")),
            cause("The pod cannot be scheduled (Pending)", "Pending pods are not ready; FailedScheduling events say why (resources, taints, selectors, volumes)", advice("Free or add capacity, or fix the selector, toleration or claim the scheduler names.")),
            cause("The image cannot be pulled or the container cannot be created", "ImagePullBackOff or CreateContainerConfigError keep the pod waiting", advice("Fix the image tag or pull credentials, or create the missing ConfigMap/Secret key.")),
        ],
        "KubeDeploymentReplicasMismatch" | "KubeStatefulSetReplicasMismatch" | "KubeDeploymentRolloutStuck" | "KubeDaemonSetRolloutStuck" => vec![
            cause("New pods cannot be scheduled", "the cluster lacks cpu/memory for the extra replicas, or a quota stops them", advice("Compare the pods' requests with free capacity and the namespace's ResourceQuota; add a node or lower requests.")),
            cause("New pods fail to start (crash, image, config)", "a rollout stalls when its new pods never become ready", advice("Diagnose one of the new pods; roll back the Deployment if the release is bad.")),
            cause("A PodDisruptionBudget or readiness gate holds the rollout", "maxUnavailable=0 with pods that never become ready stops progress", advice("Check the rollout's conditions and the PDB; fix the readiness problem rather than the budget.")),
        ],
        "HighErrorRate" | "High5xxRate" | "HTTP5xxErrors" | "KubeAPIErrorsHigh" | "NginxHighHttp5xxErrorRate" | "IngressHigh5xx" => vec![
            cause("A recent release introduced a bug", "an error rate that jumps right after a rollout points at the new version", restart("Compare the error onset with the last rollout; roll back if they line up.")),
            cause("A dependency (database, cache, upstream API) fails or is slow", "5xx with timeouts or connection errors in the logs come from what the service calls", advice("Read the service's error logs (compressed) for the dependency it names and check that dependency's health.")),
            cause("Pods are overloaded or being restarted", "CPU throttling, OOM kills or too few replicas turn load into errors", advice("Check restarts and CPU throttling; scale out or give the pods an HPA.")),
        ],
        "CPUThrottlingHigh" => vec![
            cause("The CPU limit is too low for the workload", &format!("{container_text} is throttled for a large share of periods: it wants more CPU than its limit"), advice("Raise the CPU limit (or drop it and keep a right-sized request); see the resource suggestions from observed usage.")),
            cause("A burst of load or a hot loop", "throttling that started suddenly matches a traffic spike or a busy-looping process", advice("Compare with request rates; profile the process if the load did not change.")),
            cause("Too many threads for the limit (JVM, Go GOMAXPROCS)", "runtimes sized for the node's cores burn the quota in parallel bursts", advice("Set GOMAXPROCS / -XX:ActiveProcessorCount to the limit's cores.")),
        ],
        "KubeMemoryOvercommit" | "KubeCPUOvercommit" | "KubeMemoryQuotaOvercommit" | "KubeCPUQuotaOvercommit" => vec![
            cause("Requests exceed what the cluster can lose a node and still hold", "the sum of requests no longer fits if one node fails", advice("Add a node, or lower requests that are far above real usage (resource suggestions)." )),
            cause("Requests are set far above real usage", "over-sized requests reserve capacity nobody uses", advice("Right-size requests from observed usage.")),
            cause("A new workload or a scale-up pushed it over", "overcommit that started recently follows a change", advice("Find the latest large scale-up or new deployment and check it was intended.")),
        ],
        "KubeNodeNotReady" | "NodeNotReady" | "KubeNodeUnreachable" => vec![
            cause("The kubelet stopped or lost the API server", "a NotReady node no longer reports its status", advice("Check the kubelet's service and logs on the node, and its network path to the API server.")),
            cause("The node is out of memory, disk or PIDs", "pressure conditions precede NotReady; the node's conditions list them", advice("Look at the node's conditions; free disk (images, logs) or memory.")),
            cause("The machine itself failed or was stopped", "a cloud instance that was stopped, preempted or crashed looks the same", advice("Check the instance in the cloud console; replace it if it does not recover. Pods move after the eviction timeout.")),
        ],
        "KubeletTooManyPods" => vec![
            cause("The node is at its pod limit", "the kubelet's maxPods caps pods per node", advice("Add nodes or raise maxPods where the CNI allows.")),
            cause("Completed or failed pods pile up", "finished Job pods count until cleaned", advice("Set ttlSecondsAfterFinished on Jobs.")),
            cause("A workload scaled far out", "a runaway HPA or a high replica count fills the node", advice("Check recent scale-ups.")),
        ],
        "KubePersistentVolumeFillingUp" | "KubePersistentVolumeErrors" => vec![
            cause("Data grows faster than expected", "the volume's usage trend reaches its size soon", advice("Expand the PVC (if its StorageClass allows) or clean up data.")),
            cause("Logs or temp files are written to the volume", "unbounded log or temp files fill data volumes", advice("Rotate logs and keep temporary files out of the data volume.")),
            cause("Retention or compaction stopped", "databases and queues stop reclaiming space when a job fails", advice("Check the application's retention/compaction jobs.")),
        ],
        "TargetDown" => vec![
            cause("The pods behind the target are down or restarting", "a scrape target is down when its pods are not running", advice("Check the pods of the job in the alert; diagnose any that are not ready.")),
            cause("A NetworkPolicy or port change blocks the scrape", "the metrics port or path changed, or a policy denies Prometheus", advice("Compare the ServiceMonitor's port and path with the pods; allow Prometheus in the NetworkPolicy.")),
            cause("The target was removed on purpose", "a scaled-down or deleted workload leaves a stale target", advice("If it was removed on purpose, clean up its ServiceMonitor; otherwise redeploy.")),
        ],
        _ if lower.contains("disk") || lower.contains("filesystem") || lower.contains("diskpressure") => vec![
            cause("Container images and logs filled the node's disk", "the kubelet's image and log directories grow until garbage collection", advice("Prune unused images, cap container log size, and check the kubelet's image GC thresholds.")),
            cause("A pod writes heavily to an emptyDir or the container layer", "writable layers and emptyDirs live on the node disk", advice("Set ephemeral-storage limits and move data to a volume.")),
            cause("The disk is too small for the node's workload", "small root disks fill with normal use", advice("Grow the node's disk or spread the workload.")),
        ],
        _ if lower.contains("memory") || lower.contains("oom") => vec![
            cause("A container outgrew its memory limit", "memory alerts usually precede OOM kills", advice("Compare usage with limits; raise limits that are too tight.")),
            cause("A memory leak", "usage that only grows between restarts is a leak", advice("Profile the process; restart as a stopgap.")),
            cause("Too many pods on the node", "node memory pressure evicts pods", advice("Spread pods or add capacity.")),
        ],
        _ => vec![
            cause("A recent change", "most alerts follow a deploy, a config change or a scale event", advice("Compare the alert's start time with recent changes to the target.")),
            cause("The target is overloaded or out of a resource", "saturation shows as latency, errors and restarts", advice("Check the target's CPU, memory, restarts and logs.")),
            cause("A dependency failed", "failures often start downstream", advice("Check what the target calls.")),
        ],
    };
    let mut next_steps = Vec::new();
    if let Some(pod) = pod {
        next_steps.push(SuggestedStep {
            tool: "pod_facts".into(),
            input: json!({"namespace": namespace, "name": pod}),
            mutating: false,
        });
    } else if let Some((kind, name)) = workload {
        next_steps.push(SuggestedStep {
            tool: "pod_facts".into(),
            input: json!({"namespace": namespace, "name": name}),
            mutating: false,
        });
        next_steps.push(SuggestedStep {
            tool: "kube_get".into(),
            input: json!({"apiVersion": "apps/v1", "kind": kind, "namespace": namespace, "name": name}),
            mutating: false,
        });
    } else if let (Some(node), true) = (node, lower.contains("node")) {
        next_steps.push(SuggestedStep {
            tool: "kube_get".into(),
            input: json!({"apiVersion": "v1", "kind": "Node", "name": node}),
            mutating: false,
        });
    }
    AlertTriage {
        alertname,
        status: str_at(alert, &["status"])
            .or_else(|| str_at(payload, &["status"]))
            .unwrap_or("firing")
            .to_owned(),
        severity: label(alert, payload, "severity").map(str::to_owned),
        target,
        summary,
        causes: causes.into_iter().take(CAUSES_PER_ALERT).collect(),
        next_steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(alerts: Value) -> Value {
        json!({"version": "4", "status": "firing", "receiver": "deckhand", "groupKey": "{}:{alertname=\"x\"}",
            "commonLabels": {"cluster": "prod-eu"}, "externalURL": "http://alertmanager:9093", "alerts": alerts})
    }

    #[test]
    fn crash_looping_pods_get_three_causes_and_a_facts_step() {
        let triage = triage_alert(&payload(json!([{
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9f-abcde", "container": "checkout", "severity": "warning"},
            "annotations": {"description": "Pod shop/checkout-7d9f-abcde (checkout) is in waiting state (reason: \"CrashLoopBackOff\")."},
            "startsAt": "2025-03-02T10:00:00Z"
        }])));
        let alert = &triage.alerts[0];
        assert_eq!(alert.causes.len(), CAUSES_PER_ALERT);
        assert_eq!(alert.target, "pod shop/checkout-7d9f-abcde");
        assert_eq!(alert.next_steps[0].tool, "pod_facts");
        assert!(alert.causes[1].cause.contains("OOMKilled"));
        assert!(triage.summary.contains("KubePodCrashLooping"));
    }

    #[test]
    fn every_rule_and_unknown_alerts_give_three_causes_firing_first() {
        let names = [
            "KubePodNotReady",
            "KubeDeploymentReplicasMismatch",
            "HighErrorRate",
            "CPUThrottlingHigh",
            "KubeMemoryOvercommit",
            "KubeNodeNotReady",
            "NodeFilesystemSpaceFillingUp",
            "TargetDown",
            "SomethingNobodyWrote",
        ];
        let alerts: Vec<Value> = names.iter().enumerate().map(|(i, name)| json!({
            "status": if i == 0 { "resolved" } else { "firing" },
            "labels": {"alertname": name, "namespace": "shop", "deployment": "web", "node": "worker-2"}
        })).collect();
        let triage = triage_alert(&payload(Value::Array(alerts)));
        assert_eq!(triage.alerts.len(), names.len());
        assert!(triage.alerts.iter().all(|a| a.causes.len() == 3));
        assert_eq!(triage.alerts.last().unwrap().status, "resolved");
        let errors = triage
            .alerts
            .iter()
            .find(|a| a.alertname == "HighErrorRate")
            .unwrap();
        assert_eq!(
            errors.causes[0].remediation.step.as_ref().unwrap().tool,
            "kube_restart"
        );
        assert!(triage_alert(&json!({})).alerts.is_empty());
    }
}
