//! The cluster gate against a real kube-apiserver: both policy checkpoints around the
//! server-side dry run, nothing written before approval, the write after it, reads judged
//! too, and every step audited.

use deckhand_policy::Engine;
use deckhand_testkit::KubeApiServer;
use deckhand_tools::cluster::{ListQuery, MemoryAudit, PatchType, Stage};
use deckhand_tools::{Approval, ClusterChange, ClusterGate, Error, ObjectRef};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;

/// A user policy that only the dry-run checkpoint can catch when the manifest leaves
/// `imagePullPolicy` out: the API server defaults it to `Always` for untagged images.
const PULL_POLICY: &str = r#"
package shop.pull_policy
import rego.v1

deny contains sprintf("container %s pulls its image on every start (imagePullPolicy Always)", [c.name]) if {
	input.review.object.kind == "Deployment"
	some c in input.review.object.spec.template.spec.containers
	c.imagePullPolicy == "Always"
}
"#;

/// A user policy on reads: agents may not read Secrets.
const NO_SECRET_READS: &str = r#"
package shop.no_secret_reads
import rego.v1

deny contains "agents may not read Secrets" if {
	input.review.verb in {"get", "list", "watch"}
	input.review.kind.kind == "Secret"
}
"#;

const ALICE: &str = "alice@example.com";

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    })
}

fn web_ref() -> ObjectRef {
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("shop".into()),
        name: "web".into(),
    }
}

fn approval() -> Approval {
    Approval::by("bob@example.com")
}

fn denied_by(error: &Error, checkpoint: &str, policy: &str) -> bool {
    match error {
        Error::PolicyDenied {
            checkpoint: at,
            violations,
            ..
        } => *at == checkpoint && violations.iter().any(|v| v.policy == policy),
        _ => false,
    }
}

async fn setup() -> (KubeApiServer, kube::Client, ClusterGate, Arc<MemoryAudit>) {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let client = cluster.client().await.expect("client");
    for name in ["shop", "prod"] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let engine = Engine::builder()
        .policy_text("pull_policy.rego", PULL_POLICY)
        .policy_text("no_secret_reads.rego", NO_SECRET_READS)
        .build()
        .expect("policies load");
    let audit = Arc::new(MemoryAudit::default());
    let gate = ClusterGate::new(client.clone(), engine).with_audit(audit.clone());
    (cluster, client, gate, audit)
}

