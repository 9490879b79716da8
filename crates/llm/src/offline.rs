//! The offline backend: no model at all. It answers every chat with the same plain
//! statement that it has no model, never calls a tool and never produces structured
//! output, so agents see `offline: true` and take their rule-based path. It keeps
//! `deckhand serve` working on a machine with no model configured.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{ChatRequest, ChatResponse, ChatStream, FinishReason, StreamEvent};
use crate::error::{Error, Result};

/// The prefix of every offline answer.
pub const OFFLINE_PREFIX: &str = "[offline]";

/// The model name the offline backend reports.
pub const OFFLINE_MODEL: &str = "none";

/// The offline backend.
#[derive(Debug, Clone)]
pub struct Offline {
    name: String,
}

impl Default for Offline {
    fn default() -> Self {
        Self::new("offline")
    }
}

impl Offline {
    /// An offline backend called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    fn answer(&self, request: &ChatRequest) -> Result<ChatResponse> {
        if request.response_schema.is_some() {
            return Err(Error::Offline {
                backend: self.name.clone(),
                what: "produce structured output".into(),
            });
        }
        Ok(ChatResponse {
            text: format!(
                "{OFFLINE_PREFIX} No language model is configured, so this answer does not \
                 come from a model. deckhand's agents handle the request with their \
                 rule-based path; configure a backend in the [llm] table of deckhand.toml \
                 (or set OLLAMA_HOST, OPENAI_API_KEY, ...) for model answers."
            ),
            finish: FinishReason::Stop,
            model: OFFLINE_MODEL.into(),
            backend: self.name.clone(),
            offline: true,
            ..ChatResponse::default()
        })
    }
}

impl Backend for Offline {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "offline"
    }

    fn model(&self) -> &str {
        OFFLINE_MODEL
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: false,
            native_schema: false,
            offline: true,
        }
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(async move { self.answer(request) })
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatStream>> {
        Box::pin(async move {
            let response = self.answer(request)?;
            let (sender, stream) = ChatStream::channel();
            // The buffer holds both events, so these sends never wait; a dropped stream
            // makes them fail, which is fine.
            let _ = sender.try_send(Ok(StreamEvent::Text(response.text.clone())));
            let _ = sender.try_send(Ok(StreamEvent::Done(response)));
            Ok(stream)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async { Ok("always available; no model".to_owned()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ResponseSchema;
    use crate::Message;

    #[tokio::test]
    async fn says_it_is_offline_and_is_deterministic() {
        let backend = Offline::default();
        let request = ChatRequest::new(vec![Message::user("why is my pod crashing?")]);
        let a = backend.chat(&request).await.unwrap();
        let b = backend.chat(&request).await.unwrap();
        assert!(a.offline);
        assert!(a.text.starts_with(OFFLINE_PREFIX));
        assert!(a.tool_calls.is_empty());
        assert_eq!(a, b);
        let streamed = backend
            .chat_stream(&request)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(streamed, a);
    }

    #[tokio::test]
    async fn refuses_structured_output() {
        let mut request = ChatRequest::new(vec![Message::user("plan")]);
        request.response_schema = Some(ResponseSchema {
            name: "plan".into(),
            schema: serde_json::json!({"type": "object"}),
        });
        let error = Offline::default().chat(&request).await.unwrap_err();
        assert_eq!(error.kind(), "offline");
    }
}
