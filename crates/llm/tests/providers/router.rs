//! The router over real HTTP: redaction on the wire, fallback, deadlines, cancellation,
//! structured output repairs, context windows, the offline backend and `check`.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router, safe_get};
use deckhand_llm::{
    BackendKind, CancellationToken, ChatRequest, Message, ResponseSchema, StreamEvent, ToolCall,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn ollama_answer(text: &str) -> Reply {
    Reply::json(
        json!({"model": "llama3.1:8b", "done": true, "done_reason": "stop",
        "prompt_eval_count": 100, "eval_count": 10,
        "message": {"role": "assistant", "content": text}}),
    )
}

#[tokio::test]
async fn planted_secrets_never_reach_the_wire() {
    let mock = Mock::start(vec![ollama_answer("noted"), ollama_answer("noted")]).await;
    let config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    let router = router(&config);
    let manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-creds\n  namespace: web\ntype: Opaque\ndata:\n  password: UGxhbnRlZFNlY3JldDE=\nstringData:\n  api-token: planted-secret-2\n";
    let log = "2026-11-22T10:00:00Z GET /api/orders 401\nrequest headers: Authorization: Bearer plantedSecret3.abcdefghij\nconnecting to postgres://app:plantedSecret4@db:5432/orders\nDB_PASSWORD=plantedSecret5\n";
    let call = ToolCall {
        id: "c1".into(),
        name: "safe_apply".into(),
        arguments: json!({"manifest": {"kind": "Secret", "data": {"key": "plantedSecret6"}}, "token": "plantedSecret7"}),
    };
    let request = ChatRequest::new(vec![
        Message::user(format!("apply this and tell me why the app fails:\n{manifest}")),
        Message::assistant_with_calls("", vec![call.clone()]),
        Message::tool_result(&call, log),
        Message::user("-----BEGIN OPENSSH PRIVATE KEY-----\nplantedSecret8\n-----END OPENSSH PRIVATE KEY-----"),
    ]);
    let response = router
        .chat("sre", request.clone(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(response.redactions >= 8, "{}", response.redactions);
    // Ollama streams NDJSON; a whole JSON answer is one line of it.
    let streamed = router
        .chat_stream("sre", request, &CancellationToken::new())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed.redactions, response.redactions);
    let wire = mock.wire();
    assert_eq!(mock.requests().len(), 2);
    for secret in [
        "UGxhbnRlZFNlY3JldDE=",
        "planted-secret-2",
        "plantedSecret3",
        "plantedSecret4",
        "plantedSecret5",
        "plantedSecret6",
        "plantedSecret7",
        "plantedSecret8",
    ] {
        assert!(!wire.contains(secret), "{secret} reached the wire:\n{wire}");
    }
    // What the model needs to help stays.
    assert!(wire.contains("db-creds"));
    assert!(wire.contains("GET /api/orders 401"));
    assert_eq!(
        router.usage().snapshot().total().redactions as usize,
        2 * response.redactions
    );
}

#[tokio::test]
async fn a_slow_backend_times_out_and_the_offline_backend_says_so() {
    let mock = Mock::start(vec![ollama_answer("too late").delay(Duration::from_secs(5))]).await;
    let mut config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    config.timeouts.total_secs = 0.3;
    config.retry.max_attempts = 1;
    let started = Instant::now();
    let response = router(&config)
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("hi")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(response.offline);
    assert!(response.text.starts_with("[offline]"));
    assert_eq!(response.backend, "offline");
    assert_eq!(response.failed_over[0].kind, "timeout");
}

#[tokio::test]
async fn cancellation_stops_a_request_and_a_stream() {
    let mock = Mock::start(vec![
        ollama_answer("late").delay(Duration::from_secs(10)),
        Reply::ndjson(&[
            json!({"model": "m", "message": {"role": "assistant", "content": "a"}, "done": false}),
            json!({"model": "m", "message": {"role": "assistant", "content": "b"}, "done": false}),
        ])
        .chunk_delay(Duration::from_secs(10)),
    ])
    .await;
    let config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    let router = router(&config);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let error = router
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("hi")]),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "cancelled");
    assert!(started.elapsed() < Duration::from_secs(3));

    let cancel = CancellationToken::new();
    let mut stream = router
        .chat_stream(
            "copilot",
            ChatRequest::new(vec![Message::user("hi")]),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::Text("a".into())
    );
    cancel.cancel();
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), "cancelled");
}