#[tokio::test]
async fn writes_pass_both_checkpoints_and_wait_for_approval() {
    let (_cluster, client, gate, audit) = setup().await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");

    // Prepared: judged twice around a real dry run, nothing written yet.
    let prepared = gate
        .prepare(
            ClusterChange::Apply {
                object: deployment("web", "registry.local/web:1.0"),
            },
            ALICE,
        )
        .await
        .expect("web is allowed");
    assert!(prepared.current.is_none());
    assert_eq!(
        prepared.dry_run["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent",
        "the dry run carries the API server's defaults: {}",
        prepared.dry_run
    );
    assert_eq!(
        prepared.dry_run["spec"]["strategy"]["type"],
        "RollingUpdate"
    );
    assert!(
        deployments.get_opt("web").await.expect("read").is_none(),
        "nothing is written before approval"
    );
    let stages: Vec<(Stage, bool)> = audit
        .records()
        .iter()
        .map(|r| (r.stage, r.allowed))
        .collect();
    assert_eq!(
        stages,
        vec![(Stage::Requested, true), (Stage::DryRun, true)]
    );

    // Approved: written, and the write is audited with who approved it.
    let written = gate.execute(&prepared, &approval()).await.expect("written");
    assert_eq!(written["metadata"]["name"], "web");
    assert!(deployments.get_opt("web").await.expect("read").is_some());
    let last = audit.records().last().cloned().expect("records");
    assert_eq!(last.stage, Stage::Write);
    assert!(last.allowed);
    assert_eq!(last.approved_by.as_deref(), Some("bob@example.com"));
    assert_eq!(last.requested_by, ALICE);
    // The deployment controller annotates a new Deployment (its revision) a moment later;
    // a change prepared before that is rightly refused as changed since approval, so let
    // the controller settle first.
    let settled = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let web = deployments.get("web").await.expect("web");
        if web.metadata.annotations.is_some_and(|annotations| {
            annotations.contains_key("deployment.kubernetes.io/revision")
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < settled,
            "the deployment controller never annotated web"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Only the server's defaulting reveals `imagePullPolicy: Always` (an untagged image):
    // the request passes, the dry-run checkpoint denies, nothing is created.
    let error = gate
        .prepare(
            ClusterChange::Apply {
                object: deployment("cache", "redis"),
            },
            ALICE,
        )
        .await
        .expect_err("denied on the dry-run result");
    assert!(denied_by(&error, "dry_run", "shop.pull_policy"), "{error}");
    assert!(deployments.get_opt("cache").await.expect("read").is_none());

    // A patch is judged as applied to the live object: setting Always is caught at once.
    let error = gate
        .prepare(
            ClusterChange::Patch {
                target: web_ref(),
                patch_type: PatchType::Strategic,
                patch: json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "imagePullPolicy": "Always"}
                ]}}}}),
            },
            ALICE,
        )
        .await
        .expect_err("denied as asked");
    assert!(
        denied_by(&error, "requested", "shop.pull_policy"),
        "{error}"
    );

    // A JSON patch goes through and lands.
    let prepared = gate
        .prepare(
            ClusterChange::Patch {
                target: web_ref(),
                patch_type: PatchType::Json,
                patch: json!([{"op": "add", "path": "/metadata/labels/tier", "value": "frontend"}]),
            },
            ALICE,
        )
        .await
        .expect("label patch allowed");
    gate.execute(&prepared, &approval()).await.expect("patched");
    let web = deployments.get("web").await.expect("web");
    assert_eq!(
        web.metadata
            .labels
            .unwrap_or_default()
            .get("tier")
            .map(String::as_str),
        Some("frontend")
    );

    // Scale through the scale subresource.
    let prepared = gate
        .prepare(
            ClusterChange::Scale {
                target: web_ref(),
                replicas: 5,
            },
            ALICE,
        )
        .await
        .expect("scale allowed");
    assert_eq!(prepared.dry_run["spec"]["replicas"], 5);
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("web")
            .spec
            .and_then(|s| s.replicas),
        Some(1),
        "a dry-run scale changes nothing"
    );
    gate.execute(&prepared, &approval()).await.expect("scaled");
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("web")
            .spec
            .and_then(|s| s.replicas),
        Some(5)
    );

    // Approved, but the cluster changed before the write: refused, nothing written.
    let prepared = gate
        .prepare(
            ClusterChange::Apply {
                object: deployment("web", "registry.local/web:2.0"),
            },
            ALICE,
        )
        .await
        .expect("update allowed");
    assert!(prepared.current.is_some());
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .expect("someone else scales");
    let error = gate
        .execute(&prepared, &approval())
        .await
        .expect_err("changed since approval");
    match &error {
        Error::ChangedSinceApproval { difference, .. } => {
            assert_eq!(difference, "/spec/replicas", "{error}")
        }
        other => panic!("expected ChangedSinceApproval, got {other}"),
    }
    let image = deployments
        .get("web")
        .await
        .expect("web")
        .spec
        .and_then(|s| s.template.spec)
        .map(|pod| pod.containers[0].image.clone());
    assert_eq!(image, Some(Some("registry.local/web:1.0".into())));

    // A delete: the dry run deletes nothing; the approved delete does.
    let prepared = gate
        .prepare(ClusterChange::Delete { target: web_ref() }, ALICE)
        .await
        .expect("delete allowed");
    assert!(deployments.get_opt("web").await.expect("read").is_some());
    gate.execute(&prepared, &approval()).await.expect("deleted");
    let gone = deployments.get_opt("web").await.expect("read");
    assert!(
        gone.is_none() || gone.and_then(|d| d.metadata.deletion_timestamp).is_some(),
        "web is deleted or being deleted"
    );
}

