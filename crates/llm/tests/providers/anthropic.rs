//! Anthropic's Messages API.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router, safe_get};
use deckhand_llm::providers::Anthropic;
use deckhand_llm::{
    Backend, BackendKind, CancellationToken, ChatRequest, FinishReason, Message, StreamEvent,
};
use serde_json::json;

fn anthropic(url: &str) -> Anthropic {
    Anthropic::new(
        "claude",
        url,
        "claude-sonnet-4-0",
        "sk-ant-test",
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn messages_with_blocks_system_and_tool_results() {
    let mock = Mock::start(vec![Reply::json(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [
            {"type": "text", "text": "Let me look at the deployment."},
            {"type": "tool_use", "id": "toolu_01", "name": "safe_get", "input": {"kind": "Deployment"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 410, "output_tokens": 58, "cache_read_input_tokens": 0},
    }))])
    .await;
    let first = deckhand_llm::ToolCall {
        id: "toolu_00".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Pod"}),
    };
    let second = deckhand_llm::ToolCall {
        id: "toolu_09".into(),
        name: "safe_get".into(),
        arguments: json!({"kind": "Node"}),
    };
    let request = ChatRequest::new(vec![
        Message::system("You are deckhand."),
        Message::user("web is down"),
        Message::assistant_with_calls("Looking.", vec![first.clone(), second.clone()]),
        Message::tool_result(&first, "pods: 0/3 ready"),
        Message::tool_result(&second, "nodes: 2 ready"),
    ])
    .with_tools(vec![safe_get()]);
    let response = anthropic(&mock.url).chat(&request).await.unwrap();
    assert_eq!(response.text, "Let me look at the deployment.");
    assert_eq!(response.tool_calls[0].id, "toolu_01");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"kind": "Deployment"})
    );
    assert_eq!(response.finish, FinishReason::ToolCalls);
    assert_eq!((response.usage.input, response.usage.output), (410, 58));

    let sent = &mock.requests()[0];
    assert_eq!(sent.uri, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    let body = sent.json();
    assert_eq!(body["system"], "You are deckhand.");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        3,
        "tool results merge into one user turn"
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_00", "name": "safe_get", "input": {"kind": "Pod"}},
            {"type": "tool_use", "id": "toolu_09", "name": "safe_get", "input": {"kind": "Node"}},
        ]})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_00", "content": "pods: 0/3 ready"},
            {"type": "tool_result", "tool_use_id": "toolu_09", "content": "nodes: 2 ready"},
        ]})
    );
    assert_eq!(
        body["tools"][0],
        json!({"name": "safe_get", "description": "Reads Kubernetes objects.", "input_schema": safe_get().parameters})
    );
}

#[tokio::test]
async fn streams_the_event_sequence_with_text_and_tool_input() {
    let events = [
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 300, "output_tokens": 1}}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (Some("ping"), json!({"type": "ping"})),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " nodes."}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_7", "name": "safe_get", "input": {}}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"kind\": \"No"}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "de\"}"}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 44}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ];
    let mock = Mock::start(vec![Reply::sse(&events)]).await;
    let request = ChatRequest::new(vec![Message::user("nodes?")]).with_tools(vec![safe_get()]);
    let done = anthropic(&mock.url)
        .chat_stream(&request)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.text, "Checking nodes.");
    assert_eq!(done.tool_calls[0].id, "toolu_7");
    assert_eq!(done.tool_calls[0].arguments, json!({"kind": "Node"}));
    assert_eq!((done.usage.input, done.usage.output), (300, 44));
    assert_eq!(done.model, "claude-sonnet-4-20250514");
    assert_eq!(mock.requests()[0].json()["stream"], true);
}

#[tokio::test]
async fn overloaded_is_retried_refusals_and_error_events_are_not() {
    let ok = json!({"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-0",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 1}});
    let mock = Mock::start(vec![
        Reply::status(529, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        Reply::json(ok),
        Reply::json(json!({"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-0",
            "content": [], "stop_reason": "refusal", "usage": {"input_tokens": 5, "output_tokens": 0}})),
        Reply::sse(&[
            (Some("message_start"), json!({"type": "message_start", "message": {"model": "claude-sonnet-4-0", "usage": {"input_tokens": 5, "output_tokens": 1}}})),
            (Some("error"), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        ]),
    ])
    .await;
    let config = config(
        vec![(
            "claude",
            backend(BackendKind::Anthropic, "claude-sonnet-4-0", &mock.url),
        )],
        &[("default", &["claude"])],
    );
    let router = router(&config);
    let request = ChatRequest::new(vec![Message::user("hi")]);
    let response = router
        .chat("planner", request.clone(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(response.text, "ok");
    assert_eq!(
        mock.requests()[1].header("x-api-key"),
        Some("anthropic-test-key")
    );

    let backend = anthropic(&mock.url);
    assert_eq!(backend.chat(&request).await.unwrap_err().kind(), "refused");
    let mut stream = backend.chat_stream(&request).await.unwrap();
    let error = loop {
        match stream.next().await.unwrap() {
            Ok(StreamEvent::Done(_)) => panic!("an error event must end the stream"),
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), "server");
    assert!(error.to_string().contains("Overloaded"), "{error}");
}

#[tokio::test]
async fn structured_output_is_prompted_and_read_from_prose() {
    let mock = Mock::start(vec![Reply::json(json!({"id": "m", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-0", "stop_reason": "end_turn", "usage": {"input_tokens": 50, "output_tokens": 20},
        "content": [{"type": "text", "text": "Here it is:\n```json\n{\"risk\": \"low\"}\n```"}]}))])
    .await;
    let config = config(
        vec![(
            "claude",
            backend(BackendKind::Anthropic, "claude-sonnet-4-0", &mock.url),
        )],
        &[("default", &["claude"])],
    );
    let schema = json!({"type": "object", "properties": {"risk": {"enum": ["low", "high"]}}, "required": ["risk"]});
    let (value, _) = router(&config)
        .structured_value(
            "security",
            ChatRequest::new(vec![Message::user("risk?")]),
            deckhand_llm::ResponseSchema {
                name: "risk".into(),
                schema,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"risk": "low"}));
    let body = mock.requests()[0].json();
    assert!(body["system"]
        .as_str()
        .unwrap()
        .contains("matches this JSON Schema"));
}
