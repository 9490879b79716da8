//! AIRequest and AIConversation on a real kube-apiserver: the CRDs generated from the
//! types install and are served with their short names, categories and printer columns;
//! the schema rejects what it should; the status subresource keeps spec and status apart
//! through a request's whole life; a plan keeps every field it was written with.

#![allow(clippy::unwrap_used)]

use deckhand_crds::request::MAX_REQUEST_TEXT_CHARS;
use deckhand_crds::{
    set_condition, AIConversation, AIConversationSpec, AIRequest, AIRequestSpec, AIRequestStatus,
    Approval, Condition, ConditionStatus, ConversationMessage, MessageRole, Phase, StoreRef,
};
use deckhand_testkit::KubeApiServer;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HASH: &str = "sha256:0c5e4a3b1f2d6e7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a";
const NEW_HASH: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in deckhand_crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for crd in deckhand_crds::crds() {
        let name = crd.metadata.name.unwrap();
        loop {
            let established = crds
                .get(&name)
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not Established within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let shop: Namespace = serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &shop)
        .await
        .unwrap();
}

fn spec() -> AIRequestSpec {
    AIRequestSpec {
        request_text: "scale web to 3 replicas".into(),
        user: "alice@example.com".into(),
        namespace: "shop".into(),
        context: Some("the sale starts at noon".into()),
        approve: None,
        restore: None,
    }
}

/// The request is refused by the API server's validation (422 Invalid), naming `field`.
fn invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, field: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 422 => assert!(
            status.message.contains(field),
            "rejected, but not for {field}: {}",
            status.message
        ),
        other => panic!("expected 422 Invalid for {field}, got {other:?}"),
    }
}

/// `GET` as a `meta.k8s.io/v1` Table, the way kubectl asks for printer columns.
async fn table(client: &Client, path: &str) -> Value {
    let request = http::Request::get(path)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap()
}

