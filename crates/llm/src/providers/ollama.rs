//! Ollama's native `/api/chat`: streaming is newline-delimited JSON, tool calls come whole
//! with their arguments as objects, and `format` takes a JSON Schema.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{
    Assembler, ChatRequest, ChatResponse, ChatStream, FinishReason, StreamEvent, TokenUsage,
};
use crate::error::{Error, Result};
use crate::http::{self, Lines};
use crate::message::{Message, Role};
use serde_json::{json, Map, Value};

/// Where Ollama listens by default.
pub const OLLAMA_DEFAULT_URL: &str = "http://127.0.0.1:11434";

/// A backend speaking Ollama's API.
#[derive(Debug, Clone)]
pub struct Ollama {
    name: String,
    model: String,
    base_url: String,
    context_window: Option<usize>,
    capabilities: Capabilities,
    client: reqwest::Client,
}

impl Ollama {
    /// A backend called `name` asking the Ollama at `base_url` for `model`.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
        client: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            context_window: None,
            capabilities: Capabilities {
                native_tools: true,
                native_schema: true,
                offline: false,
            },
            client,
        }
    }

    /// Asks Ollama to load the model with this context window (`options.num_ctx`); by
    /// default Ollama uses a small one and silently drops the start of longer prompts.
    #[must_use]
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// Overrides what the model supports natively (many local models lack tools).
    #[must_use]
    pub fn with_capabilities(mut self, native_tools: bool, native_schema: bool) -> Self {
        self.capabilities.native_tools = native_tools;
        self.capabilities.native_schema = native_schema;
        self
    }

    /// The request body.
    pub fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "messages".into(),
            Value::Array(request.messages.iter().map(message).collect()),
        );
        if !request.tools.is_empty() && self.capabilities.native_tools {
            let tools = request
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(schema) = request.response_schema.as_ref() {
            if self.capabilities.native_schema {
                body.insert("format".into(), schema.schema.clone());
            }
        }
        let mut options = Map::new();
        if let Some(temperature) = request.temperature {
            options.insert("temperature".into(), json!(temperature));
        }
        if let Some(max) = request.max_tokens {
            options.insert("num_predict".into(), json!(max));
        }
        if let Some(window) = self.context_window {
            options.insert("num_ctx".into(), json!(window));
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        body.insert("stream".into(), json!(stream));
        Value::Object(body)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let post = self
            .client
            .post(format!("{}/api/chat", self.base_url))
            .json(&self.body(request, false));
        let response = http::send(&self.name, post).await?;
        let body = http::json(&self.name, response).await?;
        let mut assembler = Assembler::default();
        absorb(&self.name, &body, &mut assembler, None).await?;
        if body.get("done").and_then(Value::as_bool) != Some(true) {
            return Err(http::truncated(&self.name));
        }
        assembler.finish(&self.name)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream> {
        let post = self
            .client
            .post(format!("{}/api/chat", self.base_url))
            .json(&self.body(request, true));
        let response = http::send(&self.name, post).await?;
        let (sender, stream) = ChatStream::channel();
        let backend = self.name.clone();
        tokio::spawn(async move {
            let mut lines = Lines::new(&backend, response);
            if let Err(error) = pump(&backend, &mut lines, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(stream)
    }
}

async fn pump(
    backend: &str,
    lines: &mut Lines,
    sender: &tokio::sync::mpsc::Sender<Result<StreamEvent>>,
) -> Result<()> {
    let mut assembler = Assembler::default();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let chunk = http::parse_chunk(backend, &line)?;
        if !absorb(backend, &chunk, &mut assembler, Some(sender)).await? {
            return Ok(());
        }
        if chunk.get("done").and_then(Value::as_bool) == Some(true) {
            let response = std::mem::take(&mut assembler).finish(backend)?;
            let _ = sender.send(Ok(StreamEvent::Done(response))).await;
            return Ok(());
        }
    }
    Err(http::truncated(backend))
}

/// Adds one response object (the whole answer, or one NDJSON line) to `assembler`,
/// sending deltas when streaming. Returns false when the consumer has gone.
async fn absorb(
    backend: &str,
    chunk: &Value,
    assembler: &mut Assembler,
    sender: Option<&tokio::sync::mpsc::Sender<Result<StreamEvent>>>,
) -> Result<bool> {
    if let Some(error) = chunk.get("error") {
        let message = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        let lower = message.to_lowercase();
        return Err(if http::mentions_context_length(&lower) {
            Error::ContextTooLong {
                backend: backend.to_owned(),
                model: assembler.model.clone(),
                needed: 0,
                window: 0,
            }
        } else {
            Error::BadResponse {
                backend: backend.to_owned(),
                message: http::quote(&message),
            }
        });
    }
    if let Some(model) = chunk.get("model").and_then(Value::as_str) {
        assembler.model = model.to_owned();
    }
    let message = chunk.get("message");
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
    {
        if !text.is_empty() {
            assembler.text(text);
            if let Some(sender) = sender {
                if sender
                    .send(Ok(StreamEvent::Text(text.to_owned())))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
        }
    }
    for call in message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        let Some(name) = function.get("name").and_then(Value::as_str) else {
            return Err(Error::BadResponse {
                backend: backend.to_owned(),
                message: "a tool call has no name".into(),
            });
        };
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => text.clone(),
            Some(value) => value.to_string(),
            None => String::new(),
        };
        let index = assembler.call_count();
        let id = format!("call_{index}");
        assembler.tool_call(index, Some(&id), Some(name), &arguments);
        if let Some(sender) = sender {
            let event = StreamEvent::ToolCallDelta {
                index,
                id: Some(id),
                name: Some(name.to_owned()),
                arguments,
            };
            if sender.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
    }
    if chunk.get("done").and_then(Value::as_bool) == Some(true) {
        assembler.usage = TokenUsage {
            input: chunk
                .get("prompt_eval_count")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output: chunk.get("eval_count").and_then(Value::as_u64).unwrap_or(0),
        };
        assembler.finish = match chunk.get("done_reason").and_then(Value::as_str) {
            Some("length") => Some(FinishReason::Length),
            _ if assembler.call_count() > 0 => Some(FinishReason::ToolCalls),
            Some("stop") | None => Some(FinishReason::Stop),
            Some(other) => Some(FinishReason::Other(other.to_owned())),
        };
    }
    Ok(true)
}

fn message(message: &Message) -> Value {
    match message.role {
        Role::Tool => {
            let mut value = json!({"role": "tool", "content": message.content});
            if let Some(name) = &message.name {
                value["tool_name"] = json!(name);
            }
            value
        }
        Role::Assistant if !message.tool_calls.is_empty() => {
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|call| json!({"function": {"name": call.name, "arguments": call.arguments}}))
                .collect();
            json!({"role": "assistant", "content": message.content, "tool_calls": calls})
        }
        Role::System => json!({"role": "system", "content": message.content}),
        Role::User => json!({"role": "user", "content": message.content}),
        Role::Assistant => json!({"role": "assistant", "content": message.content}),
    }
}

impl Backend for Ollama {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "ollama"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(self.complete(request))
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatStream>> {
        Box::pin(self.stream(request))
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let models = list_models(&self.client, &self.base_url, &self.name).await?;
            let wanted = &self.model;
            let listed = models
                .iter()
                .any(|m| m == wanted || m.strip_suffix(":latest") == Some(wanted));
            Ok(match listed {
                true => format!("reachable; model {wanted} pulled"),
                false => format!(
                    "reachable, but model {wanted} is not pulled (have: {}); run `ollama pull {wanted}`",
                    models.join(", ")
                ),
            })
        })
    }
}

/// The models an Ollama server has pulled (`GET /api/tags`).
pub async fn list_models(
    client: &reqwest::Client,
    base_url: &str,
    backend: &str,
) -> Result<Vec<String>> {
    let get = client.get(format!("{}/api/tags", base_url.trim_end_matches('/')));
    let response = http::send(backend, get).await?;
    let body = http::json(backend, response).await?;
    Ok(body
        .get("models")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect())
}
