//! The embedding client against servers speaking Ollama's `/api/embed` and the
//! OpenAI-compatible `/v1/embeddings`: the exact requests, batching, answers out of
//! order, and every way an answer can be wrong.

use crate::mock::{Mock, Reply};
use deckhand_llm::{Embedder, EmbeddingConfig, EmbeddingProvider, Error};
use serde_json::json;
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

fn ollama(url: &str) -> EmbeddingConfig {
    EmbeddingConfig::new(EmbeddingProvider::Ollama, "nomic-embed-text").with_endpoint(url)
}

fn openai(url: &str) -> EmbeddingConfig {
    EmbeddingConfig::new(EmbeddingProvider::OpenaiCompatible, "bge-small-en-v1.5")
        .with_endpoint(format!("{url}/v1"))
}

#[tokio::test]
async fn ollama_embeds_a_batch_per_request_in_order_with_secrets_redacted() {
    let mock = Mock::start(vec![
        Reply::json(json!({
            "model": "nomic-embed-text",
            "embeddings": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
            "total_duration": 14_143_917u64, "load_duration": 1_019_500u64,
            "prompt_eval_count": 8,
        })),
        Reply::json(json!({"model": "nomic-embed-text", "embeddings": [[0.7, 0.8, 0.9]]})),
    ])
    .await;
    let mut config = ollama(&mock.url);
    config.batch_size = 2;
    let embedder = Embedder::new(&config, &no_env).unwrap();
    assert_eq!(embedder.model(), "nomic-embed-text");
    let vectors = embedder
        .embed(&[
            "pod crashloops",
            "leaked AKIAABCDEFGHIJKLMNOP in logs",
            "disk full",
        ])
        .await
        .unwrap();
    assert_eq!(
        vectors,
        vec![
            vec![0.1, 0.2, 0.3],
            vec![0.4, 0.5, 0.6],
            vec![0.7, 0.8, 0.9]
        ]
    );
    let sent = mock.requests();
    assert_eq!(sent.len(), 2, "three texts in batches of two");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].uri, "/api/embed");
    assert_eq!(
        sent[0].json(),
        json!({"model": "nomic-embed-text",
               "input": ["pod crashloops", "leaked [REDACTED AWS KEY ID] in logs"]})
    );
    assert_eq!(
        sent[1].json(),
        json!({"model": "nomic-embed-text", "input": ["disk full"]})
    );
    assert_eq!(sent[0].header("authorization"), None);
}

#[tokio::test]
async fn openai_compatible_sends_the_key_and_reorders_by_index() {
    let mock = Mock::start(vec![Reply::json(json!({
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
        ],
        "model": "bge-small-en-v1.5",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }))])
    .await;
    let mut config = openai(&mock.url);
    config.api_key_env = Some("EMBED_KEY".into());
    config.dimensions = Some(2);
    let env = |name: &str| (name == "EMBED_KEY").then(|| "local-key".to_owned());
    let embedder = Embedder::new(&config, &env).unwrap();
    let vectors = embedder.embed(&["first", "second"]).await.unwrap();
    assert_eq!(vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    let sent = &mock.requests()[0];
    assert_eq!(sent.uri, "/v1/embeddings");
    assert_eq!(sent.header("authorization"), Some("Bearer local-key"));
    assert_eq!(
        sent.json(),
        json!({"model": "bge-small-en-v1.5", "input": ["first", "second"],
               "encoding_format": "float"})
    );
}

/// One answer, one failure kind and a word of its message.
async fn fails(config: EmbeddingConfig, texts: &[&str], kind: &str, words: &str) {
    let embedder = Embedder::new(&config, &no_env).unwrap();
    let error = embedder.embed(texts).await.unwrap_err();
    assert_eq!(error.kind(), kind, "{error}");
    assert!(error.to_string().contains(words), "{error}");
}

