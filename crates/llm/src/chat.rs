//! A chat request and its answer, whole or streamed, in the shape every backend maps to
//! and from.

use crate::error::{Error, Result};
use crate::message::ToolCall;
use crate::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A tool as the model sees it: the same fields as the tool registry's
/// `FunctionDefinition` (name, description, JSON Schema of the arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// A JSON Schema the answer must match (structured output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseSchema {
    /// A short name for the schema (OpenAI requires one: `a-zA-Z0-9_-`, at most 64).
    pub name: String,
    /// The schema.
    pub schema: Value,
}

/// What is asked of a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolDefinition>,
    /// When set, the answer must be JSON matching this schema. Prefer
    /// [`crate::Router::structured`], which also validates and repairs the answer.
    #[serde(default)]
    pub response_schema: Option<ResponseSchema>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The most tokens the answer may have.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The thread this request serves. Never sent to a backend: the router passes it to
    /// the usage ledger and its sinks, so every call's usage is stored per thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

impl ChatRequest {
    /// A request with these messages and nothing else.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// Offers these tools to the model.
    #[must_use]
    pub fn with_tools(mut self, tools: Vec<ToolDefinition>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Caps the answer's length.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Attributes the request's usage (every call it causes: retries, repairs, a
    /// history summary) to thread `thread_id`.
    #[must_use]
    pub fn with_thread(mut self, thread_id: impl Into<String>) -> Self {
        self.thread_id = Some(thread_id.into());
        self
    }
}

impl ResponseSchema {
    /// The schema of `T`, named as OpenAI accepts (`a-zA-Z0-9_-`, at most 64): what
    /// [`crate::Router::structured`] asks for, so callers can measure a structured
    /// request before sending it.
    ///
    /// # Errors
    /// [`Error::InvalidSchema`] when the generated schema cannot be written as JSON.
    pub fn of<T: schemars::JsonSchema>() -> Result<Self> {
        Ok(Self {
            name: schema_name(&T::schema_name()),
            schema: serde_json::to_value(schemars::schema_for!(T)).map_err(|error| {
                Error::InvalidSchema {
                    message: error.to_string(),
                }
            })?,
        })
    }
}

/// A schema name as OpenAI accepts it: `a-zA-Z0-9_-`, at most 64 characters.
fn schema_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                true => c,
                false => '_',
            },
        )
        .take(64)
        .collect();
    match cleaned.is_empty() {
        true => "answer".to_owned(),
        false => cleaned,
    }
}

/// Tokens a request used, as the backend reported them (0 when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input: u64,
    /// Answer tokens.
    pub output: u64,
}

/// Why the model stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer.
    #[default]
    Stop,
    /// It hit the token limit: the answer is cut short.
    Length,
    /// It wants tools called.
    ToolCalls,
    /// A content filter stopped it.
    ContentFilter,
    /// Something the backend named otherwise.
    Other(String),
}

/// A model's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatResponse {
    /// Its text (without tool calls found in it, when it wrote them as JSON).
    pub text: String,
    /// The tools it calls.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Why it stopped.
    pub finish: FinishReason,
    /// The model that answered, as the backend named it.
    pub model: String,
    /// The backend's name in the configuration (filled in by the router).
    pub backend: String,
    /// True when the offline backend answered: there is no model behind the text, and
    /// agents take their rule-based path.
    pub offline: bool,
    /// How long the request took (filled in by the router).
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Estimated cost in US dollars, when the backend's prices are configured.
    pub cost_usd: Option<f64>,
    /// Backends of the route that failed before this one answered.
    pub failed_over: Vec<crate::error::FailedAttempt>,
    /// How many secrets were redacted from the request before it was sent.
    pub redactions: usize,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Text(String),
    /// Part of a tool call: the first delta of a call carries its id and name, later
    /// ones more of its arguments' JSON text.
    ToolCallDelta {
        /// Which call of the answer (0-based).
        index: usize,
        /// The call's id, on its first delta.
        id: Option<String>,
        /// The tool's name, on its first delta.
        name: Option<String>,
        /// More of the arguments' JSON text.
        arguments: String,
    },
    /// The end: the whole answer, assembled, with its usage.
    Done(ChatResponse),
}

