//! Google Gemini's generateContent and streamGenerateContent.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router, safe_get};
use deckhand_llm::providers::Gemini;
use deckhand_llm::{Backend, BackendKind, CancellationToken, ChatRequest, FinishReason, Message};
use serde_json::json;

fn gemini(url: &str) -> Gemini {
    Gemini::new(
        "gemini",
        url,
        "gemini-2.5-flash",
        "AIza-test",
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn generate_content_with_function_declarations_calls_and_responses() {
    let mock = Mock::start(vec![Reply::json(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "safe_get", "args": {"kind": "Service", "namespace": "web"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 88, "candidatesTokenCount": 12, "totalTokenCount": 100},
        "modelVersion": "gemini-2.5-flash",
    }))])
    .await;
    let earlier = deckhand_llm::ToolCall {
        id: "call_0".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Pod"}),
    };
    let request = ChatRequest::new(vec![
        Message::system("You are deckhand."),
        Message::user("web?"),
        Message::assistant_with_calls("", vec![earlier.clone()]),
        Message::tool_result(&earlier, "{\"items\": [\"web-1\"]}"),
    ])
    .with_tools(vec![safe_get()])
    .with_max_tokens(500);
    let response = gemini(&mock.url).chat(&request).await.unwrap();
    assert_eq!(response.tool_calls[0].name, "safe_get");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"kind": "Service", "namespace": "web"})
    );
    assert_eq!(response.finish, FinishReason::ToolCalls);
    assert_eq!((response.usage.input, response.usage.output), (88, 12));

    let sent = &mock.requests()[0];
    assert_eq!(sent.uri, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some("AIza-test"));
    let body = sent.json();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You are deckhand."}]})
    );
    assert_eq!(
        body["contents"][0],
        json!({"role": "user", "parts": [{"text": "web?"}]})
    );
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "safe_get", "args": {"kind": "Pod"}}}]})
    );
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "safe_get", "response": {"items": ["web-1"]}}}]})
    );
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["name"],
        "safe_get"
    );
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        safe_get().parameters
    );
    assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 500}));
}

#[tokio::test]
async fn streams_sse_chunks_and_needs_a_finish_reason() {
    let chunk = |text: &str, finish: Option<&str>| {
        let mut candidate =
            json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        (
            None,
            json!({"candidates": [candidate], "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 7, "totalTokenCount": 27}}),
        )
    };
    let mock = Mock::start(vec![
        Reply::sse(&[
            chunk("Memory ", None),
            chunk("limit too low.", Some("STOP")),
        ]),
        Reply::sse(&[chunk("Memory ", None)]),
    ])
    .await;
    let backend = gemini(&mock.url);
    let request = ChatRequest::new(vec![Message::user("why?")]);
    let done = backend
        .chat_stream(&request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.text, "Memory limit too low.");
    assert_eq!((done.usage.input, done.usage.output), (20, 7));
    assert_eq!(
        mock.requests()[0].uri,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let error = backend
        .chat_stream(&request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ended before"), "{error}");
}

#[tokio::test]
async fn blocked_prompts_are_refusals_and_429_is_rate_limiting() {
    let mock = Mock::start(vec![
        Reply::json(json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}})),
        Reply::status(429, r#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#)
            .header("retry-after", "120"),
    ])
    .await;
    let backend = gemini(&mock.url);
    let request = ChatRequest::new(vec![Message::user("x")]);
    assert_eq!(backend.chat(&request).await.unwrap_err().kind(), "refused");
    let error = backend.chat(&request).await.unwrap_err();
    assert_eq!(error.kind(), "rate_limited");
    assert_eq!(
        error.retry_after(),
        Some(std::time::Duration::from_secs(120))
    );
    assert!(error.to_string().contains("RESOURCE_EXHAUSTED"), "{error}");
}

#[tokio::test]
async fn a_long_retry_after_falls_back_instead_of_waiting() {
    let gemini_mock = Mock::start(vec![Reply::status(
        429,
        r#"{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}"#,
    )
    .header("retry-after", "3600")])
    .await;
    let ollama_mock = Mock::start(vec![Reply::json(
        json!({"model": "m", "done": true, "done_reason": "stop",
        "message": {"role": "assistant", "content": "from local"}}),
    )])
    .await;
    let config = config(
        vec![
            (
                "gemini",
                backend(BackendKind::Gemini, "gemini-2.5-flash", &gemini_mock.url),
            ),
            (
                "local",
                backend(BackendKind::Ollama, "llama3.1:8b", &ollama_mock.url),
            ),
        ],
        &[("planner", &["gemini", "local"])],
    );
    let started = std::time::Instant::now();
    let response = router(&config)
        .chat(
            "planner",
            ChatRequest::new(vec![Message::user("plan")]).with_tools(vec![safe_get()]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(response.text, "from local");
    assert_eq!(response.failed_over.len(), 1);
    assert_eq!(response.failed_over[0].kind, "rate_limited");
    assert_eq!(gemini_mock.requests().len(), 1);
}
