//! OpenAI's `/v1/chat/completions`, and everything that speaks it: any OpenAI-compatible
//! server (vLLM, llama.cpp's `llama-server`, LM Studio, LocalAI) and Azure OpenAI
//! (`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=..`).
//! Streaming is server-sent events ending in `data: [DONE]`.

use crate::backend::{Backend, BoxFuture, Capabilities};
use crate::chat::{
    parse_arguments, Assembler, ChatRequest, ChatResponse, ChatStream, FinishReason, StreamEvent,
    TokenUsage,
};
use crate::error::{Error, Result};
use crate::http::{self, Sse};
use crate::message::{Message, Role, ToolCall};
use serde_json::{json, Map, Value};

/// The OpenAI API's base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The Azure OpenAI `api-version` used unless configured (a GA version with tools and
/// structured outputs).
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Which server speaks the protocol, which decides the URL, the credentials and a few
/// fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// api.openai.com (or a proxy of it): bearer key, `max_completion_tokens`.
    OpenAi,
    /// Another server with the same API: optional bearer key, `max_tokens`.
    Compatible,
    /// Azure OpenAI: the model is a deployment, and the API version is a query parameter.
    Azure {
        /// The deployment's name.
        deployment: String,
        /// The `api-version` query parameter.
        api_version: String,
    },
}

/// How the requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// None (a local server).
    None,
    /// `Authorization: Bearer ..` (OpenAI keys, Azure Entra tokens).
    Bearer(String),
    /// Azure's `api-key: ..` header.
    AzureApiKey(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer(..)",
            Self::AzureApiKey(_) => "AzureApiKey(..)",
        })
    }
}

/// A backend speaking OpenAI's chat completions API.
#[derive(Debug, Clone)]
pub struct OpenAi {
    name: String,
    model: String,
    base_url: String,
    flavor: Flavor,
    credential: Credential,
    capabilities: Capabilities,
    client: reqwest::Client,
}

