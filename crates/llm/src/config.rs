//! The `[llm]` table of `deckhand.toml`: backends by name, a model chain per agent,
//! timeouts, retries, redaction and structured-output repairs; and discovery of backends
//! from the usual environment variables, read through a function the caller passes so
//! nothing here touches the process environment.

use crate::error::{Error, Result};
use crate::providers::{anthropic, gemini, ollama, openai};
use crate::usage::Prices;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The agents deckhand routes for, besides `default` (used by anything without a route).
pub const AGENTS: [&str; 5] = ["planner", "copilot", "security", "sre", "cloud"];

/// The route used by agents without one of their own.
pub const DEFAULT_ROUTE: &str = "default";

/// The name of the implicit offline backend.
pub const OFFLINE_BACKEND: &str = "offline";

/// Looks up an environment variable; callers pass `|name| std::env::var(name).ok()`,
/// tests a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The API a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// api.openai.com.
    Openai,
    /// Any server with OpenAI's chat completions API (vLLM, llama-server, LM Studio,
    /// LocalAI); `base_url` is required and the key optional.
    OpenaiCompatible,
    /// Azure OpenAI: `base_url` is the resource endpoint, `deployment` the model.
    AzureOpenai,
    /// Ollama's native API.
    Ollama,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google Gemini.
    Gemini,
    /// No model: deterministic answers that say so.
    Offline,
}

impl BackendKind {
    /// The environment variable the API key is read from unless `api_key_env` says.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("OPENAI_API_KEY"),
            Self::AzureOpenai => Some("AZURE_OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Gemini => Some("GEMINI_API_KEY"),
            Self::OpenaiCompatible | Self::Ollama | Self::Offline => None,
        }
    }
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The API it speaks.
    pub kind: BackendKind,
    /// The model to ask for (for Azure, optional: the deployment decides).
    #[serde(default)]
    pub model: Option<String>,
    /// Where the API is; each kind has a default except `openai_compatible` and
    /// `azure_openai`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding the API key (the key itself never goes in the
    /// file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Azure: the deployment's name.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Azure: the `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Azure: the environment variable holding an Entra ID bearer token, used instead of
    /// an API key.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The model's context window in tokens (default: known per model family, 8192 for
    /// local models).
    #[serde(default)]
    pub context_window: Option<usize>,
    /// Prices, for cost estimates.
    #[serde(default)]
    pub prices: Option<Prices>,
    /// Whether to send tools as native function definitions (default true); false makes
    /// the router describe them in the prompt and read calls from the text.
    #[serde(default)]
    pub native_tools: Option<bool>,
    /// Whether the backend can constrain output to a JSON Schema (default true where the
    /// API has it).
    #[serde(default)]
    pub native_schema: Option<bool>,
}

impl BackendConfig {
    /// A backend of `kind` asking for `model`, everything else by default.
    pub fn new(kind: BackendKind, model: impl Into<String>) -> Self {
        Self {
            kind,
            model: Some(model.into()),
            base_url: None,
            api_key_env: None,
            deployment: None,
            api_version: None,
            token_env: None,
            context_window: None,
            prices: None,
            native_tools: None,
            native_schema: None,
        }
    }

    /// Sets the base URL.
    #[must_use]
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The model, or for Azure the deployment.
    pub fn model_name(&self) -> &str {
        match self.kind {
            BackendKind::Offline => crate::offline::OFFLINE_MODEL,
            BackendKind::AzureOpenai => self
                .deployment
                .as_deref()
                .or(self.model.as_deref())
                .unwrap_or(""),
            _ => self.model.as_deref().unwrap_or(""),
        }
    }

    /// The base URL in effect.
    pub fn endpoint(&self, env: Env<'_>) -> String {
        if let Some(url) = &self.base_url {
            return url.clone();
        }
        match self.kind {
            BackendKind::Openai => {
                env("OPENAI_BASE_URL").unwrap_or_else(|| openai::OPENAI_BASE_URL.to_owned())
            }
            BackendKind::Ollama => env("OLLAMA_HOST")
                .map(|host| ollama_url(&host))
                .unwrap_or_else(|| ollama::OLLAMA_DEFAULT_URL.to_owned()),
            BackendKind::Anthropic => anthropic::ANTHROPIC_BASE_URL.to_owned(),
            BackendKind::Gemini => gemini::GEMINI_BASE_URL.to_owned(),
            BackendKind::AzureOpenai => env("AZURE_OPENAI_ENDPOINT").unwrap_or_default(),
            BackendKind::OpenaiCompatible | BackendKind::Offline => String::new(),
        }
    }

