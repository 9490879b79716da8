//! The router: what every request goes through, whatever the backend. It redacts the
//! request, picks the agent's model chain, adapts the request to each backend (tools and
//! schemas in the prompt when not native, history fitted to the context window), calls
//! with deadlines, retries with backoff and jitter, and cancellation, reads tool calls
//! from text, validates and repairs structured output, falls back along the chain, and
//! accounts for every attempt.

use crate::backend::Backend;
use crate::chat::{
    ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseSchema, StreamEvent,
    ToolDefinition,
};
use crate::config::{self, BackendConfig, BackendKind, Env, LlmConfig, RetryConfig, Timeouts};
use crate::error::{Error, FailedAttempt, Result, TimeoutPhase};
use crate::extract;
use crate::message::Message;
use crate::offline::Offline;
use crate::prompt;
use crate::providers::openai::{Credential, Flavor};
use crate::providers::{Anthropic, Gemini, Ollama, OpenAi};
use crate::redact::Redactor;
use crate::tokens::{self, Family};
use crate::unavailable::Unavailable;
use crate::usage::{Prices, Usage};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// At most this many schema problems are sent back to the model in a repair request.
const MAX_REPORTED_PROBLEMS: usize = 8;

/// How long discovery waits for a local Ollama at its default port.
const OLLAMA_PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// A backend with what the router knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) endpoint: String,
    pub(crate) window: usize,
    family: Family,
    prices: Option<Prices>,
}

/// A structured answer: the value, and the answer it came from.
#[derive(Debug, Clone)]
pub struct Structured<T> {
    /// The value, valid against its schema.
    pub value: T,
    /// The answer (its usage covers repair attempts too).
    pub response: ChatResponse,
}

/// Routes requests to backends. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Router {
    entries: BTreeMap<String, Entry>,
    routes: BTreeMap<String, Vec<String>>,
    offline_fallback: bool,
    timeouts: Timeouts,
    retry: RetryConfig,
    max_repairs: u32,
    max_tool_output_tokens: usize,
    redactor: Redactor,
    usage: Usage,
    notes: Vec<String>,
}

impl Router {
    /// A router with `config`'s settings and no backends but the offline one.
    pub fn new(config: &LlmConfig) -> Result<Self> {
        config.validate()?;
        let mut router = Self {
            entries: BTreeMap::new(),
            routes: BTreeMap::new(),
            offline_fallback: config.offline_fallback,
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
            max_repairs: config.max_repairs,
            max_tool_output_tokens: config.max_tool_output_tokens,
            redactor: Redactor::new(&config.redaction.extra_patterns)?,
            usage: Usage::new(),
            notes: Vec::new(),
        };
        router.add_backend(
            Arc::new(Offline::new(config::OFFLINE_BACKEND)),
            "",
            None,
            None,
        );
        Ok(router)
    }

    /// Builds every backend of `config` (after discovery from `env` when none are
    /// configured) and its routes. API keys are read through `env`; a backend whose key is
    /// missing stays in its routes and fails with an `auth` error, so the route falls back
    /// and `check` says why.
    pub fn from_config(config: &LlmConfig, env: Env<'_>) -> Result<Self> {
        let mut config = config.clone();
        let notes = config.discover_from_env(env);
        let mut router = Self::new(&config)?;
        router.notes = notes;
        let client = crate::http::client(config.timeouts.connect())?;
        for (name, backend) in &config.backends {
            let built = build_backend(name, backend, env, &client);
            router.add_backend(
                built,
                &backend.endpoint(env),
                backend.context_window,
                backend.prices,
            );
        }
        for (route, chain) in &config.routes {
            router.set_route(route, chain.clone())?;
        }
        Ok(router)
    }

