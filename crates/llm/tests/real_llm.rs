//! Against a real small model behind llama.cpp's OpenAI-compatible server, set up by
//! `scripts/real-llm.sh` (which also runs this test). Opt-in: without
//! `DECKHAND_REAL_LLM_URL` (e.g. `http://127.0.0.1:18080/v1`) every test here says it was
//! skipped and why, and passes.

#![allow(clippy::unwrap_used)]

use deckhand_llm::{
    BackendConfig, BackendKind, CancellationToken, ChatRequest, LlmConfig, Message, Router,
    StreamEvent, ToolDefinition,
};
use serde::Deserialize;
use std::time::Instant;

fn real_router() -> Option<Router> {
    let Ok(url) = std::env::var("DECKHAND_REAL_LLM_URL") else {
        eprintln!(
            "SKIPPED: DECKHAND_REAL_LLM_URL is not set, so there is no real model to test \
             against. Run scripts/real-llm.sh to set one up (a ~1 GB download and a \
             14-CPU-minute build, cached under ~/.cache/deckhand/llm/) and run these tests."
        );
        return None;
    };
    let model = std::env::var("DECKHAND_REAL_LLM_MODEL").unwrap_or_else(|_| "qwen2.5-coder".into());
    let mut config = LlmConfig {
        discover: false,
        offline_fallback: false,
        ..LlmConfig::default()
    };
    // Under load from other builds a turn took up to two minutes on these machines.
    config.timeouts.first_token_secs = 600.0;
    config.timeouts.total_secs = 900.0;
    config.retry.max_attempts = 1;
    let mut backend = BackendConfig::new(BackendKind::OpenaiCompatible, model).with_base_url(url);
    backend.context_window = Some(4096);
    config.backends.insert("real".into(), backend);
    config.routes.insert("default".into(), vec!["real".into()]);
    Some(Router::from_config(&config, &|_| None).unwrap())
}

/// A plan as the planner asks for it: a few steps, each one tool with its input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Plan {
    /// What the plan achieves, in one sentence.
    summary: String,
    /// The steps, in order.
    steps: Vec<Step>,
}

/// One step of a plan.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Step {
    /// One of: safe_get, safe_scale, safe_apply.
    tool: String,
    /// The Kubernetes namespace.
    namespace: String,
    /// The name of the Kubernetes object the tool acts on (for "deployment api", `api`).
    /// A field called just `name` made the 1.5B model name the step instead.
    object_name: String,
    /// The replica count, for safe_scale.
    replicas: Option<u32>,
}

#[tokio::test]
async fn plans_a_simple_request_end_to_end() {
    let Some(router) = real_router() else { return };
    let started = Instant::now();
    let request = ChatRequest::new(vec![
        Message::system(
            "You are deckhand's planner. Turn the request into a plan of steps. Tools: \
             safe_get (read an object), safe_scale (set a Deployment's replicas), safe_apply \
             (apply a manifest).",
        ),
        Message::user("Scale the deployment web in namespace shop to 5 replicas."),
    ])
    .with_temperature(0.0)
    .with_max_tokens(400);
    let plan = router
        .structured::<Plan>("planner", request, &CancellationToken::new())
        .await
        .unwrap();
    eprintln!(
        "plan in {:?} ({} tokens in, {} out): {:?}",
        started.elapsed(),
        plan.response.usage.input,
        plan.response.usage.output,
        plan.value
    );
    let scale = plan
        .value
        .steps
        .iter()
        .find(|s| s.tool == "safe_scale")
        .expect("a safe_scale step");
    assert_eq!(scale.namespace, "shop");
    assert_eq!(scale.object_name, "web");
    assert_eq!(scale.replicas, Some(5));
}

#[tokio::test]
async fn a_small_model_calls_a_tool() {
    let Some(router) = real_router() else { return };
    let tool = ToolDefinition {
        name: "safe_get".into(),
        description: "Reads Kubernetes objects of a kind in a namespace.".into(),
        parameters: serde_json::json!({"type": "object", "required": ["kind", "namespace"],
            "properties": {"kind": {"type": "string"}, "namespace": {"type": "string"}}}),
    };
    let request = ChatRequest::new(vec![Message::user("List the pods in namespace web.")])
        .with_tools(vec![tool])
        .with_temperature(0.0)
        .with_max_tokens(200);
    let response = router
        .chat("copilot", request, &CancellationToken::new())
        .await
        .unwrap();
    eprintln!(
        "answer: {:?} calls: {:?}",
        response.text, response.tool_calls
    );
    let call = response.tool_calls.first().expect("a tool call");
    assert_eq!(call.name, "safe_get");
    assert_eq!(call.arguments["namespace"], "web");
}

#[tokio::test]
async fn streams_an_answer() {
    let Some(router) = real_router() else { return };
    let request = ChatRequest::new(vec![Message::user(
        "In one sentence: what does a Kubernetes Deployment do?",
    )])
    .with_max_tokens(60);
    let mut stream = router
        .chat_stream("copilot", request, &CancellationToken::new())
        .await
        .unwrap();
    let mut deltas = 0;
    let done = loop {
        match stream.next().await.unwrap().unwrap() {
            StreamEvent::Done(done) => break done,
            _ => deltas += 1,
        }
    };
    eprintln!("{deltas} deltas: {:?}", done.text);
    assert!(deltas > 1);
    assert!(!done.text.trim().is_empty());
    assert!(!done.offline);
}
