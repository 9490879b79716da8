//! The [`Backend`] trait every provider implements, and what a backend can do natively.

use crate::chat::{ChatRequest, ChatResponse, ChatStream};
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;

/// The future a backend call returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend supports on the wire. Whatever it lacks, the router makes up for:
/// tools and schemas are then described in the prompt and the answer's JSON is
/// extracted from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Tools are sent as function definitions and come back as structured calls.
    pub native_tools: bool,
    /// The backend can constrain its answer to a JSON Schema.
    pub native_schema: bool,
    /// No model: the offline backend.
    pub offline: bool,
}

/// A language model behind some API. Implementations translate [`ChatRequest`] into
/// their wire format and back; retries, timeouts, redaction, accounting and fallback are
/// the router's job, done once for all of them.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The backend's name in the configuration.
    fn name(&self) -> &str;

    /// The kind of API it speaks (`openai`, `ollama`, ...).
    fn kind(&self) -> &'static str;

    /// The model it asks for.
    fn model(&self) -> &str;

    /// What it supports natively.
    fn capabilities(&self) -> Capabilities;

    /// Asks for a whole answer.
    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>>;

    /// Asks for a streamed answer. The returned stream ends with
    /// [`crate::StreamEvent::Done`] or an error.
    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatStream>>;

    /// Checks cheaply (without generating anything) that the backend answers and knows
    /// the model; returns a short description of what it found.
    fn probe(&self) -> BoxFuture<'_, Result<String>>;
}
