//! Google Gemini's `v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`: contents of `parts` (`text`, `functionCall`,
//! `functionResponse`), tools as `functionDeclarations`, the key in `x-goog-api-key`.
//! Schemas go in the JSON-Schema fields (`parametersJsonSchema`, `responseJsonSchema`),
//! which take the schemas the tool registry and schemars write as they are.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{
    Assembler, ChatRequest, ChatResponse, ChatStream, FinishReason, StreamEvent, TokenUsage,
};
use crate::error::{Error, Result};
use crate::http::{self, Sse};
use crate::message::{Message, Role};
use serde_json::{json, Map, Value};

/// Gemini's API base URL.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// A backend speaking the Gemini API.
#[derive(Clone)]
pub struct Gemini {
    name: String,
    model: String,
    base_url: String,
    api_key: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Gemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemini")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Gemini {
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

    /// The request body.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut body = Map::new();
        let system: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| json!({"text": m.content}))
            .collect();
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        body.insert("contents".into(), Value::Array(contents(&request.messages)));
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "name": tool.name,
                        "description": tool.description,
                        "parametersJsonSchema": tool.parameters,
                    })
                })
                .collect();
            body.insert(
                "tools".into(),
                json!([{"functionDeclarations": declarations}]),
            );
        }
        let mut generation = Map::new();
        if let Some(temperature) = request.temperature {
            generation.insert("temperature".into(), json!(temperature));
        }
        if let Some(max) = request.max_tokens {
            generation.insert("maxOutputTokens".into(), json!(max));
        }
        if let Some(schema) = &request.response_schema {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseJsonSchema".into(), schema.schema.clone());
        }
        if !generation.is_empty() {
            body.insert("generationConfig".into(), Value::Object(generation));
        }
        Value::Object(body)
    }

    fn post(&self, method: &str, request: &ChatRequest) -> reqwest::RequestBuilder {
        self.client
            .post(format!(
                "{}/v1beta/models/{}:{method}",
                self.base_url, self.model
            ))
            .header("x-goog-api-key", &self.api_key)
            .json(&self.body(request))
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let response = http::send(&self.name, self.post("generateContent", request)).await?;
        let body = http::json(&self.name, response).await?;
        let mut assembler = Assembler::default();
        absorb(&self.name, &body, &mut assembler, None).await?;
        if assembler.finish.is_none() {
            return Err(Error::BadResponse {
                backend: self.name.clone(),
                message: "the response has no finishReason".into(),
            });
        }
        if assembler.model.is_empty() {
            assembler.model.clone_from(&self.model);
        }
        assembler.finish(&self.name)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream> {
        let response = http::send(
            &self.name,
            self.post("streamGenerateContent?alt=sse", request),
        )
        .await?;
        let (sender, stream) = ChatStream::channel();
        let backend = self.name.clone();
        let model = self.model.clone();
        tokio::spawn(async move {
            let mut events = Sse::new(&backend, response);
            if let Err(error) = pump(&backend, &model, &mut events, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(stream)
    }
}

/// Gemini has two roles, `user` and `model`; function results are user-side
/// `functionResponse` parts, and consecutive same-role messages merge.
fn contents(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, parts) = match message.role {
            Role::System => continue,
            Role::User => ("user", vec![json!({"text": message.content})]),
            Role::Tool => {
                let response = serde_json::from_str::<Value>(&message.content)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"content": message.content}));
                (
                    "user",
                    vec![json!({"functionResponse": {
                        "name": message.name.clone().unwrap_or_default(),
                        "response": response,
                    }})],
                )
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                if !message.content.is_empty() {
                    parts.push(json!({"text": message.content}));
                }
                for call in &message.tool_calls {
                    parts
                        .push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
                }
                ("model", parts)
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

/// Adds one `GenerateContentResponse` (whole, or one streamed chunk) to `assembler`.
/// Returns false when the stream's consumer has gone.
async fn absorb(
    backend: &str,
    chunk: &Value,
    assembler: &mut Assembler,
    sender: Option<&tokio::sync::mpsc::Sender<Result<StreamEvent>>>,
) -> Result<bool> {
    if chunk.get("error").is_some() {
        return Err(Error::BadResponse {
            backend: backend.to_owned(),
            message: http::error_message(&chunk.to_string()),
        });
    }
    if let Some(reason) = chunk
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
    {
        return Err(Error::Refused {
            backend: backend.to_owned(),
            message: format!("the prompt was blocked ({reason})"),
        });
    }
    if let Some(model) = chunk.get("modelVersion").and_then(Value::as_str) {
        assembler.model = model.to_owned();
    }
    if let Some(usage) = chunk.get("usageMetadata") {
        assembler.usage = TokenUsage {
            input: usage
                .get("promptTokenCount")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output: usage
                .get("candidatesTokenCount")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + usage
                    .get("thoughtsTokenCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
        };
    }
    let Some(candidate) = chunk
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Ok(true);
    };
    for part in candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let event = if let Some(text) = part.get("text").and_then(Value::as_str) {
            assembler.text(text);
            StreamEvent::Text(text.to_owned())
        } else if let Some(call) = part.get("functionCall") {
            let name =
                call.get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::BadResponse {
                        backend: backend.to_owned(),
                        message: "a functionCall has no name".into(),
                    })?;
            let arguments = call.get("args").cloned().unwrap_or(json!({})).to_string();
            let index = assembler.call_count();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{index}"), str::to_owned);
            assembler.tool_call(index, Some(&id), Some(name), &arguments);
            StreamEvent::ToolCallDelta {
                index,
                id: Some(id),
                name: Some(name.to_owned()),
                arguments,
            }
        } else {
            continue;
        };
        if let Some(sender) = sender {
            if sender.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
    }
    if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
        assembler.finish = Some(match reason {
            "STOP" if assembler.call_count() > 0 => FinishReason::ToolCalls,
            "STOP" => FinishReason::Stop,
            "MAX_TOKENS" => FinishReason::Length,
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
                return Err(Error::Refused {
                    backend: backend.to_owned(),
                    message: format!("the answer was blocked ({reason})"),
                })
            }
            other => FinishReason::Other(other.to_owned()),
        });
    }
    Ok(true)
}

async fn pump(
    backend: &str,
    model: &str,
    events: &mut Sse,
    sender: &tokio::sync::mpsc::Sender<Result<StreamEvent>>,
) -> Result<()> {
    let mut assembler = Assembler::default();
    while let Some(event) = events.next_event().await? {
        let chunk = http::parse_chunk(backend, &event.data)?;
        if !absorb(backend, &chunk, &mut assembler, Some(sender)).await? {
            return Ok(());
        }
    }
    // Gemini's stream has no end marker: it is complete when a finishReason came.
    if assembler.finish.is_none() {
        return Err(http::truncated(backend));
    }
    if assembler.model.is_empty() {
        assembler.model = model.to_owned();
    }
    let response = assembler.finish(backend)?;
    let _ = sender.send(Ok(StreamEvent::Done(response))).await;
    Ok(())
}

impl Backend for Gemini {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "gemini"
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
                .get(format!("{}/v1beta/models/{}", self.base_url, self.model))
                .header("x-goog-api-key", &self.api_key);
            let response = http::send(&self.name, get).await?;
            let body = http::json(&self.name, response).await?;
            let limit = body.get("inputTokenLimit").and_then(Value::as_u64);
            Ok(match limit {
                Some(limit) => format!(
                    "reachable; model {} accepts {limit} input tokens",
                    self.model
                ),
                None => format!("reachable; model {} known", self.model),
            })
        })
    }
}
