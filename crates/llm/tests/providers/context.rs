//! Fitting a conversation into a small window against a server speaking OpenAI's
//! chat-completions wire format: old turns summarised by the model (the summarisation
//! request and the final request asserted field by field), dropped with a note when the
//! summary fails or is turned off, repairs of structured output kept inside the window,
//! and every call's usage attributed to its thread.

use crate::mock::{Mock, Reply};
use crate::{backend, config, router};
use deckhand_llm::{
    sink_fn, BackendKind, CancellationToken, ChatRequest, Counter, Message, Purpose,
    ResponseSchema, Role, UsageRecord,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn completion(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    Reply::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "small-local",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
}

/// A long conversation: the system prompt, ten turns of about 230 estimated tokens each
/// (a tool call and its result among them), and the question.
fn long_conversation() -> Vec<Message> {
    let call = deckhand_llm::ToolCall {
        id: "call_1".into(),
        name: "kube_get".into(),
        arguments: json!({"kind": "Deployment", "name": "web"}),
    };
    let mut messages = vec![Message::system("You are deckhand.")];
    for turn in 0..10 {
        let filler = format!("turn-{turn} ").repeat(80);
        messages.push(match turn {
            4 => Message::assistant_with_calls(filler, vec![call.clone()]),
            5 => Message::tool_result(&call, filler),
            turn if turn % 2 == 0 => Message::user(filler),
            _ => Message::assistant(filler),
        });
    }
    messages.push(Message::user("So what should I do about web now?"));
    messages
}

/// A router with one OpenAI-compatible backend of a 2048-token window at `url`, and
/// every usage record collected.
fn small_window(
    url: &str,
    summarize: bool,
) -> (deckhand_llm::Router, Arc<Mutex<Vec<UsageRecord>>>) {
    let mut local = backend(
        BackendKind::OpenaiCompatible,
        "small-local",
        &format!("{url}/v1"),
    );
    local.context_window = Some(2048);
    let mut config = config(vec![("local", local)], &[("copilot", &["local"])]);
    config.summarize_history = summarize;
    let router = router(&config);
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = records.clone();
    router
        .usage()
        .add_sink(sink_fn("test", move |record: UsageRecord| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(record);
                Ok::<(), std::convert::Infallible>(())
            }
        }));
    (router, records)
}