    fn problems(&self, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let needs_model = !matches!(self.kind, BackendKind::Offline | BackendKind::AzureOpenai);
        if needs_model && self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            problems.push(format!("backend {name}: `model` is required"));
        }
        if self.kind == BackendKind::OpenaiCompatible && self.base_url.is_none() {
            problems.push(format!(
                "backend {name}: `base_url` is required for openai_compatible"
            ));
        }
        if self.kind == BackendKind::AzureOpenai && self.deployment.is_none() {
            problems.push(format!(
                "backend {name}: `deployment` is required for azure_openai"
            ));
        }
        if let Some(url) = &self.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "backend {name}: base_url {url:?} must start with http:// or https://"
                ));
            }
        }
        if self.context_window == Some(0) {
            problems.push(format!("backend {name}: context_window must be above 0"));
        }
        problems
    }
}

/// `OLLAMA_HOST` as a URL: it may be `host`, `host:port` or a URL; `0.0.0.0` (a listen
/// address) means this machine.
pub fn ollama_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let rest = rest.replacen("0.0.0.0", "127.0.0.1", 1);
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    match has_port {
        true => format!("{scheme}://{rest}"),
        false => format!("{scheme}://{rest}:11434"),
    }
}

/// Deadlines, in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect_secs: f64,
    /// From sending a streamed request to its first event (a local model loading into
    /// memory can take a while).
    pub first_token_secs: f64,
    /// The whole request, streamed or not.
    pub total_secs: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_secs: 10.0,
            first_token_secs: 120.0,
            total_secs: 600.0,
        }
    }
}

impl Timeouts {
    /// The connect timeout.
    pub fn connect(&self) -> Duration {
        secs(self.connect_secs)
    }
    /// The first-token timeout.
    pub fn first_token(&self) -> Duration {
        secs(self.first_token_secs)
    }
    /// The total timeout.
    pub fn total(&self) -> Duration {
        secs(self.total_secs)
    }
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

/// Retries of one backend before falling back to the next.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per backend, the first included.
    pub max_attempts: u32,
    /// The first backoff; each next one doubles, with jitter.
    pub initial_backoff_secs: f64,
    /// The longest backoff.
    pub max_backoff_secs: f64,
    /// A `Retry-After` longer than this falls back to the next backend instead of waiting.
    pub max_retry_after_secs: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_secs: 0.5,
            max_backoff_secs: 30.0,
            max_retry_after_secs: 60.0,
        }
    }
}

/// Redaction settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Regular expressions whose matches are redacted too (the built-in rules always apply).
    pub extra_patterns: Vec<String>,
}

/// The `[llm]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Backends by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Per agent (`planner`, `copilot`, `security`, `sre`, `cloud`) or task, and
    /// `default`: the backends to try, in order.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Whether every route ends with the offline backend, so agents fall back to their
    /// rule-based path (saying so) when every model fails.
    pub offline_fallback: bool,
    /// Whether backends are discovered from environment variables (and a local Ollama)
    /// when none are configured.
    pub discover: bool,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryConfig,
    /// Redaction.
    pub redaction: RedactionConfig,
    /// How many times a model is asked to repair structured output that breaks its schema.
    pub max_repairs: u32,
    /// Tool outputs above this many tokens are cut in the middle.
    pub max_tool_output_tokens: usize,
    /// Whether old turns that do not fit a model's window are summarised by that model
    /// (one call of at most 512 tokens) rather than only dropped; when the summary
    /// fails they are dropped with a note.
    pub summarize_history: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            backends: BTreeMap::new(),
            routes: BTreeMap::new(),
            offline_fallback: true,
            discover: true,
            timeouts: Timeouts::default(),
            retry: RetryConfig::default(),
            redaction: RedactionConfig::default(),
            max_repairs: 2,
            max_tool_output_tokens: crate::tokens::DEFAULT_MAX_TOOL_OUTPUT_TOKENS,
            summarize_history: true,
        }
    }
}

