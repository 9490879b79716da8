//! The health scan against a real kube-apiserver (v1.20, controller manager, no kubelet):
//! pods whose status is written through the status subresource as a kubelet would
//! (crash loop, not ready, unschedulable), Deployments the real controller judges
//! (past their progress deadline, short of replicas), an unbound claim; every read judged
//! and audited, nothing written.

use deckhand_policy::Engine;
use deckhand_testkit::KubeApiServer;
use deckhand_tools::cluster::{register_cluster_tools, HealthOptions, MemoryAudit, Stage};
use deckhand_tools::{ClusterGate, Error, ToolContext, ToolRegistry};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to wait for the API server or the controller manager to get somewhere (a
/// hang, not a timing check).
const PATIENCE: Duration = Duration::from_secs(120);

/// A user policy: nobody lists claims in `vault`.
const NO_VAULT_CLAIMS: &str = r#"
package vault.claims
import rego.v1

deny contains "claims in vault are not for agents" if {
	input.review.verb == "list"
	input.review.kind.kind == "PersistentVolumeClaim"
	input.review.namespace == "vault"
}
"#;

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
}

/// Creates a bare pod (retrying while the namespace's default ServiceAccount is made),
/// then writes `status` as a kubelet would.
async fn pod_with_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: Option<Value>,
) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": format!("registry.local/{name}:1.0")}]}
    }))
    .expect("pod");
    let deadline = Instant::now() + PATIENCE;
    while let Err(error) = pods.create(&PostParams::default(), &pod).await {
        assert!(Instant::now() < deadline, "pod {name}: {error}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(status) = status {
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("pod status");
    }
}

fn an_hour_ago() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn crash_loop_status(image: &str, restarts: u32) -> Value {
    json!({"phase": "Running",
    "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": an_hour_ago()}],
    "containerStatuses": [{
        "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container=app"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
            "startedAt": an_hour_ago(), "finishedAt": an_hour_ago()}}
    }]})
}

fn deployment(name: &str, replicas: i32, progress_deadline: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("registry.local/{name}:2.0")}]}}
        }
    }))
    .expect("deployment")
}

