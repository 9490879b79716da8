//! OpenAI's chat completions, an OpenAI-compatible server, and Azure OpenAI.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router, safe_get};
use deckhand_llm::providers::openai::{Credential, Flavor, OpenAi};
use deckhand_llm::{
    Backend, BackendKind, CancellationToken, ChatRequest, FinishReason, Message, StreamEvent,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn openai(url: &str) -> OpenAi {
    OpenAi::new(
        "gpt",
        format!("{url}/v1"),
        "gpt-4o-mini",
        Flavor::OpenAi,
        Credential::Bearer("sk-test".into()),
        reqwest::Client::new(),
    )
}

fn completion(message: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 52, "completion_tokens": 17, "total_tokens": 69},
    })
}

#[tokio::test]
async fn chat_with_a_tool_call_sends_and_reads_the_wire_format() {
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "safe_get", "arguments": "{\"kind\":\"Pod\",\"namespace\":\"web\"}"}}
        ]}),
        "tool_calls",
    ))])
    .await;
    let earlier = deckhand_llm::ToolCall {
        id: "call_0".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Node"}),
    };
    let request = ChatRequest::new(vec![
        Message::system("You are deckhand."),
        Message::user("Why is web failing?"),
        Message::assistant_with_calls("", vec![earlier.clone()]),
        Message::tool_result(&earlier, "[]"),
    ])
    .with_tools(vec![safe_get()])
    .with_temperature(0.2)
    .with_max_tokens(300);
    let response = openai(&mock.url).chat(&request).await.unwrap();
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].id, "call_abc");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"kind": "Pod", "namespace": "web"})
    );
    assert_eq!(response.finish, FinishReason::ToolCalls);
    assert_eq!((response.usage.input, response.usage.output), (52, 17));
    assert_eq!(response.model, "gpt-4o-mini-2024-07-18");

    let sent = &mock.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.uri, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let body = sent.json();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_completion_tokens"], 300);
    assert!(body.get("max_tokens").is_none());
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are deckhand."})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "safe_get", "arguments": "{\"kind\":\"Node\"}"}}]})
    );
    assert_eq!(
        body["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_0", "content": "[]"})
    );
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "safe_get");
    assert_eq!(
        body["tools"][0]["function"]["parameters"],
        safe_get().parameters
    );
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn streams_text_and_tool_call_deltas_then_usage() {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        (
            None,
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let events = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Checking "}), None),
        chunk(json!({"content": "pods."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "safe_get", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"kind\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Pod\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        (
            None,
            json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}}),
        ),
    ];
    let mut reply = Reply::sse(&events);
    reply.chunks.push("data: [DONE]\n\n".into());
    // One event split across two network chunks must still parse.
    let split = reply.chunks.remove(1);
    let (a, b) = split.split_at(20);
    reply.chunks.insert(1, b.to_owned());
    reply.chunks.insert(1, a.to_owned());
    let mock = Mock::start(vec![reply]).await;
    let request = ChatRequest::new(vec![Message::user("pods?")]).with_tools(vec![safe_get()]);
    let mut stream = openai(&mock.url).chat_stream(&request).await.unwrap();
    let mut text = String::new();
    let mut deltas = 0;
    let done = loop {
        match stream.next().await.unwrap().unwrap() {
            StreamEvent::Text(t) => text.push_str(&t),
            StreamEvent::ToolCallDelta { .. } => deltas += 1,
            StreamEvent::Done(response) => break response,
        }
    };
    assert_eq!(text, "Checking pods.");
    assert_eq!(deltas, 3);
    assert_eq!(done.text, "Checking pods.");
    assert_eq!(done.tool_calls[0].arguments, json!({"kind": "Pod"}));
    assert_eq!(done.finish, FinishReason::ToolCalls);
    assert_eq!((done.usage.input, done.usage.output), (40, 12));
    let body = mock.requests()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn a_refusal_is_an_error_of_its_own() {
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
        "stop",
    ))])
    .await;
    let error = openai(&mock.url)
        .chat(&ChatRequest::new(vec![Message::user("x")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "refused");
    assert!(error.to_string().contains("I can't help with that."));
}

#[tokio::test]
async fn cut_off_and_malformed_answers_are_bad_responses() {
    let partial = Reply::sse(&[(
        None,
        json!({"choices": [{"index": 0, "delta": {"content": "Hal"}}]}),
    )]);
    let mock = Mock::start(vec![
        partial.clone(),
        partial.abort(),
        Reply::status(200, "{\"choices\": [").header("content-type", "application/json"),
    ])
    .await;
    let backend = openai(&mock.url);
    let request = ChatRequest::new(vec![Message::user("x")]);
    for expected in ["ended before", "broke off"] {
        let mut stream = backend.chat_stream(&request).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            StreamEvent::Text("Hal".into())
        );
        let error = stream.next().await.unwrap().unwrap_err();
        assert_eq!(error.kind(), "bad_response");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let error = backend.chat(&request).await.unwrap_err();
    assert_eq!(error.kind(), "bad_response");
    assert!(error.to_string().contains("not JSON"), "{error}");
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after_and_server_errors_back_off() {
    let ok = Reply::json(completion(
        json!({"role": "assistant", "content": "fine"}),
        "stop",
    ));
    let mock = Mock::start(vec![
        Reply::status(429, r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#)
            .header("retry-after", "1"),
        Reply::status(500, r#"{"error":{"message":"The server had an error","type":"server_error"}}"#),
        Reply::status(503, "upstream unavailable"),
        ok,
    ])
    .await;
    let mut config = config(
        vec![(
            "gpt",
            backend(
                BackendKind::Openai,
                "gpt-4o-mini",
                &format!("{}/v1", mock.url),
            ),
        )],
        &[("default", &["gpt"])],
    );
    config.retry.max_attempts = 4;
    let router = router(&config);
    let started = Instant::now();
    let response = router
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("hi")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(response.text, "fine");
    assert_eq!(response.backend, "gpt");
    assert!(response.failed_over.is_empty());
    assert_eq!(mock.requests().len(), 4);
    let usage = router.usage().snapshot().total();
    assert_eq!((usage.requests, usage.errors), (1, 3));
    assert_eq!(usage.errors_by_kind["rate_limited"], 1);
    assert_eq!(usage.errors_by_kind["server"], 2);
}

#[tokio::test]
async fn compatible_servers_get_max_tokens_and_no_key() {
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
    ))])
    .await;
    let config = config(
        vec![(
            "local",
            backend(
                BackendKind::OpenaiCompatible,
                "qwen",
                &format!("{}/v1", mock.url),
            ),
        )],
        &[("default", &["local"])],
    );
    router(&config)
        .chat(
            "sre",
            ChatRequest::new(vec![Message::user("hi")]).with_max_tokens(64),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let sent = &mock.requests()[0];
    assert_eq!(sent.uri, "/v1/chat/completions");
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.json()["max_tokens"], 64);
}