#[tokio::test]
async fn an_airequest_lives_through_the_status_subresource() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    install_crds(&client).await;
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), "shop");
    let post = PostParams::default();

    // The schema refuses malformed requests.
    let with = |change: fn(&mut AIRequestSpec)| {
        let mut spec = spec();
        change(&mut spec);
        AIRequest::new("bad", spec)
    };
    invalid(
        requests
            .create(&post, &with(|s| s.request_text.clear()))
            .await,
        "spec.requestText",
    );
    invalid(
        requests
            .create(
                &post,
                &with(|s| s.request_text = "x".repeat(MAX_REQUEST_TEXT_CHARS as usize + 1)),
            )
            .await,
        "spec.requestText",
    );
    invalid(
        requests.create(&post, &with(|s| s.user.clear())).await,
        "spec.user",
    );
    invalid(
        requests
            .create(&post, &with(|s| s.namespace = "Not_A_Namespace".into()))
            .await,
        "spec.namespace",
    );
    invalid(
        requests
            .create(&post, &with(|s| s.approve = Some("yes please".into())))
            .await,
        "spec.approve",
    );
    // A field the Rust type cannot leave out, left out of untyped JSON.
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &ApiResource::erase::<AIRequest>(&()),
    );
    let missing_user: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "deckhand.dev/v1alpha1", "kind": "AIRequest",
        "metadata": {"name": "bad"},
        "spec": {"requestText": "hi", "namespace": "shop"}
    }))
    .unwrap();
    invalid(untyped.create(&post, &missing_user).await, "spec.user");

    // Created: no status yet, so Pending; generation 1.
    let created = requests
        .create(&post, &AIRequest::new("scale-web", spec()))
        .await
        .unwrap();
    assert_eq!(created.phase(), Phase::Pending);
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none());
    // A status sent with the object on create is dropped: only the subresource writes it.
    let mut forged = AIRequest::new("forged", spec());
    forged.status = Some(AIRequestStatus {
        phase: Some(Phase::Succeeded),
        ..Default::default()
    });
    assert!(requests
        .create(&post, &forged)
        .await
        .unwrap()
        .status
        .is_none());

    // The controller plans: the plan (with fields the CRD does not know) goes to status
    // with server-side apply, as a controller would write it.
    let plan = json!({
        "steps": [
            {"id": "scale", "tool": "kube_scale", "input": {"name": "web", "replicas": 3},
             "depends_on": [], "x-runtime-extra": {"nested": [1, 2, {"deep": true}]}}
        ],
        "summary": "scale web from 2 to 3",
        "hash": HASH
    });
    let mut planned = AIRequestStatus {
        phase: Some(Phase::AwaitingApproval),
        plan: Some(plan.clone()),
        plan_hash: Some(HASH.into()),
        thread_id: Some("t-42".into()),
        observed_generation: Some(1),
        ..AIRequestStatus::default()
    };
    set_condition(
        &mut planned.conditions,
        Condition {
            type_: "Planned".into(),
            status: ConditionStatus::True,
            reason: "PlanMade".into(),
            message: "1 step; it changes the cluster and needs approval".into(),
            last_transition_time: Time("2026-11-23T03:00:00Z".parse().unwrap()),
            observed_generation: Some(1),
        },
    );
    let planned = planned.apply_body();
    let after_plan = requests
        .patch_status(
            "scale-web",
            &PatchParams::apply("deckhand").force(),
            &Patch::Apply(&planned),
        )
        .await
        .unwrap();
    let status = after_plan.status.clone().unwrap();
    assert_eq!(
        status.plan.as_ref(),
        Some(&plan),
        "the plan came back changed"
    );
    assert_eq!(after_plan.phase(), Phase::AwaitingApproval);
    assert_eq!(
        after_plan.metadata.generation,
        Some(1),
        "a status write is not a spec change"
    );
    assert!(after_plan.is_observed());
    assert_eq!(status.conditions[0].reason, "PlanMade");
    assert_eq!(
        status.conditions[0].last_transition_time,
        Time("2026-11-23T03:00:00Z".parse().unwrap())
    );
    assert_eq!(after_plan.approval(), Approval::NotGiven);

    // The status schema refuses an unknown phase, a malformed hash and a bad condition.
    for (bad, field) in [
        (json!({"status": {"phase": "Done"}}), "status.phase"),
        (json!({"status": {"planHash": "abc"}}), "status.planHash"),
        (
            json!({"status": {"conditions": [{"type": "Planned", "status": "Maybe", "reason": "X",
                "message": "", "lastTransitionTime": "2026-11-23T03:00:00Z"}]}}),
            "status.conditions",
        ),
    ] {
        invalid(
            requests
                .patch_status("scale-web", &PatchParams::default(), &Patch::Merge(&bad))
                .await,
            field,
        );
    }

    // The person approves a stale hash first, then the right one: spec changes bump the
    // generation, and a status written through the main resource is ignored.
    let mut approving = requests.get("scale-web").await.unwrap();
    approving.spec.approve = Some(NEW_HASH.into());
    approving.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
    let approved = requests
        .replace("scale-web", &post, &approving)
        .await
        .unwrap();
    assert_eq!(approved.metadata.generation, Some(2));
    assert_eq!(
        approved.phase(),
        Phase::AwaitingApproval,
        "status changed through the main resource"
    );
    assert!(!approved.is_observed());
    assert_eq!(
        approved.approval(),
        Approval::Stale {
            approved: NEW_HASH,
            planned: HASH
        }
    );
    let fix = json!({"spec": {"approve": HASH}});
    let approved = requests
        .patch("scale-web", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    assert_eq!(approved.approval(), Approval::Matches { hash: HASH });
    assert_eq!(approved.metadata.generation, Some(3));

    // Running, Succeeded, then Restored; each write leaves the plan where it was.
    for phase in ["Running", "Succeeded", "Restored"] {
        let change = json!({
            "status": {"phase": phase, "observedGeneration": 3, "response": format!("{phase}: web has 3 replicas")}
        });
        let after = requests
            .patch_status("scale-web", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .unwrap();
        assert_eq!(serde_json::to_value(after.phase()).unwrap(), phase);
        assert!(after.is_observed());
        assert_eq!(after.status.unwrap().plan.as_ref(), Some(&plan));
    }
    let restored = requests.get("scale-web").await.unwrap();
    assert_eq!(restored.phase(), Phase::Restored);
    assert!(restored.phase().is_finished());

    // Printer columns, as kubectl shows them (`kubectl get aireq -o wide`).
    let table = table(
        &client,
        "/apis/deckhand.dev/v1alpha1/namespaces/shop/airequests",
    )
    .await;
    let columns: Vec<_> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Phase", "User", "Target", "Plan", "Age"]);
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["cells"][0] == "scale-web")
        .unwrap();
    assert_eq!(row["cells"][1], "Restored");
    assert_eq!(row["cells"][2], "alice@example.com");
    assert_eq!(row["cells"][3], "shop");

    // Discovery serves the short name and the category (`kubectl get aireq`, `kubectl get deckhand`).
    let discovery: Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/apis/deckhand.dev/v1alpha1")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let resource = |name: &str| {
        discovery["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(resource("airequests")["shortNames"], json!(["aireq"]));
    assert_eq!(resource("aiconversations")["shortNames"], json!(["aiconv"]));
    assert_eq!(resource("airequests")["categories"], json!(["deckhand"]));
    assert!(discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "airequests/status"));
}

