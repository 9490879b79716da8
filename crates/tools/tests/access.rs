//! Acting as the person on a real API server (RBAC on): deckhand impersonates Alice, so
//! her own RoleBinding decides what she can do; access reviews say up front which
//! permission a step lacks; refusals raise alerts (here also as Kubernetes Events).
#![allow(clippy::unwrap_used)]

use deckhand_policy::Engine;
use deckhand_testkit::KubeApiServer;
use deckhand_tools::cluster::{Alert, AlertSink, EventAlerts, Person};
use deckhand_tools::{ClusterChange, ClusterGate, Error, ObjectRef};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, ObjectReference};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::sync::{Arc, Mutex};

const ALICE: &str = "alice@example.com";

/// An error with its causes, as the person reads it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Default)]
struct Alerts(Mutex<Vec<Alert>>);

impl AlertSink for Alerts {
    fn raise(&self, alert: &Alert) {
        self.0.lock().unwrap().push(alert.clone());
    }
}

async fn create<K>(client: &kube::Client, namespace: Option<&str>, manifest: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let typed: K = serde_json::from_value(manifest).unwrap();
    let api: Api<K> = Api::namespaced(client.clone(), namespace.unwrap_or("default"));
    api.create(&PostParams::default(), &typed).await.unwrap();
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

#[tokio::test]
async fn deckhand_acts_as_the_person_and_says_which_permission_is_missing() {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let admin = cluster.client().await.unwrap();
    for name in ["shop", "prod", "deckhand"] {
        create_namespace(&admin, name).await;
    }
    create::<ConfigMap>(
        &admin,
        Some("shop"),
        json!({"metadata": {"name": "app", "namespace": "shop"}, "data": {"mode": "safe"}}),
    )
    .await;
    create::<ConfigMap>(
        &admin,
        Some("prod"),
        json!({"metadata": {"name": "app", "namespace": "prod"}, "data": {"mode": "safe"}}),
    )
    .await;
    // Alice may read and patch ConfigMaps in shop, nothing in prod.
    create::<Role>(
        &admin,
        Some("shop"),
        json!({"metadata": {"name": "configmap-editor", "namespace": "shop"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                          "verbs": ["get", "list", "patch", "update"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("shop"),
        json!({"metadata": {"name": "alice-edits-configmaps", "namespace": "shop"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "configmap-editor"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": ALICE}]}),
    )
    .await;

    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let alerts = Arc::new(Alerts::default());
    let gate = ClusterGate::from_config(config, Engine::builder().build().unwrap())
        .unwrap()
        .with_alerts(alerts.clone());
    let alice = Person {
        user: ALICE.into(),
        groups: vec!["shop-team".into()],
    };
    let as_alice = gate.acting_as(&alice).unwrap();
    assert_eq!(as_alice.person(), Some(&alice));

    let configmap = |namespace: &str| ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(namespace.into()),
        name: "app".into(),
    };
    let patch = |namespace: &str| ClusterChange::Patch {
        target: configmap(namespace),
        patch_type: deckhand_tools::cluster::PatchType::Merge,
        patch: json!({"data": {"mode": "fast"}}),
    };

    // Up front: the access review names exactly what is missing, and only that.
    let allowed = as_alice.access_needed(&patch("shop")).await.unwrap();
    let missing_prod = as_alice.access_needed(&patch("prod")).await.unwrap();
    let delete_namespace = as_alice
        .access_needed(&ClusterChange::Delete {
            target: ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "prod".into(),
            },
        })
        .await
        .unwrap();
    assert_eq!(
        missing_prod.to_string(),
        "patch configmaps \"app\" in namespace prod"
    );
    let checks = [
        allowed.clone(),
        missing_prod.clone(),
        delete_namespace.clone(),
    ];
    // Asked as Alice herself (SelfSubjectAccessReview through impersonation)...
    let denied = as_alice.check_access(&alice, &checks).await.unwrap();
    let denied_checks: Vec<_> = denied.iter().map(|d| d.check.clone()).collect();
    assert_eq!(
        denied_checks,
        [missing_prod.clone(), delete_namespace.clone()]
    );
    // ...and about Alice by deckhand's own identity (SubjectAccessReview): the same.
    let denied = gate.check_access(&alice, &checks).await.unwrap();
    let denied_checks: Vec<_> = denied.iter().map(|d| d.check.clone()).collect();
    assert_eq!(denied_checks, [missing_prod, delete_namespace]);
    assert_eq!(
        alerts
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|alert| alert.reason == "access_denied" && alert.user == ALICE)
            .count(),
        4
    );

    // For real: Alice's own rights apply to what deckhand does for her.
    let prepared = as_alice.prepare(patch("shop"), ALICE).await.unwrap();
    as_alice
        .execute(&prepared, &deckhand_tools::Approval::by("bob"))
        .await
        .unwrap();
    let shop: Api<ConfigMap> = Api::namespaced(admin.clone(), "shop");
    let written = shop.get("app").await.unwrap();
    assert_eq!(written.data.unwrap()["mode"], "fast");
    let managers: Vec<String> = written
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "deckhand"), "{managers:?}");
    let error = as_alice.prepare(patch("prod"), ALICE).await.unwrap_err();
    match &error {
        Error::Cluster { source, .. } => {
            assert!(source.to_string().contains("forbidden"), "{source}");
        }
        other => panic!("expected the API server's refusal, got {other}"),
    }
    // deckhand's own (admin) identity could have: impersonation is what stopped it.
    assert!(gate.prepare(patch("prod"), ALICE).await.is_ok());

    // Policy denials raise alerts too; as Kubernetes Events on deckhand's object.
    let events = EventAlerts::new(
        admin.clone(),
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some("deckhand".into()),
            namespace: Some("deckhand".into()),
            ..Default::default()
        },
    );
    let watched = gate.clone().with_alerts(events.clone());
    let error = watched
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
        .unwrap_err();
    assert!(matches!(error, Error::PolicyDenied { .. }), "{error}");
    assert_eq!(events.raised(), 1);
    let event_api: Api<Event> = Api::namespaced(admin.clone(), "deckhand");
    let mut found = Vec::new();
    for _ in 0..40 {
        found = event_api.list(&ListParams::default()).await.unwrap().items;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let event = found.first().expect("the alert is a Kubernetes Event");
    assert_eq!(event.reason.as_deref(), Some("PolicyDenied"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.clone().unwrap_or_default();
    assert!(message.starts_with(ALICE), "{message}");
    assert!(message.contains("Namespace"), "{message}");

    // The cluster tools act as the person the call is made for when the context says so:
    // the same registry reads shop for Alice, is refused prod, and without a person
    // reads prod as deckhand itself.
    let mut registry = deckhand_tools::ToolRegistry::new();
    deckhand_tools::cluster::register_cluster_tools(&mut registry, &gate).unwrap();
    let for_alice = deckhand_tools::ToolContext {
        requested_by: ALICE.into(),
        acting_as: Some(alice.clone()),
        ..deckhand_tools::ToolContext::default()
    };
    let get = |namespace: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": "app"});
    let read = registry
        .call("kube_get", &for_alice, &get("shop"))
        .await
        .unwrap();
    assert_eq!(
        read.pointer("/object/data/mode"),
        Some(&json!("fast")),
        "{read}"
    );
    let refused = registry
        .call("kube_get", &for_alice, &get("prod"))
        .await
        .unwrap_err();
    assert!(chain(&refused).contains("forbidden"), "{}", chain(&refused));
    // Twice, to go through the gate kept for her.
    let refused = registry
        .call("kube_get", &for_alice, &get("prod"))
        .await
        .unwrap_err();
    assert!(chain(&refused).contains("forbidden"), "{}", chain(&refused));
    let as_deckhand = deckhand_tools::ToolContext {
        requested_by: ALICE.into(),
        ..deckhand_tools::ToolContext::default()
    };
    registry
        .call("kube_get", &as_deckhand, &get("prod"))
        .await
        .unwrap();

    // The access review of steps names the permission each call needs.
    let workspace = std::path::Path::new("/nonexistent");
    let needed = |tool: &'static str, input: serde_json::Value| {
        let gate = gate.clone();
        async move {
            deckhand_tools::cluster::access_needed_for(&gate, tool, &input, workspace)
                .await
                .unwrap()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        needed("kube_get", get("prod")).await,
        ["get configmaps \"app\" in namespace prod"]
    );
    assert_eq!(
        needed(
            "kube_list",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop"})
        )
        .await,
        ["list configmaps in namespace shop"]
    );
    assert_eq!(
        needed(
            "kube_scale",
            json!({"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 3})
        )
        .await,
        ["patch deployments.apps/scale \"web\" in namespace shop"]
    );
    assert_eq!(
        needed("pod_facts", json!({"namespace": "shop", "name": "web-1"})).await,
        [
            "get pods \"web-1\" in namespace shop",
            "get pods/log \"web-1\" in namespace shop"
        ]
    );
    assert!(
        deckhand_tools::cluster::access_needed_for(&gate, "write_file", &json!({}), workspace)
            .await
            .unwrap()
            .is_none()
    );
}
