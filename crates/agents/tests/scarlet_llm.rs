//! Scarlet's model path against a local server speaking OpenAI's chat-completions wire
//! format (the real deckhand-llm router and provider, no stand-ins): an invalid first
//! plan is repaired with the validation problems, a model that never gets it right falls
//! back to the rules, no model at all means the rules or a clear error, and the prompt
//! with its repair rounds fits the 8k default window of a local model.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router as Http};
use deckhand_agents::Scarlet;
use deckhand_llm::{
    BackendConfig, BackendKind, ChatRequest, Counter, LlmConfig, Message, ResponseSchema, Router,
};
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
    // No context_window: the 8k default of unknown local models, which the whole
    // prompt and its repair rounds must fit.
    let backend = BackendConfig::new(BackendKind::OpenaiCompatible, "tiny-planner")
        .with_base_url(format!("http://{address}/v1"));
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

/// A plan that passes the schema but not `Plan::new`: `steps` steps that each depend on
/// a step that does not exist and use a tool the prompt may not show, with long
/// rationales, so the answer is as long as a model may write and its problems many.
fn long_invalid_plan(steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            json!({"id": format!("s{i}"), "agent": "sre", "title": format!("Step {i} of a rambling plan"),
                "tool": if i % 2 == 0 { "helm_chart" } else { "kube_scale" },
                "input": {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": i},
                "depends_on": [format!("ghost-{i}")], "mutating": i % 2 == 1,
                "rationale": "because the lunchtime load keeps growing and nobody has looked at it for weeks ".repeat(3)})
        })
        .collect();
    json!({ "steps": steps })
}

/// The whole catalog, the prompt and two repair rounds with the longest answers and
/// the most problems, at the 8k default window: every request reaches the model whole
/// (nothing dropped or summarised by the router, which would otherwise have to) and
/// counts within the window with the router's counter for that model.
#[tokio::test]
async fn the_prompt_and_two_repair_rounds_fit_an_8k_window_with_the_whole_catalog() {
    let catalog = common::catalog();
    assert!(catalog.entries().count() >= 30, "the whole catalog");
    let plan = long_invalid_plan(24);
    let (script, router) = model(vec![plan.clone(), plan.clone(), plan]).await;
    let plan = Scarlet::new(router)
        .plan(
            &request("scale deployment web to 3 in namespace shop"),
            &catalog,
        )
        .await
        .unwrap();
    assert_eq!(
        plan.created_by, "scarlet/offline-rules",
        "three invalid plans, then the rules"
    );

    let requests = script.requests.lock().unwrap();
    assert_eq!(requests.len(), 3, "the first request and two repairs");
    let counter = Counter::for_model("tiny-planner");
    let window = 8192;
    for (round, body) in requests.iter().enumerate() {
        let messages: Vec<Message> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let content = m["content"].as_str().unwrap().to_owned();
                match m["role"].as_str().unwrap() {
                    "system" => Message::system(content),
                    "user" => Message::user(content),
                    "assistant" => Message::assistant(content),
                    other => panic!("unexpected role {other}"),
                }
            })
            .collect();
        let wire = body["messages"].to_string();
        assert!(
            wire.contains("Request: scale deployment web to 3 in namespace shop"),
            "round {round}: the request is there"
        );
        assert!(
            !wire.contains("[deckhand dropped") && !wire.contains("[Summary of the"),
            "round {round}: the router had to trim nothing"
        );
        assert_eq!(
            messages.len(),
            if round == 0 { 2 } else { 4 },
            "round {round}"
        );
        let mut sent = ChatRequest::new(messages);
        sent.response_schema = Some(ResponseSchema {
            name: "PlanDraft".into(),
            schema: body["response_format"]["json_schema"]["schema"].clone(),
        });
        let answer = body["max_tokens"].as_u64().unwrap() as usize;
        let tokens = counter.count_request(&sent);
        println!(
            "round {round}: {tokens} prompt tokens + {answer} for the answer, window {window}"
        );
        assert!(
            tokens + answer <= window,
            "round {round}: {tokens} + {answer}"
        );
        if round > 0 {
            let repair = sent.messages[3].content.as_str();
            assert!(
                repair.contains("ghost-"),
                "round {round}: the problems are there"
            );
            let echo = sent.messages[2].content.as_str();
            assert!(
                echo.contains("\"steps\""),
                "round {round}: the plan is sent back"
            );
        }
    }
    // Relevant tools in full, the rest by name.
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    for tool in ["kube_get", "kube_scale"] {
        assert!(
            system.contains(&format!("- {tool} (")),
            "{tool} is shown in full"
        );
    }
    let shown = system.matches("\n  input: ").count();
    assert!(
        shown < catalog.entries().count(),
        "not every tool in full: {shown}"
    );
    assert!(system.contains("Other tools, inputs not shown"));
    for entry in catalog.entries() {
        assert!(system.contains(&entry.name), "{} is named", entry.name);
    }
    println!(
        "{shown} of {} tools shown in full",
        catalog.entries().count()
    );
}
