//! deckhand's LLM layer: chat with language models behind one trait, whatever the
//! backend, with streaming, tool calls, validated structured output, routing with
//! fallback, redaction and accounting. This crate depends on no other deckhand crate.
//!
//! The binary builds a [`Router`] from the `[llm]` table ([`LlmConfig`]) with
//! [`Router::discover`], and agents call [`Router::chat`], [`Router::chat_stream`] or
//! [`Router::structured`] with their name, so each gets its own model chain.
//! `deckhand llm check` prints [`check()`]'s [`CheckReport`]. docs/LLM.md has the details.
//!
//! ```no_run
//! use deckhand_llm::{CancellationToken, ChatRequest, LlmConfig, Message, Router};
//!
//! # async fn run() -> deckhand_llm::Result<()> {
//! let config = LlmConfig::default(); // the [llm] table of deckhand.toml
//! let env = |name: &str| std::env::var(name).ok();
//! let router = Router::discover(&config, &env).await?;
//! let answer = router
//!     .chat(
//!         "copilot",
//!         ChatRequest::new(vec![Message::user("Why is my pod in CrashLoopBackOff?")]),
//!         &CancellationToken::new(),
//!     )
//!     .await?;
//! if answer.offline {
//!     // No model: take the rule-based path.
//! }
//! println!("{}", deckhand_llm::check(&config, &env).await?);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`message`]: chat messages, roles and tool calls, in the shape every backend maps from.
//! - [`chat`]: a request, its answer, and a streamed answer's events.
//! - [`backend`]: the [`Backend`] trait each provider implements.
//! - [`error`]: the classified [`Error`] (retry? fall back? stop?).
//! - [`offline`]: the backend with no model, so deckhand works on a fresh machine.
//! - [`providers`]: OpenAI and compatible servers, Azure OpenAI, Ollama, Anthropic, Gemini.
//! - [`router`]: routing, fallback, retries, deadlines, cancellation, structured output.
//! - [`config`]: the `[llm]` table and discovery from environment variables, and the
//!   embedding model's configuration.
//! - [`embeddings`]: vectors from a configured embedding model (Ollama or an
//!   OpenAI-compatible server), for knowledge search by meaning.
//! - [`check`](mod@check): which backends answer and which model each agent uses.
//! - [`extract`]: JSON and tool calls found in a model's prose.
//! - [`prompt`]: tools and schemas described in the prompt for backends without them.
//! - [`redact`]: secrets removed before anything leaves.
//! - [`tokens`]: token counts per model (exact for OpenAI's tokenizers, estimated
//!   elsewhere), context windows, fitting a conversation into one.
//! - [`usage`]: every call's tokens, latency, error and cost, per backend, model, agent
//!   and thread; metrics, and sinks that store the records.
//! - `unavailable` (private): a configured backend missing its key.
//! - `http` (private): sending, HTTP error classification, line and SSE readers.

pub mod backend;
pub mod chat;
pub mod check;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod extract;
mod http;
pub mod message;
pub mod offline;
pub mod prompt;
pub mod providers;
pub mod redact;
pub mod router;
pub mod tokens;
mod unavailable;
pub mod usage;

pub use backend::{Backend, BoxFuture, Capabilities};
pub use chat::{
    ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseSchema, StreamEvent, TokenUsage,
    ToolDefinition,
};
pub use check::{check, check_router, CheckReport};
pub use config::{BackendConfig, BackendKind, EmbeddingConfig, EmbeddingProvider, LlmConfig};
pub use embeddings::Embedder;
pub use error::{Error, FailedAttempt, Result, TimeoutPhase};
pub use message::{Message, Role, ToolCall};
pub use offline::Offline;
pub use redact::Redactor;
pub use router::{Discovery, Router, Structured};
pub use tokens::{ContextFit, Counter};
pub use tokio_util::sync::CancellationToken;
pub use usage::{sink_fn, Purpose, Usage, UsageRecord, UsageSink, UsageSnapshot};