impl LlmConfig {
    /// Every problem with this configuration (empty when it is valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, backend) in &self.backends {
            problems.extend(backend.problems(name));
        }
        for (route, chain) in &self.routes {
            if chain.is_empty() {
                problems.push(format!("route {route} lists no backends"));
            }
            for name in chain {
                if !self.backends.contains_key(name) && name != OFFLINE_BACKEND {
                    problems.push(format!("route {route} names unknown backend {name}"));
                }
            }
        }
        for pattern in &self.redaction.extra_patterns {
            if let Err(error) = regex::Regex::new(pattern) {
                problems.push(format!("redaction pattern {pattern:?}: {error}"));
            }
        }
        if self.retry.max_attempts == 0 {
            problems.push("retry.max_attempts must be at least 1".into());
        }
        for (field, value) in [
            ("timeouts.connect_secs", self.timeouts.connect_secs),
            ("timeouts.first_token_secs", self.timeouts.first_token_secs),
            ("timeouts.total_secs", self.timeouts.total_secs),
            (
                "retry.initial_backoff_secs",
                self.retry.initial_backoff_secs,
            ),
            ("retry.max_backoff_secs", self.retry.max_backoff_secs),
            (
                "retry.max_retry_after_secs",
                self.retry.max_retry_after_secs,
            ),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                problems.push(format!("{field} must be a number of seconds, not {value}"));
            }
        }
        problems
    }

    /// Fails with every problem when the configuration is invalid.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        match problems.is_empty() {
            true => Ok(()),
            false => Err(Error::Config { problems }),
        }
    }

    /// Adds the backends the environment offers, when none are configured and discovery
    /// is on: `OLLAMA_HOST` (model `OLLAMA_MODEL`, default llama3.1:8b), `OPENAI_API_KEY`
    /// or `OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, and
    /// `AZURE_OPENAI_ENDPOINT` with `AZURE_OPENAI_API_KEY` and `AZURE_OPENAI_DEPLOYMENT`.
    /// Local first, then cloud, in that order, make the default route. Returns notes on
    /// what was found.
    pub fn discover_from_env(&mut self, env: Env<'_>) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.discover || !self.backends.is_empty() {
            return notes;
        }
        let model = |var: &str, default: &str| env(var).unwrap_or_else(|| default.to_owned());
        let mut found: Vec<(&str, BackendConfig)> = Vec::new();
        if let Some(host) = env("OLLAMA_HOST") {
            found.push((
                "ollama",
                BackendConfig::new(BackendKind::Ollama, model("OLLAMA_MODEL", "llama3.1:8b"))
                    .with_base_url(ollama_url(&host)),
            ));
        }
        match (env("OPENAI_API_KEY"), env("OPENAI_BASE_URL")) {
            (Some(_), _) => found.push((
                "openai",
                BackendConfig::new(BackendKind::Openai, model("OPENAI_MODEL", "gpt-4o-mini")),
            )),
            (None, Some(url)) => found.push((
                "openai_compatible",
                BackendConfig::new(
                    BackendKind::OpenaiCompatible,
                    model("OPENAI_MODEL", "default"),
                )
                .with_base_url(url),
            )),
            (None, None) => {}
        }
        if env("ANTHROPIC_API_KEY").is_some() {
            found.push((
                "anthropic",
                BackendConfig::new(
                    BackendKind::Anthropic,
                    model("ANTHROPIC_MODEL", "claude-sonnet-4-0"),
                ),
            ));
        }
        if env("GEMINI_API_KEY").is_some() {
            found.push((
                "gemini",
                BackendConfig::new(
                    BackendKind::Gemini,
                    model("GEMINI_MODEL", "gemini-2.5-flash"),
                ),
            ));
        }
        if let (Some(endpoint), true) = (
            env("AZURE_OPENAI_ENDPOINT"),
            env("AZURE_OPENAI_API_KEY").is_some() || env("AZURE_OPENAI_AD_TOKEN").is_some(),
        ) {
            match env("AZURE_OPENAI_DEPLOYMENT") {
                Some(deployment) => {
                    let mut backend = BackendConfig::new(BackendKind::AzureOpenai, deployment.clone())
                        .with_base_url(endpoint);
                    backend.deployment = Some(deployment);
                    backend.api_version = env("AZURE_OPENAI_API_VERSION");
                    if env("AZURE_OPENAI_API_KEY").is_none() {
                        backend.token_env = Some("AZURE_OPENAI_AD_TOKEN".into());
                    }
                    found.push(("azure", backend));
                }
                None => notes.push(
                    "AZURE_OPENAI_ENDPOINT is set but AZURE_OPENAI_DEPLOYMENT is not: Azure is not used".into(),
                ),
            }
        }
        if !found.is_empty() && !self.routes.contains_key(DEFAULT_ROUTE) {
            self.routes.insert(
                DEFAULT_ROUTE.into(),
                found.iter().map(|(name, _)| (*name).to_owned()).collect(),
            );
        }
        for (name, backend) in found {
            notes.push(format!(
                "backend {name} ({}, {}) from the environment",
                kind_name(backend.kind),
                backend.model_name()
            ));
            self.backends.insert(name.to_owned(), backend);
        }
        notes
    }
}