#[tokio::test]
async fn wrong_answers_are_refused_with_what_was_wrong() {
    let answer = |value| async move { Mock::start(vec![Reply::json(value)]).await };
    // One vector for two texts.
    let mock = answer(json!({"embeddings": [[0.1, 0.2]]})).await;
    fails(
        ollama(&mock.url),
        &["a", "b"],
        "bad_response",
        "1 vectors for 2 texts",
    )
    .await;
    // Vectors of different lengths in one answer.
    let mock = answer(json!({"embeddings": [[0.1, 0.2], [0.3]]})).await;
    fails(
        ollama(&mock.url),
        &["a", "b"],
        "bad_response",
        "vector 1 has 1",
    )
    .await;
    // Not the configured dimension.
    let mock = answer(json!({"embeddings": [[0.1, 0.2]]})).await;
    let mut config = ollama(&mock.url);
    config.dimensions = Some(768);
    fails(config, &["a"], "bad_response", "the configuration says 768").await;
    // A number that is not one.
    let mock = answer(json!({"embeddings": [[0.1, null]]})).await;
    fails(ollama(&mock.url), &["a"], "bad_response", "api/embed").await;
    // Empty vectors.
    let mock = answer(json!({"embeddings": [[]]})).await;
    fails(ollama(&mock.url), &["a"], "bad_response", "empty vectors").await;
    // The chat answer's shape instead of an embedding answer.
    let mock = answer(json!({"choices": []})).await;
    fails(
        openai(&mock.url),
        &["a"],
        "bad_response",
        "/embeddings answer",
    )
    .await;
    // An index given twice.
    let mock = answer(json!({"data": [
        {"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}))
    .await;
    fails(openai(&mock.url), &["a", "b"], "bad_response", "indexes").await;
    // Not JSON at all.
    let mock = Mock::start(vec![Reply::status(200, "<html>proxy</html>")]).await;
    fails(ollama(&mock.url), &["a"], "bad_response", "not JSON").await;
}

#[tokio::test]
async fn batches_of_different_lengths_are_refused() {
    let mock = Mock::start(vec![
        Reply::json(json!({"embeddings": [[0.1, 0.2]]})),
        Reply::json(json!({"embeddings": [[0.1, 0.2, 0.3]]})),
    ])
    .await;
    let mut config = ollama(&mock.url);
    config.batch_size = 1;
    fails(config, &["a", "b"], "bad_response", "vectors of 2 and 3").await;
}

#[tokio::test]
async fn http_failures_are_classified() {
    // Ollama's answer for a model that is not pulled.
    let mock = Mock::start(vec![Reply::status(
        404,
        r#"{"error":"model \"nomic-embed-text\" not found, try pulling it first"}"#,
    )])
    .await;
    fails(
        ollama(&mock.url),
        &["a"],
        "bad_request",
        "try pulling it first",
    )
    .await;
    // llama-server started without --embeddings.
    let mock = Mock::start(vec![Reply::status(
        501,
        r#"{"error":{"code":501,"message":"This server does not support embeddings. Start it with `--embeddings`","type":"not_supported_error"}}"#,
    )])
    .await;
    fails(openai(&mock.url), &["a"], "server", "--embeddings").await;
    let mock = Mock::start(vec![Reply::status(401, r#"{"error":"bad key"}"#)]).await;
    fails(openai(&mock.url), &["a"], "auth", "bad key").await;
}

#[tokio::test]
async fn a_slow_or_absent_model_fails_within_the_deadline() {
    let mock = Mock::start(vec![
        Reply::json(json!({"embeddings": [[0.1]]})).delay(Duration::from_secs(5))
    ])
    .await;
    let mut config = ollama(&mock.url);
    config.timeout_secs = 0.3;
    let embedder = Embedder::new(&config, &no_env).unwrap();
    let error = embedder.embed_one("a").await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");

    // Nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let embedder = Embedder::new(&ollama(&url), &no_env).unwrap();
    let error = embedder.embed_one("a").await.unwrap_err();
    assert_eq!(error.kind(), "connect", "{error}");
}
