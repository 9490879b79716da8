//! Every provider against a local server that speaks its wire format: the requests we
//! send are asserted field by field, and realistic answers are replayed, including
//! streams, tool calls, refusals, rate limits, server errors, cut-off streams and
//! malformed JSON. The router's behaviour (fallback, retries, deadlines, cancellation,
//! structured output, redaction, accounting) is tested through the same servers.

// The helpers in mock.rs are not #[test] functions; a panic there is a failure report too.
#![allow(clippy::unwrap_used)]

mod mock;

mod anthropic;
mod context;
mod discovery;
mod embeddings;
mod gemini;
mod ollama;
mod openai;
mod router;

use deckhand_llm::{BackendConfig, BackendKind, LlmConfig, Router};
use std::collections::BTreeMap;

/// The API keys the tests' environment holds.
pub fn test_env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-test-openai-key-000000000000".into()),
        "ANTHROPIC_API_KEY" => Some("anthropic-test-key".into()),
        "GEMINI_API_KEY" => Some("gemini-test-key".into()),
        "AZURE_OPENAI_API_KEY" => Some("azure-test-key".into()),
        _ => None,
    }
}

/// A configuration with short retries and deadlines, no discovery, and these backends.
pub fn config(backends: Vec<(&str, BackendConfig)>, routes: &[(&str, &[&str])]) -> LlmConfig {
    let mut config = LlmConfig {
        discover: false,
        ..LlmConfig::default()
    };
    config.retry.initial_backoff_secs = 0.01;
    config.retry.max_backoff_secs = 0.05;
    config.timeouts.total_secs = 10.0;
    config.timeouts.first_token_secs = 10.0;
    config.backends = backends
        .into_iter()
        .map(|(name, backend)| (name.to_owned(), backend))
        .collect::<BTreeMap<_, _>>();
    for (route, chain) in routes {
        config.routes.insert(
            (*route).to_owned(),
            chain.iter().map(|s| (*s).to_owned()).collect(),
        );
    }
    config
}

/// A router for `config` with the tests' keys.
pub fn router(config: &LlmConfig) -> Router {
    Router::from_config(config, &test_env).unwrap()
}

/// A backend configuration of `kind` at `url`.
pub fn backend(kind: BackendKind, model: &str, url: &str) -> BackendConfig {
    BackendConfig::new(kind, model).with_base_url(url)
}

/// The tool the tests offer.
pub fn safe_get() -> deckhand_llm::ToolDefinition {
    deckhand_llm::ToolDefinition {
        name: "safe_get".into(),
        description: "Reads Kubernetes objects.".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"kind": {"type": "string"}, "namespace": {"type": "string"}},
            "required": ["kind"],
        }),
    }
}