    /// Like [`Router::from_config`], and when nothing is configured or found in the
    /// environment, uses a local Ollama on its default port if one answers (with
    /// `OLLAMA_MODEL` or the first model it has pulled).
    pub async fn discover(config: &LlmConfig, env: Env<'_>) -> Result<Self> {
        let mut config = config.clone();
        let mut notes = config.discover_from_env(env);
        if config.discover && config.backends.is_empty() {
            let client = crate::http::client(OLLAMA_PROBE_TIMEOUT)?;
            let url = crate::providers::ollama::OLLAMA_DEFAULT_URL;
            let probe = crate::providers::ollama::list_models(&client, url, "ollama");
            match tokio::time::timeout(OLLAMA_PROBE_TIMEOUT, probe).await {
                Ok(Ok(models)) => {
                    let model = env("OLLAMA_MODEL").or_else(|| models.first().cloned());
                    match model {
                        Some(model) => {
                            notes.push(format!("a local Ollama answers at {url}; using {model}"));
                            config.backends.insert(
                                "ollama".into(),
                                BackendConfig::new(BackendKind::Ollama, model).with_base_url(url),
                            );
                            config
                                .routes
                                .entry(config::DEFAULT_ROUTE.into())
                                .or_insert_with(|| vec!["ollama".into()]);
                        }
                        None => notes.push(format!(
                            "a local Ollama answers at {url} but has no model pulled"
                        )),
                    }
                }
                _ => notes.push(format!(
                    "no backend configured, none in the environment, and no Ollama at {url}: \
                     every agent uses the offline backend"
                )),
            }
            // Discovery is done; do not repeat it.
            config.discover = false;
        }
        let mut router = Self::from_config(&config, env)?;
        router.notes.splice(0..0, notes);
        Ok(router)
    }

    /// Adds (or replaces) a backend under its name. `endpoint` is shown by `check`;
    /// without `context_window` the model family's default applies.
    pub fn add_backend(
        &mut self,
        backend: Arc<dyn Backend>,
        endpoint: &str,
        context_window: Option<usize>,
        prices: Option<Prices>,
    ) {
        let model = backend.model().to_owned();
        let window = context_window.unwrap_or_else(|| match backend.capabilities().offline {
            true => usize::MAX,
            false => Family::default_context_window(&model),
        });
        self.entries.insert(
            backend.name().to_owned(),
            Entry {
                endpoint: endpoint.to_owned(),
                window,
                family: Family::of(&model),
                prices,
                backend,
            },
        );
    }

