//! deckhand's LLM layer: the messages agents exchange with language models.
//!
//! Backends (Ollama, OpenAI and compatible servers, Azure OpenAI, Anthropic, Gemini and the
//! offline backend), streaming, tool calls, structured output and routing are built here
//! on these types; this crate depends on no other deckhand crate.
//!
//! # Layout
//! - [`message`]: chat messages and roles, in the shape every backend maps from.

pub mod message;

pub use message::{Message, Role};