/// The configuration name of a kind.
pub fn kind_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Openai => "openai",
        BackendKind::OpenaiCompatible => "openai_compatible",
        BackendKind::AzureOpenai => "azure_openai",
        BackendKind::Ollama => "ollama",
        BackendKind::Anthropic => "anthropic",
        BackendKind::Gemini => "gemini",
        BackendKind::Offline => "offline",
    }
}

/// The API an embedding model is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingProvider {
    /// Ollama's `POST {endpoint}/api/embed`.
    Ollama,
    /// OpenAI's `POST {endpoint}/embeddings` (llama-server with `--embeddings`, vLLM, LM
    /// Studio, OpenAI itself); the endpoint includes the `/v1`.
    OpenaiCompatible,
}

/// An embedding model: what turns knowledge entries and queries into vectors, so a
/// search can find a paraphrase that shares no word with what was stored
/// (`[knowledge.embeddings]` in `deckhand.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// The API it speaks.
    pub provider: EmbeddingProvider,
    /// Where it is: for Ollama default `OLLAMA_HOST` or `http://127.0.0.1:11434`; for
    /// `openai_compatible` required, with the `/v1` (`http://127.0.0.1:8081/v1`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The model (`nomic-embed-text`, `all-minilm`, ...). Stored with every vector: a
    /// vector is only ever compared with vectors of the same model.
    pub model: String,
    /// The environment variable holding an API key, sent as a bearer token (none by
    /// default: local servers need none).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The whole request's deadline, in seconds (a model loading into memory is slow).
    #[serde(default = "default_embedding_timeout")]
    pub timeout_secs: f64,
    /// The length every vector must have; `None` takes whatever the model returns, as
    /// long as every vector of an answer has the same length.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Texts sent per request.
    #[serde(default = "default_embedding_batch")]
    pub batch_size: usize,
}

/// The default deadline of one embedding request, in seconds.
pub const DEFAULT_EMBEDDING_TIMEOUT_SECS: f64 = 10.0;
/// The default number of texts per embedding request.
pub const DEFAULT_EMBEDDING_BATCH: usize = 32;

fn default_embedding_timeout() -> f64 {
    DEFAULT_EMBEDDING_TIMEOUT_SECS
}

fn default_embedding_batch() -> usize {
    DEFAULT_EMBEDDING_BATCH
}

impl EmbeddingConfig {
    /// `model` served by `provider`, everything else by default.
    pub fn new(provider: EmbeddingProvider, model: impl Into<String>) -> Self {
        Self {
            provider,
            endpoint: None,
            model: model.into(),
            api_key_env: None,
            timeout_secs: DEFAULT_EMBEDDING_TIMEOUT_SECS,
            dimensions: None,
            batch_size: DEFAULT_EMBEDDING_BATCH,
        }
    }