    /// Sets the chain of backends `route` (an agent, a task or `default`) tries in order.
    pub fn set_route(&mut self, route: &str, chain: Vec<String>) -> Result<()> {
        let unknown: Vec<String> = chain
            .iter()
            .filter(|name| !self.entries.contains_key(*name))
            .map(|name| format!("route {route} names unknown backend {name}"))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Config { problems: unknown });
        }
        self.routes.insert(route.to_owned(), chain);
        Ok(())
    }

    /// The backends `agent`'s requests try, in order: its route, else the `default`
    /// route, else every backend by name; then the offline backend when
    /// `offline_fallback` is on.
    pub fn chain(&self, agent: &str) -> Vec<String> {
        let mut chain = self
            .routes
            .get(agent)
            .or_else(|| self.routes.get(config::DEFAULT_ROUTE))
            .cloned()
            .unwrap_or_else(|| {
                self.entries
                    .keys()
                    .filter(|name| *name != config::OFFLINE_BACKEND)
                    .cloned()
                    .collect()
            });
        if self.offline_fallback && !chain.iter().any(|n| n == config::OFFLINE_BACKEND) {
            chain.push(config::OFFLINE_BACKEND.to_owned());
        }
        chain
    }

    /// The backends, by name.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<dyn Backend>> {
        self.entries.values().map(|entry| &entry.backend)
    }

    pub(crate) fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// The accounting ledger.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// What discovery found or did not find.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The redactor applied to every request.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Asks `agent`'s chain for an answer.
    pub async fn chat(
        &self,
        agent: &str,
        request: ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<ChatResponse> {
        self.run(agent, request, None, cancel)
            .await
            .map(|(response, _)| response)
    }

    /// Asks `agent`'s chain for a JSON answer matching `T`'s schema, validated, and
    /// repaired by the model up to `max_repairs` times.
    pub async fn structured<T>(
        &self,
        agent: &str,
        request: ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<Structured<T>>
    where
        T: schemars::JsonSchema + DeserializeOwned,
    {
        let schema = ResponseSchema {
            name: schema_name(&T::schema_name()),
            schema: serde_json::to_value(schemars::schema_for!(T)).map_err(|error| {
                Error::InvalidSchema {
                    message: error.to_string(),
                }
            })?,
        };
        let (value, response) = self
            .structured_value(agent, request, schema, cancel)
            .await?;
        match serde_json::from_value::<T>(value) {
            Ok(value) => Ok(Structured { value, response }),
            Err(error) => Err(Error::SchemaInvalid {
                backend: response.backend.clone(),
                attempts: 1,
                problems: vec![format!(
                    "valid against the schema but not the type: {error}"
                )],
                last_output: response.text,
            }),
        }
    }

    /// Asks for a JSON answer matching `schema`, validated and repaired.
    pub async fn structured_value(
        &self,
        agent: &str,
        request: ChatRequest,
        schema: ResponseSchema,
        cancel: &CancellationToken,
    ) -> Result<(Value, ChatResponse)> {
        let validator =
            jsonschema::validator_for(&schema.schema).map_err(|error| Error::InvalidSchema {
                message: error.to_string(),
            })?;
        let (response, value) = self
            .run(agent, request, Some((schema, validator)), cancel)
            .await?;
        match value {
            Some(value) => Ok((value, response)),
            None => Err(Error::BadResponse {
                backend: response.backend,
                message: "no structured value".into(),
            }),
        }
    }

    /// Redacts what leaves: message texts and tool-call arguments.
    fn redact(&self, mut request: ChatRequest) -> (ChatRequest, usize) {
        let mut count = 0;
        for message in &mut request.messages {
            let (text, n) = self.redactor.redact(&message.content);
            if n > 0 {
                message.content = text;
                count += n;
            }
            for call in &mut message.tool_calls {
                count += self.redactor.redact_json(&mut call.arguments);
            }
        }
        (request, count)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::Config {
            problems: vec![format!("unknown backend {name}")],
        })
    }

    async fn run(
        &self,
        agent: &str,
        request: ChatRequest,
        schema: Option<(ResponseSchema, jsonschema::Validator)>,
        cancel: &CancellationToken,
    ) -> Result<(ChatResponse, Option<Value>)> {
        let (request, redactions) = self.redact(request);
        let mut failed = Vec::new();
        for name in self.chain(agent) {
            let entry = self.entry(&name)?;
            let span = tracing::info_span!("llm_request", agent, backend = %name, model = entry.backend.model());
            match self
                .on_backend(entry, agent, &request, schema.as_ref(), cancel, redactions)
                .instrument(span)
                .await
            {
                Ok((mut response, value)) => {
                    response.failed_over = failed;
                    return Ok((response, value));
                }
                Err(error) if error.should_fall_back() => {
                    tracing::warn!(agent, backend = %name, kind = error.kind(), %error, "LLM backend failed; trying the next one");
                    failed.push(attempt(entry, &error));
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::AllFailed {
            route: agent.to_owned(),
            attempts: failed,
        })
    }

    /// The request as `entry` gets it: adapted to its capabilities and fitted to its
    /// window.
    fn prepare(&self, entry: &Entry, request: &ChatRequest) -> Result<ChatRequest> {
        let mut prepared = prompt::adapt(request, entry.backend.capabilities());
        if entry.backend.capabilities().offline {
            return Ok(prepared);
        }
        tokens::fit(
            entry.family,
            &mut prepared,
            entry.window,
            self.max_tool_output_tokens,
        )
        .map_err(|needed| Error::ContextTooLong {
            backend: entry.backend.name().to_owned(),
            model: entry.backend.model().to_owned(),
            needed,
            window: entry.window,
        })?;
        Ok(prepared)
    }

    async fn on_backend(
        &self,
        entry: &Entry,
        agent: &str,
        request: &ChatRequest,
        schema: Option<&(ResponseSchema, jsonschema::Validator)>,
        cancel: &CancellationToken,
        redactions: usize,
    ) -> Result<(ChatResponse, Option<Value>)> {
        let started = Instant::now();
        let mut request = request.clone();
        if let Some((schema, _)) = schema {
            request.response_schema = Some(schema.clone());
        }
        let mut prepared = match self.prepare(entry, &request) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.record_error(entry, agent, &error);
                return Err(error);
            }
        };
        let attempts = 1 + schema.map_or(0, |_| self.max_repairs);
        let mut total = crate::chat::TokenUsage::default();
        for attempt in 1..=attempts {
            let call_started = Instant::now();
            let mut response = self.call(entry, agent, &prepared, cancel).await?;
            finish_response(&mut response, entry, &request.tools);
            total.input += response.usage.input;
            total.output += response.usage.output;
            let cost = entry
                .prices
                .map(|p| p.cost(response.usage.input, response.usage.output));
            self.usage.record_success(
                entry.backend.name(),
                entry.backend.model(),
                agent,
                response.usage.input,
                response.usage.output,
                call_started.elapsed(),
                cost.unwrap_or(0.0),
                if attempt == 1 { redactions } else { 0 },
            );
            response.usage = total;
            response.latency = started.elapsed();
            response.cost_usd = entry.prices.map(|p| p.cost(total.input, total.output));
            response.redactions = redactions;
            let Some((_, validator)) = schema else {
                return Ok((response, None));
            };
            let problems = match extract::extract_json(&response.text) {
                None => vec!["the answer contains no JSON document".to_owned()],
                Some(value) => {
                    let problems: Vec<String> = validator
                        .iter_errors(&value)
                        .take(MAX_REPORTED_PROBLEMS)
                        .map(|error| match error.instance_path().to_string() {
                            path if path.is_empty() => error.to_string(),
                            path => format!("{path}: {error}"),
                        })
                        .collect();
                    if problems.is_empty() {
                        return Ok((response, Some(value)));
                    }
                    problems
                }
            };
            tracing::info!(
                backend = entry.backend.name(),
                attempt,
                problems = problems.len(),
                "structured answer breaks its schema"
            );
            if attempt == attempts {
                let error = Error::SchemaInvalid {
                    backend: entry.backend.name().to_owned(),
                    attempts,
                    problems,
                    last_output: response.text,
                };
                self.record_error(entry, agent, &error);
                return Err(error);
            }
            prepared.messages.push(Message::assistant(response.text));
            prepared.messages.push(Message::user(format!(
                "That answer does not match the required JSON Schema:\n- {}\nReply again with only the corrected JSON document.",
                problems.join("\n- ")
            )));
        }
        unreachable_error(entry)
    }

    fn record_error(&self, entry: &Entry, agent: &str, error: &Error) {
        if !matches!(error, Error::Cancelled) {
            self.usage.record_error(
                entry.backend.name(),
                entry.backend.model(),
                agent,
                error.kind(),
            );
        }
    }

    /// The wait before retry number `attempt` (1-based): exponential, capped, with
    /// jitter over its upper half so clients that failed together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let base =
            self.retry.initial_backoff_secs * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = base.min(self.retry.max_backoff_secs);
        Duration::try_from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
            .unwrap_or(Duration::ZERO)
    }

    /// How long to wait before trying `error`'s backend again, or `None` to give up on it.
    fn retry_wait(&self, error: &Error, attempt: u32) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.retry.max_attempts {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait.as_secs_f64() > self.retry.max_retry_after_secs => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(attempt)),
        }
    }

    /// One whole-answer call to `entry` with retries.
    async fn call(
        &self,
        entry: &Entry,
        agent: &str,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<ChatResponse> {
        let total = self.timeouts.total();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::Cancelled),
                result = tokio::time::timeout(total, entry.backend.chat(request)) => {
                    result.unwrap_or_else(|_| Err(timeout(entry, TimeoutPhase::Total, total)))
                }
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(error) => self.fill_context(error, entry),
            };
            self.record_error(entry, agent, &error);
            let Some(wait) = self.retry_wait(&error, attempt) else {
                return Err(error);
            };
            tracing::info!(
                backend = entry.backend.name(),
                attempt,
                ?wait,
                kind = error.kind(),
                "retrying LLM request"
            );
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Asks `agent`'s chain for a streamed answer. A backend that fails before its first
    /// event is retried, then the next one is tried; once events flow, an error ends the
    /// stream. Tool calls a model writes as text are in the final
    /// [`StreamEvent::Done`] answer (its text deltas were already sent as they came).
    pub async fn chat_stream(
        &self,
        agent: &str,
        request: ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<ChatStream> {
        let (request, redactions) = self.redact(request);
        let mut failed = Vec::new();
        for name in self.chain(agent) {
            let entry = self.entry(&name)?;
            match self.open_stream(entry, agent, &request, cancel).await {
                Ok((inner, first, started)) => {
                    let forward = Forward {
                        entry: entry.clone(),
                        agent: agent.to_owned(),
                        tools: request.tools.clone(),
                        usage: self.usage.clone(),
                        cancel: cancel.clone(),
                        deadline: started + self.timeouts.total(),
                        started,
                        redactions,
                        failed_over: failed,
                        total: self.timeouts.total(),
                    };
                    let (sender, outer) = ChatStream::channel();
                    tokio::spawn(forward.run(inner, first, sender));
                    return Ok(outer);
                }
                Err(error) if error.should_fall_back() => {
                    tracing::warn!(agent, backend = %name, kind = error.kind(), %error, "LLM backend failed; trying the next one");
                    failed.push(attempt(entry, &error));
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::AllFailed {
            route: agent.to_owned(),
            attempts: failed,
        })
    }

    /// Opens a stream on `entry` and waits for its first event, with retries.
    async fn open_stream(
        &self,
        entry: &Entry,
        agent: &str,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<(ChatStream, StreamEvent, Instant)> {
        let prepared = match self.prepare(entry, request) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.record_error(entry, agent, &error);
                return Err(error);
            }
        };
        let first_token = self.timeouts.first_token().min(self.timeouts.total());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let opened = async {
                let mut stream = entry.backend.chat_stream(&prepared).await?;
                match stream.next().await {
                    Some(Ok(event)) => Ok((stream, event)),
                    Some(Err(error)) => Err(error),
                    None => Err(Error::BadResponse {
                        backend: entry.backend.name().to_owned(),
                        message: "the stream ended before its first event".into(),
                    }),
                }
            };
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::Cancelled),
                result = tokio::time::timeout(first_token, opened) => {
                    result.unwrap_or_else(|_| Err(timeout(entry, TimeoutPhase::FirstToken, first_token)))
                }
            };
            let error = match result {
                Ok((stream, first)) => return Ok((stream, first, started)),
                Err(error) => self.fill_context(error, entry),
            };
            self.record_error(entry, agent, &error);
            let Some(wait) = self.retry_wait(&error, attempt) else {
                return Err(error);
            };
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Forwards a backend's stream to the caller, enforcing the total deadline and
/// cancellation, and finishing the final answer.
struct Forward {
    entry: Entry,
    agent: String,
    tools: Vec<ToolDefinition>,
    usage: Usage,
    cancel: CancellationToken,
    started: Instant,
    deadline: Instant,
    total: Duration,
    redactions: usize,
    failed_over: Vec<FailedAttempt>,
}

impl Forward {
    async fn run(
        self,
        mut inner: ChatStream,
        first: StreamEvent,
        sender: tokio::sync::mpsc::Sender<Result<StreamEvent>>,
    ) {
        let mut next = Some(Ok(first));
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Err(Error::Cancelled),
                    result = tokio::time::timeout_at(self.deadline.into(), inner.next()) => match result {
                        Err(_) => Err(timeout(&self.entry, TimeoutPhase::Total, self.total)),
                        Ok(None) => Err(crate::http::truncated(self.entry.backend.name())),
                        Ok(Some(event)) => event,
                    },
                },
            };
            match event {
                Ok(StreamEvent::Done(mut response)) => {
                    finish_response(&mut response, &self.entry, &self.tools);
                    response.latency = self.started.elapsed();
                    response.cost_usd = self
                        .entry
                        .prices
                        .map(|p| p.cost(response.usage.input, response.usage.output));
                    response.redactions = self.redactions;
                    response.failed_over = self.failed_over;
                    self.usage.record_success(
                        self.entry.backend.name(),
                        self.entry.backend.model(),
                        &self.agent,
                        response.usage.input,
                        response.usage.output,
                        response.latency,
                        response.cost_usd.unwrap_or(0.0),
                        self.redactions,
                    );
                    let _ = sender.send(Ok(StreamEvent::Done(response))).await;
                    return;
                }
                Ok(event) => {
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    if !matches!(error, Error::Cancelled) {
                        self.usage.record_error(
                            self.entry.backend.name(),
                            self.entry.backend.model(),
                            &self.agent,
                            error.kind(),
                        );
                    }
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        }
    }
}