#[tokio::test]
async fn the_builtin_guards_hold_at_the_gate_and_reads_are_judged() {
    let (_cluster, client, gate, audit) = setup().await;

    // No Namespace deletion: refused before anything is sent.
    let error = gate
        .prepare(
            ClusterChange::Delete {
                target: ObjectRef {
                    api_version: "v1".into(),
                    kind: "Namespace".into(),
                    namespace: None,
                    name: "prod".into(),
                },
            },
            ALICE,
        )
        .await
        .expect_err("namespace deletion");
    assert!(
        denied_by(&error, "requested", "builtin/no-namespace-deletion"),
        "{error}"
    );
    assert!(Api::<Namespace>::all(client.clone())
        .get_opt("prod")
        .await
        .expect("read")
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()));

    // No writes in kube-system, whichever way the namespace is given.
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "coredns-override", "namespace": "kube-system"},
        "data": {"a": "b"}
    });
    let error = gate
        .prepare(ClusterChange::Create { object: config_map }, ALICE)
        .await
        .expect_err("kube-system write");
    assert!(
        denied_by(&error, "requested", "builtin/protected-namespaces"),
        "{error}"
    );
    assert!(Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .get_opt("coredns-override")
        .await
        .expect("read")
        .is_none());

    // No cluster-admin grants.
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "devs-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]
    });
    let error = gate
        .prepare(ClusterChange::Apply { object: binding }, ALICE)
        .await
        .expect_err("cluster-admin grant");
    assert!(
        denied_by(&error, "requested", "builtin/no-cluster-admin"),
        "{error}"
    );

    // Malformed changes get clear errors, not a request.
    let namespaced_namespace = json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "shop"}
    });
    let error = gate
        .prepare(
            ClusterChange::Apply {
                object: namespaced_namespace,
            },
            ALICE,
        )
        .await
        .expect_err("cluster-scoped with a namespace");
    assert!(matches!(error, Error::InvalidChange { .. }), "{error}");
    assert!(error.to_string().contains("cluster-scoped"), "{error}");
    let error = gate
        .prepare(
            ClusterChange::Scale {
                target: ObjectRef {
                    name: "missing".into(),
                    ..web_ref()
                },
                replicas: 2,
            },
            ALICE,
        )
        .await
        .expect_err("missing target");
    assert!(error.to_string().contains("does not exist"), "{error}");
    let error = gate
        .get(
            &ObjectRef {
                kind: "deployment".into(),
                ..web_ref()
            },
            ALICE,
        )
        .await
        .expect_err("kinds are spelled as in manifests");
    assert!(matches!(error, Error::Cluster { .. }), "{error}");

    // Reads go through the policies too.
    let secret = ObjectRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some("shop".into()),
        name: "db".into(),
    };
    let error = gate.get(&secret, ALICE).await.expect_err("secret read");
    assert!(
        denied_by(&error, "requested", "shop.no_secret_reads"),
        "{error}"
    );
    let secrets = ListQuery {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some("shop".into()),
        ..ListQuery::default()
    };
    let error = gate.list(&secrets, ALICE).await.expect_err("secret list");
    assert!(
        denied_by(&error, "requested", "shop.no_secret_reads"),
        "{error}"
    );
    let all_namespaces = ListQuery {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        ..ListQuery::default()
    };
    let namespaces = gate
        .list(&all_namespaces, ALICE)
        .await
        .expect("namespaces listed")
        .items;
    assert!(namespaces.iter().any(|ns| ns["metadata"]["name"] == "shop"));
    assert!(gate
        .get(
            &ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("shop".into()),
                name: "nothing".into(),
            },
            ALICE,
        )
        .await
        .expect("allowed read")
        .is_none());

    // Every decision was audited and counted.
    let records = audit.records();
    let denied_reads = records
        .iter()
        .filter(|r| r.stage == Stage::Read && !r.allowed)
        .count();
    assert_eq!(denied_reads, 2, "{records:#?}");
    assert!(records.iter().all(|r| r.requested_by == ALICE));
    let metrics = gate.policy().metrics();
    assert!(metrics.denied >= 5, "{metrics:?}");
    assert!(metrics
        .denials_by_policy
        .contains_key("builtin/no-namespace-deletion"));
}