/// Waits until the controller manager has written what `done` looks for.
async fn until_deployment(client: &kube::Client, name: &str, done: impl Fn(&Value) -> bool) {
    let api = Api::<Deployment>::namespaced(client.clone(), "shop");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let current = serde_json::to_value(api.get(name).await.expect("deployment")).expect("json");
        if done(&current) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never got {name} there: {}",
            current["status"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn has_condition(deployment: &Value, kind: &str, status: &str, reason: &str) -> bool {
    deployment["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == status && c["reason"] == reason)
        })
}

fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has(found: &[(String, String)], rule: &str, name: &str) -> bool {
    found.iter().any(|(r, n)| r == rule && n == name)
}

#[tokio::test]
async fn the_health_scan_finds_what_needs_a_person_and_changes_nothing() {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let client = cluster.client().await.expect("client");
    for name in ["shop", "other", "vault"] {
        create_namespace(&client, name).await;
    }

    // Pods, their status written as a kubelet would.
    pod_with_status(
        &client,
        "shop",
        "api",
        Some(crash_loop_status("registry.local/api:1.0", 7)),
    )
    .await;
    pod_with_status(&client, "shop", "web", Some(json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": an_hour_ago(),
            "reason": "ContainersNotReady", "message": "containers with unready status: [app]"}],
        "containerStatuses": [{"name": "app", "image": "registry.local/web:1.0", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"running": {"startedAt": an_hour_ago()}}}]}))).await;
    pod_with_status(&client, "shop", "batch", Some(json!({"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory.", "lastTransitionTime": an_hour_ago()}]}))).await;
    pod_with_status(&client, "shop", "healthy", Some(json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": an_hour_ago()}],
        "containerStatuses": [{"name": "app", "image": "registry.local/healthy:1.0", "imageID": "",
            "ready": true, "restartCount": 1, "state": {"running": {"startedAt": an_hour_ago()}}}]}))).await;
    // Just created: Pending for seconds, within the grace period.
    pod_with_status(&client, "shop", "fresh", None).await;
    pod_with_status(
        &client,
        "other",
        "elsewhere",
        Some(crash_loop_status("registry.local/elsewhere:1.0", 3)),
    )
    .await;

    // Deployments judged by the real controller: their pods never run (no kubelet).
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");
    deployments
        .create(&PostParams::default(), &deployment("checkout", 2, 1))
        .await
        .expect("checkout");
    deployments
        .create(&PostParams::default(), &deployment("cart", 2, 600))
        .await
        .expect("cart");
    until_deployment(&client, "checkout", |d| {
        has_condition(d, "Progressing", "False", "ProgressDeadlineExceeded")
    })
    .await;
    until_deployment(&client, "cart", |d| {
        has_condition(d, "Available", "False", "MinimumReplicasUnavailable")
    })
    .await;

    // A claim nothing can bind (no PersistentVolume, no default StorageClass).
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("claim");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &claim)
        .await
        .expect("claim");

    let engine = Engine::builder()
        .policy_text("no_vault_claims.rego", NO_VAULT_CLAIMS)
        .build()
        .expect("policies load");
    let audit = Arc::new(MemoryAudit::default());
    let gate = ClusterGate::new(client.clone(), engine).with_audit(audit.clone());
    let mut registry = ToolRegistry::new();
    register_cluster_tools(&mut registry, &gate).expect("registered");
    let tool = registry.get("health_scan").expect("health_scan registered");
    assert!(!tool.spec().mutating);
    let context = ToolContext {
        requested_by: "heartbeat:nightly-health".into(),
        ..ToolContext::default()
    };
    let before = serde_json::to_value(
        Api::<Pod>::namespaced(client.clone(), "shop")
            .list(&Default::default())
            .await
            .expect("pods"),
    )
    .expect("json");

    // Through the registry, as a plan calls it: input and output checked by the schemas.
    let report = registry
        .call("health_scan", &context, &json!({"namespace": "shop"}))
        .await
        .expect("scan");
    let found = findings(&report);
    for (rule, name) in [
        ("crash_loop", "api"),
        ("pod_not_ready", "web"),
        ("pod_pending", "batch"),
        ("deployment_stuck", "checkout"),
    ] {
        assert!(has(&found, rule, name), "{rule} {name} in {found:?}");
    }
    for quiet in ["healthy", "fresh", "cart", "data", "elsewhere"] {
        assert!(
            !found.iter().any(|(_, name)| name == quiet),
            "{quiet} is fine or too young: {found:?}"
        );
    }
    let crash = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["name"] == "api")
        .expect("api");
    assert_eq!(crash["restarts"], 7);
    assert_eq!(crash["container"], "app");
    assert_eq!(crash["severity"], "high");
    assert_eq!(crash["object"], "v1 Pod shop/api");
    assert!(
        crash["message"]
            .as_str()
            .is_some_and(|m| m.contains("7 restarts, last exit code 1 (Error)")),
        "{crash}"
    );
    assert_eq!(
        crash["next_step"],
        json!({"tool": "pod_facts", "input": {"namespace": "shop", "name": "api"}})
    );
    let stuck = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["name"] == "checkout")
        .expect("checkout");
    assert!(
        stuck["message"]
            .as_str()
            .is_some_and(|m| m.contains("0 of 2 replicas available")),
        "{stuck}"
    );
    assert_eq!(report["healthy"], false);
    assert_eq!(report["scanned"]["deployments"], 2);
    assert_eq!(report["scanned"]["persistent_volume_claims"], 1);

    // With no grace, the states that usually pass are reported too.
    let strict = registry
        .call(
            "health_scan",
            &context,
            &json!({"namespace": "shop", "graceSeconds": 0}),
        )
        .await
        .expect("strict scan");
    let found = findings(&strict);
    for (rule, name) in [
        ("pod_pending", "fresh"),
        ("deployment_unavailable", "cart"),
        ("pvc_pending", "data"),
    ] {
        assert!(has(&found, rule, name), "{rule} {name} in {found:?}");
    }
    let claim = strict["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["name"] == "data")
        .expect("data");
    assert!(
        claim["message"]
            .as_str()
            .is_some_and(|m| m.contains("no storage class")),
        "{claim}"
    );

    // Every namespace: the crash loop in `other` too.
    let everywhere = gate
        .health_scan(None, &HealthOptions::default(), "heartbeat:nightly-health")
        .await
        .expect("cluster-wide scan");
    assert!(everywhere
        .findings
        .iter()
        .any(|f| f.name == "elsewhere" && f.namespace == "other"));
    assert!(everywhere
        .findings
        .iter()
        .any(|f| f.name == "api" && f.namespace == "shop"));
    assert!(
        everywhere.summary.contains("every namespace"),
        "{}",
        everywhere.summary
    );

    // The policies judge the scan's reads like any other.
    let refused = registry
        .call("health_scan", &context, &json!({"namespace": "vault"}))
        .await
        .expect_err("claims in vault are off limits");
    assert!(
        refused
            .to_string()
            .contains("claims in vault are not for agents"),
        "{refused}"
    );
    assert!(matches!(
        gate.health_scan(Some("vault"), &HealthOptions::default(), "someone")
            .await,
        Err(Error::PolicyDenied { .. })
    ));
    let typo = registry
        .call("health_scan", &context, &json!({"namespaces": "shop"}))
        .await
        .expect_err("unknown field");
    assert!(typo.is_usage_error(), "{typo}");

    // Read-only: only reads were judged, nothing was written, the pods are as they were.
    let records = audit.records();
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r.stage == Stage::Read && r.verb == "list"),
        "{records:#?}"
    );
    assert!(records
        .iter()
        .all(|r| r.requested_by == "heartbeat:nightly-health" || r.requested_by == "someone"));
    let after = serde_json::to_value(
        Api::<Pod>::namespaced(client.clone(), "shop")
            .list(&Default::default())
            .await
            .expect("pods"),
    )
    .expect("json");
    let versions = |list: &Value| -> Vec<(String, String)> {
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|pod| pod["metadata"]["labels"]["pod-template-hash"].is_null())
                    .map(|pod| {
                        (
                            pod["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            pod["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        versions(&before),
        versions(&after),
        "the scan wrote nothing"
    );
}