/// Fills in what the router knows and the backend does not: its name, the model, and
/// tool calls the model wrote as text.
fn finish_response(response: &mut ChatResponse, entry: &Entry, tools: &[ToolDefinition]) {
    response.backend = entry.backend.name().to_owned();
    response.offline = entry.backend.capabilities().offline;
    if response.model.is_empty() {
        response.model = entry.backend.model().to_owned();
    }
    if !tools.is_empty() && response.tool_calls.is_empty() && !response.offline {
        let (calls, rest) = extract::extract_tool_calls(&response.text, tools);
        if !calls.is_empty() {
            response.tool_calls = calls;
            response.text = rest;
            response.finish = FinishReason::ToolCalls;
        }
    }
}

impl Router {
    /// Errors from providers name the backend; the router adds what it knows: a context
    /// error's model and window, a connect timeout's length.
    fn fill_context(&self, error: Error, entry: &Entry) -> Error {
        fill_context(error, entry, self.timeouts.connect())
    }
}

fn fill_context(error: Error, entry: &Entry, connect_timeout: Duration) -> Error {
    match error {
        Error::Timeout {
            backend,
            phase: TimeoutPhase::Connect,
            ..
        } => Error::Timeout {
            backend,
            phase: TimeoutPhase::Connect,
            after: connect_timeout,
        },
        Error::ContextTooLong {
            backend, needed, ..
        } => Error::ContextTooLong {
            backend,
            model: entry.backend.model().to_owned(),
            needed,
            window: entry.window,
        },
        Error::BadResponse { backend, message } if backend.is_empty() => Error::BadResponse {
            backend: entry.backend.name().to_owned(),
            message,
        },
        other => other,
    }
}

