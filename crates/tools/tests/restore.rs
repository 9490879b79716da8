//! Restore on a real API server: a thread scales a Deployment, edits a ConfigMap's data
//! and a Deployment's image, creates a ConfigMap and deletes a Service; the restore plan
//! puts every object back (compared field by field with the originals), deletes what
//! the thread created, recreates what it deleted, and planning again finds nothing left.
//! Also: the reads the agents get (describe, events, lists with field selectors, pages)
//! and Secret values never coming back.
#![allow(clippy::unwrap_used)]

use deckhand_policy::Engine;
use deckhand_testkit::KubeApiServer;
use deckhand_tools::cluster::{ListQuery, MemoryJournal, PatchType, PriorState, RestoreAction};
use deckhand_tools::{Approval, ClusterChange, ClusterGate, Error, ObjectRef};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;

const ALICE: &str = "alice@example.com";
const THREAD: &str = "0b5e2f55-6f0a-4f4e-9b43-3c2d1f7a9e10";

fn object(api_version: &str, kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

/// What a person means by "the same object": everything but status, bookkeeping and the
/// Deployment controller's revision counter.
fn content(object: &Value) -> Value {
    let mut object = object.clone();
    let fields = object.as_object_mut().unwrap();
    fields.remove("status");
    let metadata = fields.get_mut("metadata").unwrap().as_object_mut().unwrap();
    for bookkeeping in [
        "resourceVersion",
        "managedFields",
        "generation",
        "uid",
        "creationTimestamp",
        "selfLink",
    ] {
        metadata.remove(bookkeeping);
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove("deployment.kubernetes.io/revision");
    }
    object
}

async fn setup() -> (KubeApiServer, kube::Client, ClusterGate, Arc<MemoryJournal>) {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let client = cluster.client().await.expect("client");
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let journal = Arc::new(MemoryJournal::default());
    let gate = ClusterGate::new(client.clone(), Engine::builder().build().unwrap())
        .with_journal(journal.clone());
    (cluster, client, gate, journal)
}

async fn create<K>(client: &kube::Client, manifest: Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let typed: K = serde_json::from_value(manifest).unwrap();
    // Right after a namespace is made, the API server may refuse pods-bearing objects
    // until its default ServiceAccount exists; retry briefly.
    let api = Api::<K>::namespaced(client.clone(), "shop");
    for attempt in 0.. {
        match api.create(&PostParams::default(), &typed).await {
            Ok(_) => return,
            Err(error) if attempt < 20 => {
                eprintln!("create retry: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => panic!("create: {error}"),
        }
    }
}

async fn live(gate: &ClusterGate, target: &ObjectRef) -> Option<Value> {
    gate.get(target, ALICE).await.unwrap()
}

async fn write(gate: &ClusterGate, change: ClusterChange) {
    let prepared = gate.prepare(change, ALICE).await.unwrap();
    gate.execute(&prepared, &Approval::by("bob").in_thread(THREAD))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_restore_puts_every_touched_object_back_and_is_idempotent() {
    let (_cluster, client, gate, journal) = setup().await;
    create::<Deployment>(
        &client,
        json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"team": "shop"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.local/web:1.0"}]}
                }
            }
        }),
    )
    .await;
    create::<ConfigMap>(
        &client,
        json!({"metadata": {"name": "app", "namespace": "shop"},
               "data": {"mode": "safe", "level": "info"}}),
    )
    .await;
    create::<Service>(
        &client,
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    )
    .await;
    let web = object("apps/v1", "Deployment", "web");
    let app = object("v1", "ConfigMap", "app");
    let service = object("v1", "Service", "web");
    let extra = object("v1", "ConfigMap", "extra");
    // Let the Deployment controller settle its revision annotation first.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let original_web = live(&gate, &web).await.unwrap();
    let original_app = live(&gate, &app).await.unwrap();
    let original_service = live(&gate, &service).await.unwrap();

    // The thread: scale, edit twice (data, image), create, delete.
    write(
        &gate,
        ClusterChange::Scale {
            target: web.clone(),
            replicas: 5,
        },
    )
    .await;
    write(
        &gate,
        ClusterChange::Patch {
            target: app.clone(),
            patch_type: PatchType::Merge,
            patch: json!({"data": {"mode": "fast", "level": null, "extra": "on"}}),
        },
    )
    .await;
    write(
        &gate,
        ClusterChange::Patch {
            target: web.clone(),
            patch_type: PatchType::Strategic,
            patch: json!({"metadata": {"labels": {"tier": "front"}},
                          "spec": {"template": {"spec": {"containers": [
                              {"name": "web", "image": "registry.local/web:2.0"}]}}}}),
        },
    )
    .await;
    write(
        &gate,
        ClusterChange::Apply {
            object: json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "extra", "namespace": "shop"},
                           "data": {"k": "v"}}),
        },
    )
    .await;
    write(
        &gate,
        ClusterChange::Delete {
            target: service.clone(),
        },
    )
    .await;

    let priors = journal.priors(THREAD);
    let touched: Vec<&ObjectRef> = priors.iter().map(|state| &state.object).collect();
    assert_eq!(
        touched,
        [&web, &app, &extra, &service],
        "first touch, in order"
    );
    assert_eq!(
        priors[0].prior.as_ref().unwrap()["spec"]["replicas"],
        2,
        "the state before the first change is kept, not a later one"
    );
    assert!(priors[2].prior.is_none(), "extra was created by the thread");
    assert!(priors[0].prior.as_ref().unwrap().get("status").is_none());
    assert!(priors[0].prior.as_ref().unwrap()["metadata"]
        .get("resourceVersion")
        .is_none());

    let changed_web = live(&gate, &web).await.unwrap();
    assert_eq!(changed_web["spec"]["replicas"], 5);
    assert!(live(&gate, &service).await.is_none());

    // The restore plan: last touched first, a diff for each write.
    let plan = gate.plan_restore(&priors, ALICE).await.unwrap();
    let actions: Vec<(String, RestoreAction)> = plan
        .steps
        .iter()
        .map(|step| (step.object.to_string(), step.action))
        .collect();
    assert_eq!(
        actions,
        [
            (service.to_string(), RestoreAction::Recreate),
            (extra.to_string(), RestoreAction::Delete),
            (app.to_string(), RestoreAction::Replace),
            (web.to_string(), RestoreAction::Replace),
        ]
    );
    let web_diff = plan.steps[3].diff();
    assert!(web_diff.contains("-  replicas: 5"), "{web_diff}");
    assert!(web_diff.contains("+  replicas: 2"), "{web_diff}");
    assert!(web_diff.contains("registry.local/web:1.0"), "{web_diff}");
    assert_eq!(plan.hash.len(), 64);
    assert!(
        live(&gate, &extra).await.is_some(),
        "planning writes nothing"
    );

    let report = gate
        .restore(&plan, &Approval::by("bob").in_thread(THREAD))
        .await
        .unwrap();
    assert_eq!(report.done.len(), 4);

    // Field by field, as before the thread.
    assert_eq!(
        content(&live(&gate, &web).await.unwrap()),
        content(&original_web)
    );
    assert_eq!(
        content(&live(&gate, &app).await.unwrap()),
        content(&original_app)
    );
    let recreated = live(&gate, &service).await.unwrap();
    assert_eq!(
        recreated["spec"]["ports"],
        original_service["spec"]["ports"]
    );
    assert_eq!(
        recreated["spec"]["selector"],
        original_service["spec"]["selector"]
    );
    assert_eq!(
        recreated["metadata"]["labels"],
        original_service["metadata"]["labels"]
    );
    assert!(live(&gate, &extra).await.is_none());

    // Again: nothing left to do, even after the controller moved the revision on.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let again = gate.plan_restore(&priors, ALICE).await.unwrap();
    assert!(!again.has_writes(), "{:?}", again.to_json());
    assert_ne!(again.hash, plan.hash);
}