    /// Sets the endpoint.
    #[must_use]
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The endpoint in effect (without a trailing slash).
    pub fn endpoint(&self, env: Env<'_>) -> String {
        let url = match (&self.endpoint, self.provider) {
            (Some(url), _) => url.clone(),
            (None, EmbeddingProvider::Ollama) => env("OLLAMA_HOST")
                .map(|host| ollama_url(&host))
                .unwrap_or_else(|| ollama::OLLAMA_DEFAULT_URL.to_owned()),
            (None, EmbeddingProvider::OpenaiCompatible) => String::new(),
        };
        url.trim_end_matches('/').to_owned()
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        secs(self.timeout_secs)
    }

    /// Every problem with this configuration (empty when it is usable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.model.trim().is_empty() {
            problems.push("embeddings: `model` is required".to_owned());
        }
        match &self.endpoint {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(format!(
                    "embeddings: endpoint {url:?} must start with http:// or https://"
                ));
            }
            None if self.provider == EmbeddingProvider::OpenaiCompatible => problems.push(
                "embeddings: `endpoint` is required for openai_compatible (with the /v1)"
                    .to_owned(),
            ),
            _ => {}
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            problems.push(format!(
                "embeddings: timeout_secs must be above 0, not {}",
                self.timeout_secs
            ));
        }
        if self.dimensions == Some(0) {
            problems.push("embeddings: dimensions must be above 0".to_owned());
        }
        if self.batch_size == 0 {
            problems.push("embeddings: batch_size must be above 0".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_the_llm_table_and_rejects_unknown_fields() {
        let config: LlmConfig = serde_json::from_value(serde_json::json!({
            "backends": {
                "local": {"kind": "ollama", "model": "qwen2.5-coder:1.5b", "context_window": 4096},
                "gpt": {"kind": "openai", "model": "gpt-4o", "prices": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}},
            },
            "routes": {"planner": ["gpt", "local"], "default": ["local"]},
            "timeouts": {"total_secs": 60.0},
        }))
        .unwrap();
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        assert_eq!(config.timeouts.connect_secs, 10.0);
        assert!(config.offline_fallback);
        let unknown = serde_json::from_value::<LlmConfig>(serde_json::json!({"backend": {}}));
        assert!(unknown.is_err());
        let unknown = serde_json::from_value::<LlmConfig>(
            serde_json::json!({"backends": {"x": {"kind": "ollama", "model": "m", "modle": "n"}}}),
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn reports_every_problem() {
        let config: LlmConfig = serde_json::from_value(serde_json::json!({
            "backends": {
                "a": {"kind": "openai_compatible", "model": "m"},
                "b": {"kind": "azure_openai", "base_url": "ftp://x"},
            },
            "routes": {"planner": ["a", "nope"], "sre": []},
            "redaction": {"extra_patterns": ["("]},
        }))
        .unwrap();
        let problems = config.problems();
        assert_eq!(problems.len(), 6, "{problems:#?}");
    }

    #[test]
    fn discovers_backends_from_the_environment_local_first() {
        let env = env_of(&[
            ("OPENAI_API_KEY", "sk-x"),
            ("OLLAMA_HOST", "0.0.0.0"),
            ("ANTHROPIC_API_KEY", "k"),
            ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
            ("AZURE_OPENAI_API_KEY", "k"),
        ]);
        let mut config = LlmConfig::default();
        let notes = config.discover_from_env(&env);
        assert_eq!(
            config.routes[DEFAULT_ROUTE],
            ["ollama", "openai", "anthropic"]
        );
        assert_eq!(
            config.backends["ollama"].base_url.as_deref(),
            Some("http://127.0.0.1:11434")
        );
        assert!(notes.iter().any(|n| n.contains("AZURE_OPENAI_DEPLOYMENT")));

        let mut configured = LlmConfig::default();
        configured
            .backends
            .insert("x".into(), BackendConfig::new(BackendKind::Offline, "none"));
        assert!(configured.discover_from_env(&env).is_empty());
        assert_eq!(configured.backends.len(), 1);
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(ollama_url("localhost"), "http://localhost:11434");
        assert_eq!(ollama_url("10.0.0.5:8080"), "http://10.0.0.5:8080");
        assert_eq!(
            ollama_url("https://ollama.example/"),
            "https://ollama.example:11434"
        );
        assert_eq!(ollama_url("http://[::1]:11434"), "http://[::1]:11434");
    }
}