fn timeout(entry: &Entry, phase: TimeoutPhase, after: Duration) -> Error {
    Error::Timeout {
        backend: entry.backend.name().to_owned(),
        phase,
        after,
    }
}

fn attempt(entry: &Entry, error: &Error) -> FailedAttempt {
    FailedAttempt {
        backend: entry.backend.name().to_owned(),
        model: entry.backend.model().to_owned(),
        kind: error.kind().to_owned(),
        message: error.to_string(),
    }
}

fn unreachable_error<T>(entry: &Entry) -> Result<T> {
    Err(Error::BadResponse {
        backend: entry.backend.name().to_owned(),
        message: "no attempt was made".into(),
    })
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

/// Builds the backend `name` from its configuration; credentials come through `env`.
fn build_backend(
    name: &str,
    config: &BackendConfig,
    env: Env<'_>,
    client: &reqwest::Client,
) -> Arc<dyn Backend> {
    let model = config.model_name().to_owned();
    let endpoint = config.endpoint(env);
    let key_env = config
        .api_key_env
        .clone()
        .or_else(|| config.kind.default_key_env().map(str::to_owned));
    let key = key_env.as_deref().and_then(env);
    let missing = |what: String| -> Arc<dyn Backend> {
        Arc::new(Unavailable::new(
            name,
            config::kind_name(config.kind),
            &model,
            what,
        ))
    };
    let native = |default_tools: bool, default_schema: bool| {
        (
            config.native_tools.unwrap_or(default_tools),
            config.native_schema.unwrap_or(default_schema),
        )
    };
    match config.kind {
        BackendKind::Offline => Arc::new(Offline::new(name)),
        BackendKind::Openai | BackendKind::OpenaiCompatible => {
            let (flavor, credential) = match (config.kind, key) {
                (BackendKind::Openai, None) => {
                    return missing(format!(
                        "the API key variable {} is not set",
                        key_env.unwrap_or_default()
                    ))
                }
                (BackendKind::Openai, Some(key)) => (Flavor::OpenAi, Credential::Bearer(key)),
                (_, Some(key)) => (Flavor::Compatible, Credential::Bearer(key)),
                (_, None) => (Flavor::Compatible, Credential::None),
            };
            let (tools, schema) = native(true, true);
            Arc::new(
                OpenAi::new(name, endpoint, model, flavor, credential, client.clone())
                    .with_capabilities(tools, schema),
            )
        }
        BackendKind::AzureOpenai => {
            let credential = match (key, config.token_env.as_deref().and_then(env)) {
                (_, Some(token)) => Credential::Bearer(token),
                (Some(key), None) => Credential::AzureApiKey(key),
                (None, None) => {
                    return missing(format!(
                        "neither the API key variable {} nor a token_env is set",
                        key_env.unwrap_or_default()
                    ))
                }
            };
            let flavor = Flavor::Azure {
                deployment: model.clone(),
                api_version: config
                    .api_version
                    .clone()
                    .unwrap_or_else(|| crate::providers::openai::AZURE_API_VERSION.to_owned()),
            };
            let (tools, schema) = native(true, true);
            Arc::new(
                OpenAi::new(
                    name,
                    endpoint,
                    model.clone(),
                    flavor,
                    credential,
                    client.clone(),
                )
                .with_capabilities(tools, schema),
            )
        }
        BackendKind::Ollama => {
            let (tools, schema) = native(true, true);
            let mut ollama =
                Ollama::new(name, endpoint, model, client.clone()).with_capabilities(tools, schema);
            if let Some(window) = config.context_window {
                ollama = ollama.with_context_window(window);
            }
            Arc::new(ollama)
        }
        BackendKind::Anthropic => match key {
            Some(key) => Arc::new(Anthropic::new(name, endpoint, model, key, client.clone())),
            None => missing(format!(
                "the API key variable {} is not set",
                key_env.unwrap_or_default()
            )),
        },
        BackendKind::Gemini => match key {
            Some(key) => Arc::new(Gemini::new(name, endpoint, model, key, client.clone())),
            None => missing(format!(
                "the API key variable {} is not set",
                key_env.unwrap_or_default()
            )),
        },
    }
}
