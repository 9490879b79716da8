//! deckhand's LLM layer: chat with language models behind one trait, whatever the
//! backend, with streaming, tool calls, validated structured output, routing with
//! fallback, redaction and accounting. This crate depends on no other deckhand crate.
//!
//! # Layout
//! - [`message`]: chat messages, roles and tool calls, in the shape every backend maps from.
//! - [`chat`]: a request, its answer, and a streamed answer's events.
//! - [`backend`]: the [`Backend`] trait each provider implements.
//! - [`error`]: the classified [`Error`] (retry? fall back? stop?).
//! - [`offline`]: the backend with no model, so deckhand works on a fresh machine.
//! - [`providers`]: OpenAI and compatible servers, Azure OpenAI, Ollama, Anthropic, Gemini.
//! - `http` (private): sending, HTTP error classification, line and SSE readers.

pub mod backend;
pub mod chat;
pub mod error;
mod http;
pub mod message;
pub mod offline;
pub mod providers;

pub use backend::{Backend, BoxFuture, Capabilities};
pub use chat::{
    ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseSchema, StreamEvent,
    TokenUsage, ToolDefinition,
};
pub use error::{Error, FailedAttempt, Result, TimeoutPhase};
pub use message::{Message, Role, ToolCall};
pub use offline::Offline;
