//! Scarlet's model path against a local server speaking OpenAI's chat-completions wire
//! format (the real deckhand-llm router and provider, no stand-ins): an invalid first
//! plan is repaired with the validation problems, a model that never gets it right falls
//! back to the rules, and no model at all means the rules or a clear error.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router as Http};
use deckhand_agents::Scarlet;
use deckhand_llm::{BackendConfig, BackendKind, LlmConfig, Router};
use deckhand_runtime::{Error, PlanRequest, Planner, ThreadId};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The server's script and what it was sent.
#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<String>>,
    requests: Mutex<Vec<Value>>,
}

async fn completions(State(script): State<Arc<Script>>, Json(body): Json<Value>) -> Json<Value> {
    script.requests.lock().unwrap().push(body);
    let content = script
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| "no more scripted replies".to_owned());
    Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "tiny-planner",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020}
    }))
}

/// A server answering with `replies` in turn, and a router whose `planner` route is it.
async fn model(replies: Vec<Value>) -> (Arc<Script>, Arc<Router>) {
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into_iter().map(|r| r.to_string()).collect()),
        requests: Mutex::new(Vec::new()),
    });
    let app = Http::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = LlmConfig {
        discover: false,
        ..LlmConfig::default()
    };
    let mut backend = BackendConfig::new(BackendKind::OpenaiCompatible, "tiny-planner")
        .with_base_url(format!("http://{address}/v1"));
    // These tests are about repairs, not window sizes: with the whole catalog (20+
    // tools) a repair no longer fits the 8k default window of unknown local models.
    backend.context_window = Some(16_384);
    config.backends.insert("local".into(), backend);
    config.routes.insert("planner".into(), vec!["local".into()]);
    let router = Router::from_config(&config, &|_: &str| None::<String>).unwrap();
    (script, Arc::new(router))
}

fn request(text: &str) -> PlanRequest {
    PlanRequest {
        thread_id: ThreadId::new(),
        text: text.into(),
        namespace: Some("shop".into()),
        history: vec!["user: the web deployment is slow at lunchtime".into()],
        similar_threads: vec!["scaled web in shop to 4 before a sale; rated 100%".into()],
    }
}

fn scale_step(replicas: Value, depends_on: &[&str]) -> Value {
    json!({"id": "scale", "agent": "sre", "title": "Scale web to 3", "tool": "kube_scale",
        "input": {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": replicas},
        "depends_on": depends_on, "mutating": true, "rationale": "asked for"})
}

fn check_step() -> Value {
    json!({"id": "check", "agent": "sre", "title": "Check web exists", "tool": "kube_get",
        "input": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
        "depends_on": [], "mutating": false, "rationale": "read first"})
}

#[tokio::test]
async fn an_invalid_first_plan_is_repaired_with_its_problems() {
    let invalid = json!({"steps": [scale_step(json!("three"), &["look"])]});
    let valid = json!({"steps": [check_step(), scale_step(json!(3), &["check"])]});
    let (script, router) = model(vec![invalid, valid]).await;
    let plan = Scarlet::new(router)
        .plan(
            &request("make web handle the lunchtime load: 3 replicas"),
            &common::catalog(),
        )
        .await
        .unwrap();
    assert_eq!(plan.created_by, "scarlet/local:tiny-planner");
    assert_eq!(plan.steps.len(), 2);
    assert!(plan
        .steps
        .iter()
        .any(|s| s.tool == "kube_scale" && s.mutating));

    let requests = script.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "one repair round");
    // A small local model once generated 2,000+ tokens for one plan (6 tokens/s on
    // these machines): the planner caps its answer.
    let cap = requests[0]
        .get("max_tokens")
        .or_else(|| requests[0].get("max_completion_tokens"))
        .and_then(Value::as_u64);
    assert!(cap.is_some_and(|cap| cap <= 2048), "{:?}", requests[0]);
    let first = requests[0]["messages"].to_string();
    println!(
        "{}",
        requests[0]["messages"][0]["content"].as_str().unwrap()
    );
    assert!(
        first.contains("kube_scale") && first.contains("pod_facts"),
        "the catalog is in the prompt"
    );
    assert!(
        first.contains("lunchtime") && first.contains("rated 100%"),
        "history and similar threads are in the prompt"
    );
    let repair = requests[1]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        repair.contains("depends on \\\"look\\\"") || repair.contains("depends on \"look\""),
        "{repair}"
    );
    assert!(
        repair.contains("/replicas"),
        "the schema problem names the field: {repair}"
    );
}

#[tokio::test]
async fn a_model_that_never_repairs_falls_back_to_the_rules() {
    let invalid = json!({"steps": [scale_step(json!(3), &["ghost"])]});
    let (script, router) = model(vec![invalid.clone(), invalid.clone(), invalid]).await;
    let plan = Scarlet::new(router)
        .plan(
            &request("scale deployment web to 3 in namespace shop"),
            &common::catalog(),
        )
        .await
        .unwrap();
    assert_eq!(plan.created_by, "scarlet/offline-rules");
    assert_eq!(
        script.requests.lock().unwrap().len(),
        3,
        "the first answer and two repairs"
    );

    let (_, router) = model(vec![
        json!({"steps": [scale_step(json!(3), &["ghost"])]});
        3
    ])
    .await;
    let error = Scarlet::new(router)
        .plan(&request("compose a haiku about etcd"), &common::catalog())
        .await
        .unwrap_err();
    let Error::Planning { message } = &error else {
        panic!("{error}")
    };
    assert!(
        message.contains("the model gave no valid plan") && message.contains("ghost"),
        "{message}"
    );
    assert!(
        message.contains("scale deployment NAME to N"),
        "it says what works offline: {message}"
    );
}

#[tokio::test]
async fn without_a_model_the_rules_answer_or_say_what_they_can_do() {
    let router = Arc::new(
        Router::new(&LlmConfig {
            discover: false,
            ..LlmConfig::default()
        })
        .unwrap(),
    );
    let scarlet = Scarlet::new(router);
    let plan = scarlet
        .plan(
            &request("why is pod web-1 crash-looping"),
            &common::catalog(),
        )
        .await
        .unwrap();
    assert_eq!(plan.created_by, "scarlet/offline-rules");
    assert!(!plan.is_mutating());
    let error = scarlet
        .plan(&request("compose a haiku about etcd"), &common::catalog())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Planning { message } if !message.contains("model gave")),
        "offline is not a model failure: {error}"
    );
}