#[tokio::test]
async fn a_restore_that_the_policies_refuse_stops_with_their_reasons() {
    let (_cluster, _client, gate, _journal) = setup().await;
    // The thread "created" a Namespace: deleting it is refused by the built-in guard.
    let priors = [PriorState {
        object: ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "shop".into(),
        },
        prior: None,
    }];
    let error = gate.plan_restore(&priors, ALICE).await.unwrap_err();
    assert!(matches!(error, Error::PolicyDenied { .. }), "{error}");
}

#[tokio::test]
async fn reads_describe_page_select_and_never_show_secret_values() {
    let (_cluster, client, gate, _journal) = setup().await;
    create::<Deployment>(
        &client,
        json!({
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "registry.local/api:1"}]}
                }
            }
        }),
    )
    .await;
    for index in 0..7 {
        create::<ConfigMap>(
            &client,
            json!({"metadata": {"name": format!("page-{index}"), "namespace": "shop",
                                "labels": {"set": "paged"}}}),
        )
        .await;
    }
    create::<Secret>(
        &client,
        json!({"metadata": {"name": "db", "namespace": "shop"},
               "stringData": {"password": "hunter2-correct-horse"}}),
    )
    .await;

    // Pages of 3 from 7 objects: 3 + 3 + 1, every name once.
    let mut query = ListQuery {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("shop".into()),
        label_selector: Some("set=paged".into()),
        limit: Some(3),
        ..ListQuery::default()
    };
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = gate.list(&query, ALICE).await.unwrap();
        pages += 1;
        names.extend(
            page.items
                .iter()
                .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        assert!(page.items.iter().all(|item| item["kind"] == "ConfigMap"));
        match page.continue_token {
            Some(token) => query.continue_token = Some(token),
            None => break,
        }
    }
    names.sort();
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..7).map(|i| format!("page-{i}")).collect::<Vec<_>>()
    );

    // A field selector.
    let by_name = ListQuery {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("shop".into()),
        field_selector: Some("metadata.name=page-3".into()),
        ..ListQuery::default()
    };
    let found = gate.list(&by_name, ALICE).await.unwrap().items;
    assert_eq!(found.len(), 1);

    // Secrets: keys and sizes, never values, in gets and lists.
    let secret = gate
        .get(&object("v1", "Secret", "db"), ALICE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret["data"]["password"], "<redacted: 21 bytes>");
    let secrets = ListQuery {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some("shop".into()),
        ..ListQuery::default()
    };
    let listed = gate.list(&secrets, ALICE).await.unwrap();
    let text = serde_json::to_string(&listed.items).unwrap();
    assert!(text.contains("<redacted: 21 bytes>"), "{text}");
    assert!(!text.contains("aHVudGVy"), "{text}");

    // Describe: the ReplicaSet the controller made has the Deployment as its owner, and
    // the Deployment has the controller's scaling event.
    let mut replica_set = None;
    for _ in 0..40 {
        let sets = ListQuery {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            namespace: Some("shop".into()),
            label_selector: Some("app=api".into()),
            ..ListQuery::default()
        };
        if let Some(set) = gate.list(&sets, ALICE).await.unwrap().items.pop() {
            replica_set = Some(set);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let replica_set = replica_set.expect("the Deployment controller made a ReplicaSet");
    let name = replica_set["metadata"]["name"].as_str().unwrap();
    let described = gate
        .describe(&object("apps/v1", "ReplicaSet", name), 50, ALICE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(described["owners"][0]["ref"]["kind"], "Deployment");
    assert_eq!(described["owners"][0]["ref"]["name"], "api");
    let deployment = gate
        .describe(&object("apps/v1", "Deployment", "api"), 50, ALICE)
        .await
        .unwrap()
        .unwrap();
    let reasons: Vec<&str> = deployment["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"ScalingReplicaSet"), "{reasons:?}");
    assert!(gate
        .describe(&object("apps/v1", "Deployment", "nothing"), 50, ALICE)
        .await
        .unwrap()
        .is_none());
}