impl OpenAi {
    /// A backend called `name` asking `base_url` (for OpenAI itself, [`OPENAI_BASE_URL`];
    /// for Azure, the resource endpoint) for `model`.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
        flavor: Flavor,
        credential: Credential,
        client: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            model: model.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            flavor,
            credential,
            capabilities: Capabilities {
                native_tools: true,
                native_schema: true,
                offline: false,
            },
            client,
        }
    }

    /// Overrides what the server supports natively (small local servers may lack tools).
    #[must_use]
    pub fn with_capabilities(mut self, native_tools: bool, native_schema: bool) -> Self {
        self.capabilities.native_tools = native_tools;
        self.capabilities.native_schema = native_schema;
        self
    }

    fn url(&self, path: &str) -> String {
        match &self.flavor {
            Flavor::Azure {
                deployment,
                api_version,
            } if path == "chat/completions" => format!(
                "{}/openai/deployments/{deployment}/chat/completions?api-version={api_version}",
                self.base_url
            ),
            Flavor::Azure { api_version, .. } => {
                format!("{}/openai/{path}?api-version={api_version}", self.base_url)
            }
            _ => format!("{}/{path}", self.base_url),
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Credential::None => request,
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::AzureApiKey(key) => request.header("api-key", key),
        }
    }

    /// The request body.
    pub fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        if !matches!(self.flavor, Flavor::Azure { .. }) {
            body.insert("model".into(), json!(self.model));
        }
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
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {
                        "name": schema.name,
                        "schema": schema.schema,
                        // Strict mode needs every property required and no extra ones;
                        // schemars schemas are not written that way. We validate anyway.
                        "strict": false,
                    }}),
                );
            }
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), json!(temperature));
        }
        if let Some(max) = request.max_tokens {
            let field = match self.flavor {
                Flavor::Compatible => "max_tokens",
                _ => "max_completion_tokens",
            };
            body.insert(field.into(), json!(max));
        }
        if stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let post = self
            .authorize(self.client.post(self.url("chat/completions")))
            .json(&self.body(request, false));
        let response = http::send(&self.name, post).await?;
        let body = http::json(&self.name, response).await?;
        parse_response(&self.name, &body)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream> {
        let post = self
            .authorize(self.client.post(self.url("chat/completions")))
            .json(&self.body(request, true));
        let response = http::send(&self.name, post).await?;
        let (sender, stream) = ChatStream::channel();
        let backend = self.name.clone();
        tokio::spawn(async move {
            let mut events = Sse::new(&backend, response);
            let result = pump(&backend, &mut events, &sender).await;
            if let Err(error) = result {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(stream)
    }
}

/// Reads the SSE stream, sending deltas and, at `[DONE]`, the whole answer.
async fn pump(
    backend: &str,
    events: &mut Sse,
    sender: &tokio::sync::mpsc::Sender<Result<StreamEvent>>,
) -> Result<()> {
    let mut assembler = Assembler::default();
    let mut refusal = String::new();
    while let Some(event) = events.next_event().await? {
        if event.data.trim() == "[DONE]" {
            if !refusal.is_empty() {
                return Err(Error::Refused {
                    backend: backend.to_owned(),
                    message: refusal,
                });
            }
            let response = assembler.finish(backend)?;
            let _ = sender.send(Ok(StreamEvent::Done(response))).await;
            return Ok(());
        }
        let chunk = http::parse_chunk(backend, &event.data)?;
        if chunk.get("error").is_some() {
            return Err(Error::BadResponse {
                backend: backend.to_owned(),
                message: http::error_message(&event.data),
            });
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            assembler.model = model.to_owned();
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            assembler.usage = usage_of(usage);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            continue;
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            assembler.finish = Some(finish_reason(reason));
        }
        let Some(delta) = choice.get("delta") else {
            continue;
        };
        if let Some(text) = delta.get("refusal").and_then(Value::as_str) {
            refusal.push_str(text);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                assembler.text(text);
                if sender
                    .send(Ok(StreamEvent::Text(text.to_owned())))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(assembler.call_count().saturating_sub(1));
            let id = call.get("id").and_then(Value::as_str);
            let function = call.get("function");
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            assembler.tool_call(index, id, name, arguments);
            let event = StreamEvent::ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            };
            if sender.send(Ok(event)).await.is_err() {
                return Ok(());
            }
        }
    }
    Err(http::truncated(backend))
}

fn message(message: &Message) -> Value {
    match message.role {
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
            "content": message.content,
        }),
        Role::Assistant if !message.tool_calls.is_empty() => {
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function", "function": {
                        "name": call.name,
                        "arguments": call.arguments.to_string(),
                    }})
                })
                .collect();
            let content = if message.content.is_empty() {
                Value::Null
            } else {
                json!(message.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        role => json!({"role": role_name(role), "content": message.content}),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn usage_of(usage: &Value) -> TokenUsage {
    TokenUsage {
        input: usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output: usage
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Parses a non-streamed completion.
fn parse_response(backend: &str, body: &Value) -> Result<ChatResponse> {
    let bad = |message: &str| Error::BadResponse {
        backend: backend.to_owned(),
        message: message.to_owned(),
    };
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("the completion has no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| bad("the choice has no message"))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        return Err(Error::Refused {
            backend: backend.to_owned(),
            message: refusal.to_owned(),
        });
    }
    let mut tool_calls = Vec::new();
    for (index, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let function = call
            .get("function")
            .ok_or_else(|| bad("a tool call has no function"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a tool call has no name"))?;
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => parse_arguments(backend, name, text)?,
            Some(Value::Object(object)) => Value::Object(object.clone()),
            _ => Value::Object(Map::new()),
        };
        tool_calls.push(ToolCall {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{index}"), str::to_owned),
            name: name.to_owned(),
            arguments,
        });
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, finish_reason);
    Ok(ChatResponse {
        text: message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        tool_calls,
        usage: body.get("usage").map(usage_of).unwrap_or_default(),
        finish,
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        ..ChatResponse::default()
    })
}

impl Backend for OpenAi {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        match self.flavor {
            Flavor::OpenAi => "openai",
            Flavor::Compatible => "openai_compatible",
            Flavor::Azure { .. } => "azure_openai",
        }
    }

    fn model(&self) -> &str {
        match &self.flavor {
            Flavor::Azure { deployment, .. } => deployment,
            _ => &self.model,
        }
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
            let get = self.authorize(self.client.get(self.url("models")));
            let response = http::send(&self.name, get).await?;
            let body = http::json(&self.name, response).await?;
            let models: Vec<&str> = body
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("id").and_then(Value::as_str))
                .collect();
            let wanted = self.model();
            if let Flavor::Azure { deployment, .. } = &self.flavor {
                // The data-plane API lists base models, not deployments.
                return Ok(format!("reachable; deployment {deployment} not checked"));
            }
            Ok(match models.contains(&wanted) {
                true => format!("reachable; model {wanted} listed"),
                false if models.is_empty() => "reachable".to_owned(),
                false => format!(
                    "reachable; model {wanted} not among the {} listed",
                    models.len()
                ),
            })
        })
    }
}