/// A streamed answer: events until [`StreamEvent::Done`] or an error. Dropping it stops
/// the request.
#[derive(Debug)]
pub struct ChatStream {
    receiver: tokio::sync::mpsc::Receiver<Result<StreamEvent>>,
}

/// How many events may wait in a stream before the producer waits for the consumer.
const STREAM_BUFFER: usize = 64;

impl ChatStream {
    /// A stream and the sender that feeds it.
    pub fn channel() -> (tokio::sync::mpsc::Sender<Result<StreamEvent>>, Self) {
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        (sender, Self { receiver })
    }

    /// The next event, or `None` after the last one.
    pub async fn next(&mut self) -> Option<Result<StreamEvent>> {
        self.receiver.recv().await
    }

    /// Reads the stream to its end and returns the assembled answer.
    pub async fn collect(mut self) -> Result<ChatResponse> {
        while let Some(event) = self.next().await {
            if let StreamEvent::Done(response) = event? {
                return Ok(response);
            }
        }
        Err(Error::BadResponse {
            backend: String::new(),
            message: "the stream ended without its final event".into(),
        })
    }
}

impl futures_core::Stream for ChatStream {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// Builds a [`ChatResponse`] from stream deltas; providers feed it as they parse.
#[derive(Debug, Default)]
pub struct Assembler {
    text: String,
    calls: Vec<(String, String, String)>,
    /// Tokens used, once the backend says.
    pub usage: TokenUsage,
    /// Why the model stopped, once the backend says.
    pub finish: Option<FinishReason>,
    /// The model, once the backend says.
    pub model: String,
}

impl Assembler {
    /// Adds text.
    pub fn text(&mut self, delta: &str) {
        self.text.push_str(delta);
    }

    /// Adds part of tool call `index`.
    pub fn tool_call(&mut self, index: usize, id: Option<&str>, name: Option<&str>, args: &str) {
        while self.calls.len() <= index {
            self.calls.push(Default::default());
        }
        let call = &mut self.calls[index];
        if let Some(id) = id {
            call.0 = id.to_owned();
        }
        if let Some(name) = name {
            call.1.push_str(name);
        }
        call.2.push_str(args);
    }

    /// How many tool calls have started.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The answer so far; fails when a tool call's arguments are not JSON.
    pub fn finish(self, backend: &str) -> Result<ChatResponse> {
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for (index, (id, name, args)) in self.calls.into_iter().enumerate() {
            let arguments = parse_arguments(backend, &name, &args)?;
            let id = if id.is_empty() {
                format!("call_{index}")
            } else {
                id
            };
            tool_calls.push(ToolCall {
                id,
                name,
                arguments,
            });
        }
        let finish = match self.finish {
            Some(finish) => finish,
            None if !tool_calls.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        Ok(ChatResponse {
            text: self.text,
            tool_calls,
            usage: self.usage,
            finish,
            model: self.model,
            ..ChatResponse::default()
        })
    }
}

/// Parses a tool call's arguments, sent as JSON text; empty text is `{}`.
pub fn parse_arguments(backend: &str, tool: &str, text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|error| Error::BadResponse {
        backend: backend.to_owned(),
        message: format!("arguments of the call to {tool} are not JSON: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_joins_deltas() {
        let mut a = Assembler::default();
        a.text("hel");
        a.text("lo");
        a.tool_call(0, Some("c1"), Some("safe_get"), "{\"kind\":");
        a.tool_call(0, None, None, "\"Pod\"}");
        let response = a.finish("b").unwrap();
        assert_eq!(response.text, "hello");
        assert_eq!(response.tool_calls[0].arguments["kind"], "Pod");
        assert_eq!(response.finish, FinishReason::ToolCalls);

        let mut broken = Assembler::default();
        broken.tool_call(0, None, Some("x"), "{\"a\":");
        assert_eq!(broken.finish("b").unwrap_err().kind(), "bad_response");
    }
}
