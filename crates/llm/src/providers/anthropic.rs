//! Anthropic's `/v1/messages`: the system prompt is a field of its own, content is a list
//! of blocks (`text`, `tool_use`, `tool_result`), and streaming is server-sent events
//! (`message_start`, `content_block_start`, `content_block_delta`, `message_delta`,
//! `message_stop`, `ping`, `error`). There is no native JSON-schema output: the router
//! prompts for JSON and validates it.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{
    Assembler, ChatRequest, ChatResponse, ChatStream, FinishReason, StreamEvent, TokenUsage,
};
use crate::error::{Error, Result};
use crate::http::{self, Sse};
use crate::message::{Message, Role};
use serde_json::{json, Map, Value};

/// Anthropic's API base URL.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the API; this is sent when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A backend speaking Anthropic's Messages API.
#[derive(Clone)]
pub struct Anthropic {
    name: String,
    model: String,
    base_url: String,
    api_key: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A backend called `name` asking `base_url` for `model` with `api_key`.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
        api_key: impl Into<String>,
        client: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: api_key.into(),
            client,
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body)
    }

    /// The request body.
    pub fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "max_tokens".into(),
            json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        );
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        body.insert("messages".into(), Value::Array(messages(&request.messages)));
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "name": tool.name,
                        "description": tool.description,
                        "input_schema": tool.parameters,
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), json!(temperature));
        }
        if stream {
            body.insert("stream".into(), json!(true));
        }
        Value::Object(body)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let response = http::send(&self.name, self.post(&self.body(request, false))).await?;
        let body = http::json(&self.name, response).await?;
        parse_response(&self.name, &body)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream> {
        let response = http::send(&self.name, self.post(&self.body(request, true))).await?;
        let (sender, stream) = ChatStream::channel();
        let backend = self.name.clone();
        tokio::spawn(async move {
            let mut events = Sse::new(&backend, response);
            if let Err(error) = pump(&backend, &mut events, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(stream)
    }
}

/// Groups messages into alternating user/assistant turns of content blocks: tool results
/// are user-side `tool_result` blocks, and consecutive same-side messages merge.
fn messages(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => (
                "user",
                vec![json!({"type": "text", "text": message.content})],
            ),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                    "content": message.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !message.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": message.content}));
                }
                for call in &message.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": call.arguments,
                    }));
                }
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn stop_reason(backend: &str, reason: &str) -> Result<FinishReason> {
    Ok(match reason {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => {
            return Err(Error::Refused {
                backend: backend.to_owned(),
                message: "the model declined to answer (stop_reason refusal)".into(),
            })
        }
        other => FinishReason::Other(other.to_owned()),
    })
}

fn usage_of(usage: &Value, into: &mut TokenUsage) {
    if let Some(input) = usage.get("input_tokens").and_then(Value::as_u64) {
        into.input = input
            + usage
                .get("cache_read_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0)
            + usage
                .get("cache_creation_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
    }
    if let Some(output) = usage.get("output_tokens").and_then(Value::as_u64) {
        into.output = output;
    }
}

fn parse_response(backend: &str, body: &Value) -> Result<ChatResponse> {
    let content = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadResponse {
            backend: backend.to_owned(),
            message: "the message has no content".into(),
        })?;
    let mut assembler = Assembler::default();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => assembler.text(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let index = assembler.call_count();
                let input = block.get("input").cloned().unwrap_or(json!({}));
                assembler.tool_call(
                    index,
                    block.get("id").and_then(Value::as_str),
                    block.get("name").and_then(Value::as_str),
                    &input.to_string(),
                );
            }
            _ => {}
        }
    }
    if let Some(reason) = body.get("stop_reason").and_then(Value::as_str) {
        assembler.finish = Some(stop_reason(backend, reason)?);
    }
    if let Some(usage) = body.get("usage") {
        usage_of(usage, &mut assembler.usage);
    }
    assembler.model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    assembler.finish(backend)
}

async fn pump(
    backend: &str,
    events: &mut Sse,
    sender: &tokio::sync::mpsc::Sender<Result<StreamEvent>>,
) -> Result<()> {
    let mut assembler = Assembler::default();
    // Content block index -> tool call index, for tool_use blocks.
    let mut calls: Vec<(u64, usize)> = Vec::new();
    while let Some(event) = events.next_event().await? {
        let data = http::parse_chunk(backend, &event.data)?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let block_index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let outgoing = match kind {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    assembler.model = model.to_owned();
                }
                if let Some(usage) = message.get("usage") {
                    usage_of(usage, &mut assembler.usage);
                }
                None
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = assembler.call_count();
                        calls.push((block_index, index));
                        let id = block.get("id").and_then(Value::as_str);
                        let name = block.get("name").and_then(Value::as_str);
                        assembler.tool_call(index, id, name, "");
                        Some(StreamEvent::ToolCallDelta {
                            index,
                            id: id.map(str::to_owned),
                            name: name.map(str::to_owned),
                            arguments: String::new(),
                        })
                    }
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        assembler.text(text);
                        (!text.is_empty()).then(|| StreamEvent::Text(text.to_owned()))
                    }
                    _ => None,
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        assembler.text(text);
                        Some(StreamEvent::Text(text.to_owned()))
                    }
                    Some("input_json_delta") => {
                        let part = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let index = calls
                            .iter()
                            .find(|(block, _)| *block == block_index)
                            .map(|(_, call)| *call)
                            .ok_or_else(|| Error::BadResponse {
                                backend: backend.to_owned(),
                                message: format!(
                                    "input_json_delta for block {block_index}, which is not a tool_use block"
                                ),
                            })?;
                        assembler.tool_call(index, None, None, part);
                        Some(StreamEvent::ToolCallDelta {
                            index,
                            id: None,
                            name: None,
                            arguments: part.to_owned(),
                        })
                    }
                    _ => None,
                }
            }
            "message_delta" => {
                if let Some(reason) = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    assembler.finish = Some(stop_reason(backend, reason)?);
                }
                if let Some(usage) = data.get("usage") {
                    usage_of(usage, &mut assembler.usage);
                }
                None
            }
            "message_stop" => {
                let response = std::mem::take(&mut assembler).finish(backend)?;
                let _ = sender.send(Ok(StreamEvent::Done(response))).await;
                return Ok(());
            }
            "error" => {
                let error = data.get("error").unwrap_or(&Value::Null);
                let error_kind = error.get("type").and_then(Value::as_str).unwrap_or("");
                let message = http::error_message(&event.data);
                return Err(match error_kind {
                    "overloaded_error" | "api_error" => Error::Server {
                        backend: backend.to_owned(),
                        status: 529,
                        message,
                    },
                    "rate_limit_error" => Error::RateLimited {
                        backend: backend.to_owned(),
                        retry_after: None,
                        message,
                    },
                    _ => Error::BadResponse {
                        backend: backend.to_owned(),
                        message,
                    },
                });
            }
            _ => None,
        };
        if let Some(outgoing) = outgoing {
            if sender.send(Ok(outgoing)).await.is_err() {
                return Ok(());
            }
        }
    }
    Err(http::truncated(backend))
}

impl Backend for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: true,
            native_schema: false,
            offline: false,
        }
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(self.complete(request))
    }

    fn chat_stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatStream>> {
        Box::pin(self.stream(request))
    }

    fn probe(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let get = self
                .client
                .get(format!("{}/v1/models/{}", self.base_url, self.model))
                .header("x-api-key", &self.api_key)
                .header("anthropic-version", ANTHROPIC_VERSION);
            http::send(&self.name, get).await?;
            Ok(format!("reachable; model {} known", self.model))
        })
    }
}