#[tokio::test]
async fn an_aiconversation_is_inline_or_a_summary_with_a_pointer() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    install_crds(&client).await;
    let conversations: Api<AIConversation> = Api::namespaced(client.clone(), "shop");
    let post = PostParams::default();
    let message = |role, author: &str, text: &str| ConversationMessage {
        role,
        author: author.into(),
        text: text.into(),
        at: Time("2026-11-23T03:00:00Z".parse().unwrap()),
    };
    let store_ref = StoreRef {
        cluster_id: "eks-prod".into(),
        message_count: 812,
        url: Some("https://deckhand.example.com/v1/threads/t-2".into()),
    };

    let mut inline = AIConversation::new(
        "t-1",
        AIConversationSpec::inline(
            "t-1",
            vec![
                message(
                    MessageRole::User,
                    "alice@example.com",
                    "why is checkout crash-looping?",
                ),
                message(
                    MessageRole::Assistant,
                    "jamie",
                    "its liveness probe fails: /healthz answers 500",
                ),
            ],
        ),
    );
    inline.spec.request = Some("checkout-crash".into());
    let created = conversations.create(&post, &inline).await.unwrap();
    assert_eq!(created.spec, inline.spec, "the messages came back changed");

    let stored = AIConversation::new(
        "t-2",
        AIConversationSpec::stored(
            "t-2",
            "812 messages: the checkout outage of 2026-11-20",
            store_ref.clone(),
        ),
    );
    assert_eq!(
        conversations.create(&post, &stored).await.unwrap().spec,
        stored.spec
    );

    // Both forms at once, or neither, or half of the pointer form: refused.
    let mut both = stored.clone();
    both.metadata.name = Some("both".into());
    both.spec.messages = Some(Vec::new());
    invalid(conversations.create(&post, &both).await, "spec");
    let mut neither = stored.clone();
    neither.metadata.name = Some("neither".into());
    neither.spec.summary = None;
    neither.spec.store_ref = None;
    invalid(conversations.create(&post, &neither).await, "spec");
    let mut no_pointer = stored.clone();
    no_pointer.metadata.name = Some("no-pointer".into());
    no_pointer.spec.store_ref = None;
    invalid(conversations.create(&post, &no_pointer).await, "spec");

    // A message's role is one of four.
    let bad_role = json!({"spec": {"messages": [{"role": "robot", "author": "x", "text": "hi", "at": "2026-11-23T03:00:00Z"}]}});
    invalid(
        conversations
            .patch("t-1", &PatchParams::default(), &Patch::Merge(&bad_role))
            .await,
        "spec.messages",
    );

    let table = table(
        &client,
        "/apis/deckhand.dev/v1alpha1/namespaces/shop/aiconversations",
    )
    .await;
    let columns: Vec<_> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Thread", "Request", "Age"]);
}