fn contents(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn old_turns_are_summarised_by_the_model_and_marked_as_a_summary() {
    let summary = "The person asked why web in shop was slow; kube_get showed 2 replicas of web.";
    let mock = Mock::start(vec![
        completion(summary, 1500, 40),
        completion("Scale web to 4 replicas.", 900, 12),
    ])
    .await;
    let (router, records) = small_window(&mock.url, true);
    let request = ChatRequest::new(long_conversation())
        .with_max_tokens(256)
        .with_thread("thread-7");
    let response = router
        .chat("copilot", request, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(response.text, "Scale web to 4 replicas.");
    assert_eq!(
        (response.usage.input, response.usage.output),
        (2400, 52),
        "the answer's usage includes its summary"
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "one summary call, then the request");
    // The summarisation request: its own instructions, the old turns as a transcript,
    // a bounded answer, no tools, nothing of the question.
    let asked = requests[0].json();
    assert_eq!(requests[0].uri, "/v1/chat/completions");
    assert_eq!(asked["model"], "small-local");
    assert_eq!(asked["max_tokens"], 512);
    assert_eq!(asked["temperature"], 0.0);
    assert!(asked.get("tools").is_none());
    let summary_messages = contents(&asked);
    assert_eq!(summary_messages.len(), 2);
    assert_eq!(summary_messages[0].0, "system");
    assert!(summary_messages[0]
        .1
        .starts_with("You summarise the earlier part"));
    let transcript = &summary_messages[1].1;
    assert!(transcript.contains("[person] turn-0"), "{transcript}");
    assert!(transcript.contains("[assistant calls kube_get]"));
    assert!(transcript.contains("[result of tool kube_get] turn-5"));
    assert!(!transcript.contains("So what should I do"));
    let counter = Counter::for_model("small-local");
    let summary_request = ChatRequest::new(vec![
        Message::system(summary_messages[0].1.clone()),
        Message::user(transcript.clone()),
    ]);
    assert!(
        counter.count_request(&summary_request) + 512 <= 2048,
        "the summary request fits the window too"
    );

    // The final request: the system prompt, the summary marked as one in place of the
    // old turns, the recent turns and the question.
    let sent = contents(&requests[1].json());
    assert_eq!(
        sent[0],
        ("system".to_owned(), "You are deckhand.".to_owned())
    );
    assert_eq!(sent[1].0, "system");
    assert!(
        sent[1].1.starts_with("[Summary of the ")
            && sent[1].1.contains(
                "earliest messages of this conversation, written by the model small-local"
            )
            && sent[1].1.ends_with(summary),
        "{}",
        sent[1].1
    );
    let summarised: usize = sent[1].1["[Summary of the ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sent.len(), 1 + 1 + (10 - summarised) + 1);
    assert!(sent[2..].iter().all(|(_, text)| !text.contains("turn-0 ")));
    assert!(
        sent.iter().any(|(_, text)| text.contains("turn-9 ")),
        "the latest turn stays"
    );
    assert_eq!(
        sent.last().unwrap(),
        &(
            "user".to_owned(),
            "So what should I do about web now?".to_owned()
        )
    );
    assert!(!requests[1].body.contains("[deckhand dropped"));
    // The final request fits: counted the way the router counts it.
    let fitted = ChatRequest::new(
        sent.iter()
            .map(|(role, text)| match role.as_str() {
                "system" => Message::system(text.clone()),
                "user" => Message::user(text.clone()),
                "tool" => Message::user(text.clone()),
                _ => Message::assistant(text.clone()),
            })
            .collect(),
    );
    assert!(counter.count_request(&fitted) + 256 <= 2048);

    // Both calls are in the ledger, attributed to the thread.
    let records = records.lock().unwrap();
    let purposes: Vec<(Purpose, Option<&str>, u64, bool)> = records
        .iter()
        .map(|r| (r.purpose, r.thread_id.as_deref(), r.tokens_in, r.answered))
        .collect();
    assert_eq!(
        purposes,
        [
            (Purpose::Summary, Some("thread-7"), 1500, true),
            (Purpose::Chat, Some("thread-7"), 900, true),
        ]
    );
    assert!(records
        .iter()
        .all(|r| r.agent == "copilot" && r.backend == "local"));
}

#[tokio::test]
async fn a_summary_is_asked_for_once_per_history() {
    let mock = Mock::start(vec![
        completion("Earlier: web in shop, 2 replicas.", 1500, 20),
        completion("first answer", 900, 5),
        completion("second answer", 900, 5),
    ])
    .await;
    let (router, _records) = small_window(&mock.url, true);
    for answer in ["first answer", "second answer"] {
        let response = router
            .chat(
                "copilot",
                ChatRequest::new(long_conversation()).with_max_tokens(256),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(response.text, answer);
    }
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        3,
        "one summary for two requests with the same history"
    );
    assert_eq!(contents(&requests[1].json()), contents(&requests[2].json()));
}

#[tokio::test]
async fn a_failed_summary_falls_back_to_dropping_with_a_note() {
    let mock = Mock::start(vec![
        Reply::status(
            400,
            r#"{"error": {"message": "bad things", "type": "invalid_request_error"}}"#,
        )
        .header("content-type", "application/json"),
        completion("Scale web.", 900, 3),
    ])
    .await;
    let (router, records) = small_window(&mock.url, true);
    let response = router
        .chat(
            "copilot",
            ChatRequest::new(long_conversation())
                .with_max_tokens(256)
                .with_thread("thread-8"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.text, "Scale web.");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "the summary was tried once");
    assert!(contents(&requests[0].json())[0]
        .1
        .starts_with("You summarise"));
    let sent = contents(&requests[1].json());
    assert_eq!(sent[1].0, "system");
    assert!(
        sent[1].1.starts_with("[deckhand dropped the ") && sent[1].1.contains("oldest messages"),
        "{}",
        sent[1].1
    );
    assert!(!requests[1].body.contains("[Summary of the"));
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].purpose, Purpose::Summary);
    assert_eq!(records[0].error.as_deref(), Some("bad_request"));
    assert!(!records[0].answered);
    assert_eq!(records[0].thread_id.as_deref(), Some("thread-8"));
    assert!(records[1].answered && records[1].error.is_none());
}

#[tokio::test]
async fn with_summaries_off_old_turns_are_only_dropped() {
    let mock = Mock::start(vec![completion("ok", 900, 1)]).await;
    let (router, _records) = small_window(&mock.url, false);
    router
        .chat(
            "copilot",
            ChatRequest::new(long_conversation()).with_max_tokens(256),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "no summary call");
    assert!(requests[0].body.contains("[deckhand dropped the "));
}

#[tokio::test]
async fn repairs_of_structured_output_stay_inside_the_window() {
    // Each answer is long and breaks the schema; a repair carries the latest answer
    // only, cut to the room the window leaves.
    let rambling = format!(
        "{{\"steps\": \"{}\"}}",
        "scale web because it is slow ".repeat(300)
    );
    let mock = Mock::start(vec![
        completion(&rambling, 800, 1500),
        completion(&rambling, 800, 1500),
        completion("{\"steps\": [\"scale web\"]}", 800, 10),
    ])
    .await;
    let (router, records) = small_window(&mock.url, true);
    let (value, response) = router
        .structured_value(
            "copilot",
            ChatRequest::new(vec![
                Message::system("You plan."),
                Message::user("Plan scaling web."),
            ])
            .with_max_tokens(256)
            .with_thread("thread-9"),
            ResponseSchema {
                name: "plan".into(),
                schema: json!({"type": "object", "required": ["steps"],
                    "properties": {"steps": {"type": "array", "items": {"type": "string"}}}}),
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(value["steps"][0], "scale web");
    assert_eq!(response.usage.output, 3010);
    let counter = Counter::for_model("small-local");
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    for (round, recorded) in requests.iter().enumerate() {
        let body = recorded.json();
        let sent = contents(&body);
        let messages: Vec<Message> = sent
            .iter()
            .map(|(role, text)| match role.as_str() {
                "system" => Message::system(text.clone()),
                "user" => Message::user(text.clone()),
                _ => Message::assistant(text.clone()),
            })
            .collect();
        let mut counted = ChatRequest::new(messages);
        counted.response_schema = Some(ResponseSchema {
            name: "plan".into(),
            schema: body["response_format"]["json_schema"]["schema"].clone(),
        });
        let tokens = counter.count_request(&counted);
        assert!(tokens + 256 <= 2048, "round {round}: {tokens} tokens");
        if round > 0 {
            // The prompt, then only the latest answer (cut) and its problems.
            assert_eq!(sent.len(), 4, "round {round}");
            assert_eq!(sent[2].0, "assistant");
            assert!(sent[2].1.contains("deckhand cut"), "round {round}");
            assert!(sent[3]
                .1
                .contains("does not match the required JSON Schema"));
        }
    }
    let records = records.lock().unwrap();
    let purposes: Vec<Purpose> = records.iter().map(|r| r.purpose).collect();
    assert_eq!(purposes, [Purpose::Chat, Purpose::Repair, Purpose::Repair]);
    assert!(records
        .iter()
        .all(|r| r.thread_id.as_deref() == Some("thread-9")
            && r.model == "small-local"
            && r.answered
            && r.error.is_none()));
}

#[test]
fn roles_of_the_conversation_are_what_the_tests_assume() {
    let roles: Vec<Role> = long_conversation().iter().map(|m| m.role).collect();
    assert_eq!(roles[0], Role::System);
    assert_eq!(roles[6], Role::Tool);
    assert_eq!(*roles.last().unwrap(), Role::User);
}

#[tokio::test]
async fn a_streamed_answer_and_its_summary_are_accounted_to_the_thread() {
    let chunk = |delta: Value, finish: Option<&str>| {
        (
            None,
            json!({"id": "c", "object": "chat.completion.chunk", "model": "small-local",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut stream = Reply::sse(&[
        chunk(json!({"role": "assistant", "content": "Scale "}), None),
        chunk(json!({"content": "web."}), Some("stop")),
        (
            None,
            json!({"id": "c", "object": "chat.completion.chunk", "model": "small-local", "choices": [],
            "usage": {"prompt_tokens": 800, "completion_tokens": 2, "total_tokens": 802}}),
        ),
    ]);
    stream.chunks.push("data: [DONE]\n\n".into());
    let mock = Mock::start(vec![
        completion("Earlier: web, 2 replicas.", 1400, 10),
        stream,
    ])
    .await;
    let (router, records) = small_window(&mock.url, true);
    let done = router
        .chat_stream(
            "copilot",
            ChatRequest::new(long_conversation())
                .with_max_tokens(256)
                .with_thread("thread-10"),
            &CancellationToken::new(),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.text, "Scale web.");
    assert_eq!(
        (done.usage.input, done.usage.output),
        (2200, 12),
        "the summary counts in the answer"
    );
    let requests = mock.requests();
    assert_eq!(requests[1].json()["stream"], true);
    assert!(requests[1].body.contains("[Summary of the "));
    let records = records.lock().unwrap();
    let seen: Vec<(Purpose, Option<&str>, u64)> = records
        .iter()
        .map(|r| (r.purpose, r.thread_id.as_deref(), r.tokens_in))
        .collect();
    assert_eq!(
        seen,
        [
            (Purpose::Summary, Some("thread-10"), 1400),
            (Purpose::Stream, Some("thread-10"), 800),
        ]
    );
    // The ledger's metrics count both, without the thread as a label.
    let metrics = router.usage().snapshot().prometheus();
    assert!(
        metrics.contains("deckhand_llm_requests_total{backend=\"local\",model=\"small-local\",agent=\"copilot\"} 2\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("thread-10"));
}