#[tokio::test]
async fn a_stream_that_never_starts_falls_back() {
    let silent = Mock::start(vec![Reply::ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "x"}, "done": true}),
    ])
    .delay(Duration::from_secs(10))])
    .await;
    let working = Mock::start(vec![Reply::ndjson(&[
        json!({"model": "m", "message": {"role": "assistant", "content": "hello"}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "prompt_eval_count": 3, "eval_count": 1}),
    ])])
    .await;
    let mut config = config(
        vec![
            (
                "a",
                backend(BackendKind::Ollama, "llama3.1:8b", &silent.url),
            ),
            (
                "b",
                backend(BackendKind::Ollama, "qwen2.5:7b", &working.url),
            ),
        ],
        &[("copilot", &["a", "b"])],
    );
    config.timeouts.first_token_secs = 0.3;
    config.retry.max_attempts = 1;
    let router = router(&config);
    let done = router
        .chat_stream(
            "copilot",
            ChatRequest::new(vec![Message::user("hi")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.text, "hello");
    assert_eq!(done.backend, "b");
    assert_eq!(done.failed_over[0].kind, "timeout");
    assert!(done.failed_over[0].message.contains("first token"));
    let rows = router.usage().snapshot().rows;
    assert_eq!(rows.iter().find(|r| r.backend == "b").unwrap().tokens_in, 3);
}

#[tokio::test]
async fn structured_output_is_repaired_with_the_validation_errors() {
    let mock = Mock::start(vec![
        ollama_answer("Sure! {\"steps\": [{\"tool\": \"safe_scale\"}]}"),
        ollama_answer("{\"steps\": [{\"tool\": \"safe_scale\", \"replicas\": 5}]}"),
    ])
    .await;
    let config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    let router = router(&config);
    let schema = json!({"type": "object", "required": ["steps"], "properties": {"steps": {"type": "array",
        "items": {"type": "object", "required": ["tool", "replicas"], "properties": {
            "tool": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0}}}}}});
    let (value, response) = router
        .structured_value(
            "planner",
            ChatRequest::new(vec![Message::user("scale web to 5")]),
            ResponseSchema {
                name: "plan".into(),
                schema,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(value["steps"][0]["replicas"], 5);
    assert_eq!(
        (response.usage.input, response.usage.output),
        (200, 20),
        "usage covers the repair"
    );
    let repair = mock.requests()[1].json();
    let messages = repair["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(
        last.contains("does not match the required JSON Schema"),
        "{last}"
    );
    assert!(
        last.contains("/steps/0") && last.contains("replicas"),
        "{last}"
    );
    assert_eq!(messages[messages.len() - 2]["role"], "assistant");
}

#[tokio::test]
async fn structured_output_gives_up_after_the_allowed_repairs() {
    let mock = Mock::start(vec![
        ollama_answer("I think you should scale it."),
        ollama_answer("{\"wrong\": true}"),
        ollama_answer("still no"),
    ])
    .await;
    let mut config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    config.max_repairs = 2;
    let error = router(&config)
        .structured_value(
            "planner",
            ChatRequest::new(vec![Message::user("plan")]),
            ResponseSchema {
                name: "plan".into(),
                schema: json!({"type": "object", "required": ["steps"]}),
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    // The route ends with the offline backend, which has no model for structured output.
    let deckhand_llm::Error::AllFailed { attempts, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(attempts[0].kind, "schema_invalid");
    assert!(
        attempts[0].message.contains("3 attempt(s)"),
        "{}",
        attempts[0].message
    );
    assert_eq!(attempts[1].kind, "offline");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn a_prompt_too_big_for_a_model_goes_to_one_with_a_bigger_window() {
    let small = Mock::start(vec![]).await;
    let big = Mock::start(vec![ollama_answer("read it all")]).await;
    let mut small_backend = backend(BackendKind::Ollama, "llama3.1:8b", &small.url);
    small_backend.context_window = Some(2048);
    let mut big_backend = backend(BackendKind::Ollama, "llama3.1:8b", &big.url);
    big_backend.context_window = Some(131_072);
    let config = config(
        vec![("small", small_backend), ("big", big_backend)],
        &[("sre", &["small", "big"])],
    );
    let log = "E1122 10:00:00 kubelet: Back-off restarting failed container\n".repeat(400);
    let response = router(&config)
        .chat(
            "sre",
            ChatRequest::new(vec![Message::user(format!("explain:\n{log}"))]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.backend, "big");
    assert_eq!(response.failed_over[0].kind, "context_too_long");
    assert!(
        small.requests().is_empty(),
        "nothing is sent to a model it cannot fit"
    );
    // The big one got the whole log, and Ollama was told its window.
    let body = big.requests()[0].json();
    assert_eq!(body["options"]["num_ctx"], 131_072);
}

#[tokio::test]
async fn long_tool_outputs_are_cut_with_a_note() {
    let mock = Mock::start(vec![ollama_answer("ok")]).await;
    let mut config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "llama3.1:8b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    config.max_tool_output_tokens = 500;
    let call = ToolCall {
        id: "c".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Pod"}),
    };
    let output: String = (0..3000).map(|i| format!("pod-{i} Running\n")).collect();
    router(&config)
        .chat(
            "sre",
            ChatRequest::new(vec![
                Message::user("pods?"),
                Message::assistant_with_calls("", vec![call.clone()]),
                Message::tool_result(&call, output),
            ])
            .with_tools(vec![safe_get()]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let sent = mock.requests()[0].json();
    let tool = sent["messages"][2]["content"].as_str().unwrap();
    assert!(tool.starts_with("pod-0 Running"));
    assert!(tool.trim_end().ends_with("pod-2999 Running"));
    assert!(tool.contains("deckhand cut"), "{tool}");
    assert!(tool.len() < 2000);
}

#[tokio::test]
async fn with_nothing_configured_agents_get_the_offline_backend() {
    let config = config(vec![], &[]);
    let router = router(&config);
    assert_eq!(router.chain("planner"), ["offline"]);
    let response = router
        .chat(
            "planner",
            ChatRequest::new(vec![Message::user("scale web to 5")]).with_tools(vec![safe_get()]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(response.offline);
    assert!(response.tool_calls.is_empty());
    let error = router
        .structured_value(
            "planner",
            ChatRequest::new(vec![Message::user("plan")]),
            ResponseSchema {
                name: "plan".into(),
                schema: json!({"type": "object"}),
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("offline backend"), "{error}");
    assert!(error.is_offline());
}

#[tokio::test]
async fn check_reports_backends_and_the_model_each_agent_uses() {
    let openai = Mock::start(vec![Reply::json(json!({"object": "list", "data": [
        {"id": "gpt-4o", "object": "model"}, {"id": "gpt-4o-mini", "object": "model"}]}))])
    .await;
    let ollama = Mock::start(vec![Reply::json(
        json!({"models": [{"name": "llama3.1:8b", "size": 4_920_753_328u64}]}),
    )])
    .await;
    let mut config = config(
        vec![
            (
                "gpt",
                backend(BackendKind::Openai, "gpt-4o", &format!("{}/v1", openai.url)),
            ),
            (
                "local",
                backend(BackendKind::Ollama, "llama3.1:8b", &ollama.url),
            ),
            (
                "claude",
                backend(
                    BackendKind::Anthropic,
                    "claude-sonnet-4-0",
                    "http://127.0.0.1:9",
                ),
            ),
        ],
        &[
            ("planner", &["claude", "gpt", "local"]),
            ("default", &["local"]),
        ],
    );
    config.backends.get_mut("claude").unwrap().api_key_env = Some("UNSET_KEY".into());
    let report = deckhand_llm::check(&config, &crate::test_env)
        .await
        .unwrap();
    let by_name = |name: &str| report.backends.iter().find(|b| b.name == name).unwrap();
    assert!(by_name("gpt").reachable, "{report}");
    assert!(by_name("gpt").detail.contains("gpt-4o listed"));
    assert!(by_name("local").reachable);
    assert!(!by_name("claude").reachable);
    assert!(by_name("claude").detail.contains("UNSET_KEY"));
    let planner = report.routes.iter().find(|r| r.agent == "planner").unwrap();
    assert_eq!(planner.uses.as_deref(), Some("gpt"));
    assert_eq!(planner.chain, ["claude", "gpt", "local", "offline"]);
    let copilot = report.routes.iter().find(|r| r.agent == "copilot").unwrap();
    assert_eq!(copilot.model.as_deref(), Some("llama3.1:8b"));
    assert!(report.has_model());
    let text = report.to_string();
    assert!(text.contains("planner   -> gpt (gpt-4o)"), "{text}");
    assert!(serde_json::to_value(&report).unwrap()["routes"].is_array());
    assert_eq!(openai.requests()[0].uri, "/v1/models");
    assert_eq!(
        openai.requests()[0].header("authorization"),
        Some("Bearer sk-test-openai-key-000000000000")
    );
}