#[tokio::test]
async fn the_cluster_tools_go_through_the_gate() {
    use deckhand_tools::cluster::register_cluster_tools;
    use deckhand_tools::{ToolContext, ToolRegistry};
    use k8s_openapi::api::core::v1::{Event, Pod};

    let (_cluster, client, gate, audit) = setup().await;
    let mut registry = ToolRegistry::new();
    register_cluster_tools(&mut registry, &gate).expect("registered");
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::create_dir(workspace.path().join("k8s")).expect("dir");
    std::fs::write(
        workspace.path().join("k8s/app.yaml"),
        serde_yaml_ng::to_string(&deployment("api", "registry.local/api:2.1")).expect("yaml")
            + "---\n"
            + "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  selector: {app: api}\n  ports: [{port: 80, protocol: TCP}]\n",
    )
    .expect("manifest file");
    let unapproved = ToolContext {
        workspace: workspace.path().to_owned(),
        requested_by: ALICE.into(),
        approved_by: None,
        thread_id: None,
        acting_as: None,
    };
    let approved = ToolContext {
        approved_by: Some("bob@example.com".into()),
        ..unapproved.clone()
    };

    // Dry run from a workspace file: both objects judged and dry-run, nothing created.
    let output = registry
        .call(
            "kube_dry_run",
            &unapproved,
            &json!({"file": "k8s/app.yaml"}),
        )
        .await
        .expect("dry run");
    let results = output["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{output}");
    assert_eq!(results[0]["operation"], "create");
    assert_eq!(
        results[1]["dry_run"]["spec"]["type"], "ClusterIP",
        "server defaults"
    );
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");
    assert!(deployments.get_opt("api").await.expect("read").is_none());

    // The write needs an approval.
    let error = registry
        .call("kube_apply", &unapproved, &json!({"file": "k8s/app.yaml"}))
        .await
        .expect_err("no approval");
    assert!(error.to_string().contains("approval"), "{error}");
    let output = registry
        .call("kube_apply", &approved, &json!({"file": "k8s/app.yaml"}))
        .await
        .expect("applied");
    assert_eq!(output["applied"].as_array().map(Vec::len), Some(2));
    assert!(deployments.get_opt("api").await.expect("read").is_some());

    registry
        .call(
            "kube_scale",
            &approved,
            &json!({"kind": "Deployment", "namespace": "shop", "name": "api", "replicas": 3}),
        )
        .await
        .expect("scaled");
    let api = deployments.get("api").await.expect("api");
    assert_eq!(api.spec.and_then(|s| s.replicas), Some(3));
    registry
        .call(
            "kube_restart",
            &approved,
            &json!({"kind": "Deployment", "namespace": "shop", "name": "api"}),
        )
        .await
        .expect("restarted");
    let api = deployments.get("api").await.expect("api");
    let annotations = api
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));

    // A pod in CrashLoopBackOff (status written as a kubelet would) and its events.
    let pods = Api::<Pod>::namespaced(client.clone(), "shop");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "checkout-7d9f-abcde", "namespace": "shop", "labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "checkout", "image": "registry.local/checkout:3.2"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    pods.patch_status(
        "checkout-7d9f-abcde",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "containerStatuses": [{
            "name": "checkout", "image": "registry.local/checkout:3.2", "imageID": "", "ready": false,
            "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }]}})),
    )
    .await
    .expect("status");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "checkout-7d9f-abcde.backoff", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "checkout-7d9f-abcde", "namespace": "shop"},
        "reason": "BackOff", "type": "Warning", "count": 31,
        "message": "Back-off restarting failed container checkout"
    }))
    .expect("event");
    Api::<Event>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &event)
        .await
        .expect("event");
    // By workload name (no such pod, no Deployment: found by its app label).
    let facts = registry
        .call(
            "pod_facts",
            &unapproved,
            &json!({"namespace": "shop", "name": "checkout"}),
        )
        .await
        .expect("facts");
    assert_eq!(facts["pod"]["metadata"]["name"], "checkout-7d9f-abcde");
    assert_eq!(
        facts["pod"]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    assert_eq!(facts["events"][0]["reason"], "BackOff");
    // Each container's log is there, or the facts say why not (no kubelet runs here).
    assert!(
        facts["logs"].get("checkout").is_some()
            || !facts["logs_unavailable"]
                .as_array()
                .expect("list")
                .is_empty(),
        "{facts}"
    );

    // The guards hold through the tools too.
    let error = registry
        .call(
            "kube_delete",
            &approved,
            &json!({"apiVersion": "v1", "kind": "Namespace", "name": "shop"}),
        )
        .await
        .expect_err("namespace deletion");
    assert_eq!(error.kind(), "policy_denied", "{error}");
    assert!(audit
        .records()
        .iter()
        .any(|r| r.stage == Stage::Write && r.approved_by.as_deref() == Some("bob@example.com")));
}
