//! Ollama's native `/api/chat`.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router, safe_get};
use deckhand_llm::providers::Ollama;
use deckhand_llm::{
    Backend, BackendKind, CancellationToken, ChatRequest, FinishReason, Message, StreamEvent,
};
use serde_json::json;

fn ollama(url: &str) -> Ollama {
    Ollama::new("local", url, "qwen2.5-coder:1.5b", reqwest::Client::new())
        .with_context_window(8192)
}

#[tokio::test]
async fn chat_with_tools_sends_objects_and_reads_whole_calls() {
    let mock = Mock::start(vec![Reply::json(json!({
        "model": "qwen2.5-coder:1.5b", "created_at": "2026-11-22T10:00:00Z",
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "safe_get", "arguments": {"kind": "Deployment", "namespace": "web"}}}
        ]},
        "done_reason": "stop", "done": true, "total_duration": 4_883_583_458u64,
        "prompt_eval_count": 120, "eval_count": 31,
    }))])
    .await;
    let earlier = deckhand_llm::ToolCall {
        id: "call_0".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Pod"}),
    };
    let request = ChatRequest::new(vec![
        Message::user("scale web"),
        Message::assistant_with_calls("", vec![earlier.clone()]),
        Message::tool_result(&earlier, "{\"items\": []}"),
    ])
    .with_tools(vec![safe_get()])
    .with_temperature(0.0)
    .with_max_tokens(256);
    let response = ollama(&mock.url).chat(&request).await.unwrap();
    assert_eq!(response.tool_calls[0].name, "safe_get");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"kind": "Deployment", "namespace": "web"})
    );
    assert_eq!(response.finish, FinishReason::ToolCalls);
    assert_eq!((response.usage.input, response.usage.output), (120, 31));

    let sent = &mock.requests()[0];
    assert_eq!(sent.uri, "/api/chat");
    let body = sent.json();
    assert_eq!(body["model"], "qwen2.5-coder:1.5b");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["options"],
        json!({"temperature": 0.0, "num_predict": 256, "num_ctx": 8192})
    );
    assert_eq!(
        body["messages"][1]["tool_calls"],
        json!([{"function": {"name": "safe_get", "arguments": {"kind": "Pod"}}}])
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "tool", "content": "{\"items\": []}", "tool_name": "safe_get"})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "safe_get");
}

#[tokio::test]
async fn streams_ndjson_until_done() {
    let line = |content: &str| {
        json!({"model": "qwen2.5-coder:1.5b", "created_at": "t",
        "message": {"role": "assistant", "content": content}, "done": false})
    };
    let mock = Mock::start(vec![Reply::ndjson(&[
        line("The pod "),
        line("ran out of memory."),
        json!({"model": "qwen2.5-coder:1.5b", "created_at": "t", "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "stop", "prompt_eval_count": 30, "eval_count": 9}),
    ])])
    .await;
    let mut stream = ollama(&mock.url)
        .chat_stream(&ChatRequest::new(vec![Message::user("why?")]))
        .await
        .unwrap();
    let mut texts = Vec::new();
    let done = loop {
        match stream.next().await.unwrap().unwrap() {
            StreamEvent::Text(text) => texts.push(text),
            StreamEvent::Done(done) => break done,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(texts, ["The pod ", "ran out of memory."]);
    assert_eq!(done.text, "The pod ran out of memory.");
    assert_eq!((done.usage.input, done.usage.output), (30, 9));
    assert_eq!(mock.requests()[0].json()["stream"], true);
}

#[tokio::test]
async fn errors_in_the_body_the_status_and_a_cut_stream() {
    let mock = Mock::start(vec![
        Reply::status(404, r#"{"error":"model \"qwen2.5-coder:1.5b\" not found, try pulling it first"}"#),
        Reply::ndjson(&[json!({"model": "m", "message": {"role": "assistant", "content": "par"}, "done": false}),
            json!({"error": "an unknown error was encountered while running the model"})]),
        Reply::ndjson(&[json!({"model": "m", "message": {"role": "assistant", "content": "par"}, "done": false})]),
        Reply::status(200, "{\"model\": \"m\", \"message\": ").header("content-type", "application/json"),
    ])
    .await;
    let backend = ollama(&mock.url);
    let request = ChatRequest::new(vec![Message::user("x")]);
    let error = backend.chat(&request).await.unwrap_err();
    assert_eq!(error.kind(), "bad_request");
    assert!(
        error.to_string().contains("try pulling it first"),
        "{error}"
    );
    for expected in ["unknown error", "ended before"] {
        let mut stream = backend.chat_stream(&request).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            StreamEvent::Text("par".into())
        );
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert_eq!(
        backend.chat(&request).await.unwrap_err().kind(),
        "bad_response"
    );
}

#[tokio::test]
async fn structured_output_sends_the_schema_as_format() {
    let mock = Mock::start(vec![Reply::json(json!({
        "model": "m", "message": {"role": "assistant", "content": "{\"replicas\": 3}"},
        "done": true, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 5,
    }))])
    .await;
    let config = config(
        vec![(
            "local",
            backend(BackendKind::Ollama, "qwen2.5-coder:1.5b", &mock.url),
        )],
        &[("default", &["local"])],
    );
    let schema = json!({"type": "object", "properties": {"replicas": {"type": "integer"}}, "required": ["replicas"]});
    let (value, _) = router(&config)
        .structured_value(
            "planner",
            ChatRequest::new(vec![Message::user("how many?")]),
            deckhand_llm::ResponseSchema {
                name: "scale".into(),
                schema: schema.clone(),
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"replicas": 3}));
    assert_eq!(mock.requests()[0].json()["format"], schema);
}
