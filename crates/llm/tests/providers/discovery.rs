//! `Router::discover`'s Ollama probe against a local server speaking Ollama's
//! `/api/tags` and `/api/chat`: with `OLLAMA_HOST` pointing at it and nothing else
//! configured, Ollama is chosen (with a model it has pulled); with no Ollama answering,
//! every agent gets the offline backend; a server that never answers holds discovery no
//! longer than the probe's deadline.

use crate::mock::{Mock, Reply};
use deckhand_llm::{CancellationToken, ChatRequest, Discovery, LlmConfig, Message, Router};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

/// An address where nothing listens: bound, then released.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// Discovery pointed away from any real Ollama on this machine.
fn nowhere(url: String) -> Discovery {
    Discovery {
        ollama_url: url,
        ..Discovery::default()
    }
}

#[tokio::test]
async fn ollama_host_alone_chooses_ollama_with_a_model_it_has_pulled() {
    let ollama = Mock::start(vec![
        Reply::json(json!({"models": [
            {"name": "qwen2.5-coder:1.5b", "model": "qwen2.5-coder:1.5b", "size": 986_061_892u64,
             "details": {"family": "qwen2", "parameter_size": "1.5B", "quantization_level": "Q4_K_M"}}
        ]})),
        Reply::json(json!({"model": "qwen2.5-coder:1.5b", "created_at": "2026-11-25T10:00:00Z",
            "message": {"role": "assistant", "content": "Pods restart when their liveness probe fails."},
            "done": true, "done_reason": "stop", "prompt_eval_count": 31, "eval_count": 9})),
    ])
    .await;
    // OLLAMA_HOST as people set it: host:port, no scheme.
    let host = ollama.url.trim_start_matches("http://").to_owned();
    let env = env_of(&[("OLLAMA_HOST", &host)]);
    let default_port = closed_port().await;
    let router = Router::discover_with(&LlmConfig::default(), &env, &nowhere(default_port))
        .await
        .unwrap();
    assert_eq!(router.chain("planner"), ["ollama", "offline"]);
    let chosen = router.backends().find(|b| b.name() == "ollama").unwrap();
    assert_eq!(chosen.kind(), "ollama");
    assert_eq!(
        chosen.model(),
        "qwen2.5-coder:1.5b",
        "llama3.1:8b is not pulled there; the model it has is used"
    );
    assert!(
        router
            .notes()
            .iter()
            .any(|n| n.contains("has not pulled llama3.1:8b")),
        "{:?}",
        router.notes()
    );

    let answer = router
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("why do pods restart?")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!answer.offline);
    assert_eq!(answer.backend, "ollama");
    assert_eq!(answer.text, "Pods restart when their liveness probe fails.");
    let requests = ollama.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].uri.as_str()),
        ("GET", "/api/tags")
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].uri.as_str()),
        ("POST", "/api/chat")
    );
    assert_eq!(requests[1].json()["model"], "qwen2.5-coder:1.5b");
}

#[tokio::test]
async fn ollama_model_names_the_model_and_an_answering_default_port_is_found() {
    // Nothing in the environment but OLLAMA_MODEL: the Ollama at the default URL is
    // probed, found, and used with that model.
    let ollama = Mock::start(vec![Reply::json(
        json!({"models": [{"name": "llama3.1:8b"}, {"name": "mistral:7b"}]}),
    )])
    .await;
    let env = env_of(&[("OLLAMA_MODEL", "mistral:7b")]);
    let router = Router::discover_with(&LlmConfig::default(), &env, &nowhere(ollama.url.clone()))
        .await
        .unwrap();
    assert_eq!(router.chain("sre"), ["ollama", "offline"]);
    let chosen = router.backends().find(|b| b.name() == "ollama").unwrap();
    assert_eq!(chosen.model(), "mistral:7b");
}

#[tokio::test]
async fn with_no_ollama_answering_every_agent_is_offline() {
    let env = env_of(&[]);
    let router = Router::discover_with(&LlmConfig::default(), &env, &nowhere(closed_port().await))
        .await
        .unwrap();
    for agent in ["planner", "copilot", "sre"] {
        assert_eq!(router.chain(agent), ["offline"]);
    }
    assert!(
        router
            .notes()
            .iter()
            .any(|n| n.contains("every agent uses the offline backend")),
        "{:?}",
        router.notes()
    );
    let answer = router
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("hello")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(answer.offline);

    // OLLAMA_HOST naming a server that is not there: the backend stays (it may come up
    // later), discovery says it does not answer, and answers come from the offline
    // backend meanwhile.
    let host = closed_port().await;
    let env = env_of(&[("OLLAMA_HOST", &host)]);
    let mut config = LlmConfig::default();
    config.retry.max_attempts = 1;
    let router = Router::discover_with(&config, &env, &nowhere(closed_port().await))
        .await
        .unwrap();
    assert!(
        router
            .notes()
            .iter()
            .any(|n| n.contains("does not answer now")),
        "{:?}",
        router.notes()
    );
    let answer = router
        .chat(
            "copilot",
            ChatRequest::new(vec![Message::user("hello")]),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(answer.offline);
    assert_eq!(answer.failed_over[0].backend, "ollama");
    assert_eq!(answer.failed_over[0].kind, "connect");
}

#[tokio::test]
async fn a_server_that_never_answers_holds_discovery_no_longer_than_the_probe() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let discovery = Discovery {
        ollama_url: format!("http://{address}"),
        probe_timeout: Duration::from_millis(300),
    };
    let env = env_of(&[]);
    // The outer deadline only keeps a broken probe from hanging the test run; what is
    // asserted is the outcome: discovery gave up on the silent server by itself.
    let router = tokio::time::timeout(
        Duration::from_secs(60),
        Router::discover_with(&LlmConfig::default(), &env, &discovery),
    )
    .await
    .expect("discovery waited on a silent server past its probe deadline")
    .unwrap();
    assert_eq!(router.chain("planner"), ["offline"]);
    assert!(
        router
            .notes()
            .iter()
            .any(|n| n.contains(&format!("no Ollama at http://{address}")) && n.contains("300ms")),
        "{:?}",
        router.notes()
    );
    held.abort();
}
