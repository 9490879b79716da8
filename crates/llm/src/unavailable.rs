//! A configured backend that cannot be used (its API key is not set): it stays in its
//! routes and fails every call with an `auth` error saying why, so routes fall back and
//! `deckhand llm check` tells the person what to fix.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{ChatRequest, ChatResponse, ChatStream};
use crate::error::{Error, Result};

/// A backend that is configured but missing what it needs.
#[derive(Debug, Clone)]
pub struct Unavailable {
    name: String,
    kind: &'static str,
    model: String,
    reason: String,
}

impl Unavailable {
    /// Backend `name` of `kind` for `model`, unusable because of `reason`.
    pub fn new(name: &str, kind: &'static str, model: &str, reason: String) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            model: model.to_owned(),
            reason,
        }
    }

    fn error(&self) -> Error {
        Error::Auth {
            backend: self.name.clone(),
            message: self.reason.clone(),
        }
    }
}

impl Backend for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: true,
            native_schema: true,
            offline: false,
        }
    }

    fn chat<'a>(&'a self, _request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn chat_stream<'a>(&'a self, _request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatStream>> {
        Box::pin(async move { Err(self.error()) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { Err(self.error()) })
    }
}