#[tokio::test]
async fn azure_uses_the_deployment_url_and_api_key_header() {
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
    ))])
    .await;
    let mut azure = backend(BackendKind::AzureOpenai, "gpt-4o", &mock.url);
    azure.deployment = Some("prod-gpt4o".into());
    azure.api_version = Some("2024-10-21".into());
    let config = config(vec![("azure", azure)], &[("default", &["azure"])]);
    let response = router(&config)
        .chat(
            "cloud",
            ChatRequest::new(vec![Message::user("hi")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.backend, "azure");
    let sent = &mock.requests()[0];
    assert_eq!(
        sent.uri,
        "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(sent.header("api-key"), Some("azure-test-key"));
    assert!(sent.header("authorization").is_none());
    assert!(sent.json().get("model").is_none());
}

#[tokio::test]
async fn tool_calls_written_in_a_json_fence_become_tool_calls() {
    // What small Qwen models behind llama-server answer when offered a tool.
    let text = "I'll check the pods first.\n```json\n{\"name\": \"safe_get\", \"arguments\": {\"kind\": \"Pod\", \"namespace\": \"web\"}}\n```";
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": text}),
        "stop",
    ))])
    .await;
    let config = config(
        vec![(
            "local",
            backend(
                BackendKind::OpenaiCompatible,
                "qwen",
                &format!("{}/v1", mock.url),
            ),
        )],
        &[("default", &["local"])],
    );
    let response = router(&config)
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("why is web failing?")])
                .with_tools(vec![safe_get()]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].name, "safe_get");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"kind": "Pod", "namespace": "web"})
    );
    assert_eq!(response.text, "I'll check the pods first.");
    assert_eq!(response.finish, FinishReason::ToolCalls);
}

#[tokio::test]
async fn structured_output_uses_response_format_json_schema() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Triage {
        cause: String,
        confidence: f64,
    }
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "{\"cause\":\"OOMKilled\",\"confidence\":0.8}"}),
        "stop",
    ))])
    .await;
    let config = config(
        vec![(
            "gpt",
            backend(BackendKind::Openai, "gpt-4o", &format!("{}/v1", mock.url)),
        )],
        &[("default", &["gpt"])],
    );
    let triage = router(&config)
        .structured::<Triage>(
            "sre",
            ChatRequest::new(vec![Message::user("triage")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(triage.value.cause, "OOMKilled");
    let body = mock.requests()[0].json();
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "Triage");
    assert_eq!(body["response_format"]["json_schema"]["strict"], false);
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["required"],
        json!(["cause", "confidence"])
    );
}

#[tokio::test]
async fn without_native_tools_they_are_described_in_the_prompt() {
    let mock = Mock::start(vec![Reply::json(completion(
        json!({"role": "assistant", "content": "<tool_call>\n{\"name\": \"safe_get\", \"arguments\": {\"kind\": \"Node\"}}\n</tool_call>"}),
        "stop",
    ))])
    .await;
    let mut local = backend(
        BackendKind::OpenaiCompatible,
        "smollm2",
        &format!("{}/v1", mock.url),
    );
    local.native_tools = Some(false);
    let config = config(vec![("local", local)], &[("default", &["local"])]);
    let response = router(&config)
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("nodes?")]).with_tools(vec![safe_get()]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.tool_calls[0].arguments, json!({"kind": "Node"}));
    let body = mock.requests()[0].json();
    assert!(body.get("tools").is_none());
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("- safe_get: Reads Kubernetes objects."),
        "{system}"
    );
}
