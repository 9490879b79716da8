//! The router: what every request goes through, whatever the backend. It redacts the
//! request, picks the agent's model chain, adapts the request to each backend (tools and
//! schemas in the prompt when not native, history fitted to the context window: old
//! turns summarised by the model, or dropped), calls with deadlines, retries with backoff
//! and jitter, and cancellation, reads tool calls from text, validates and repairs
//! structured output inside the window, falls back along the chain, and accounts for
//! every call, per thread.

use crate::backend::Backend;
use crate::chat::{
    ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseSchema, StreamEvent, TokenUsage,
    ToolDefinition,
};
use crate::config::{self, BackendConfig, BackendKind, Env, LlmConfig, RetryConfig, Timeouts};
use crate::error::{Error, FailedAttempt, Result, TimeoutPhase};
use crate::extract;
use crate::message::{Message, Role};
use crate::offline::Offline;
use crate::prompt;
use crate::providers::openai::{Credential, Flavor};
use crate::providers::{Anthropic, Gemini, Ollama, OpenAi};
use crate::redact::Redactor;
use crate::tokens::{self, ContextFit, Counter, Family};
use crate::unavailable::Unavailable;
use crate::usage::{Prices, Purpose, Usage, UsageRecord};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// At most this many schema problems are sent back to the model in a repair request.
const MAX_REPORTED_PROBLEMS: usize = 8;

/// How long discovery waits for a local Ollama by default.
pub const OLLAMA_PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The most tokens a history summary may have: enough for the facts of a long
/// conversation, small next to the 8k window of a local model.
pub const SUMMARY_MAX_TOKENS: u32 = 512;

/// Tokens of the marker that introduces a summary in the conversation.
const SUMMARY_NOTE_TOKENS: usize = 64;

/// How many summaries the router remembers, so a long thread's next turn does not pay
/// for the same summary again.
const SUMMARY_CACHE: usize = 32;

/// Error messages stored with a usage record are cut to this many characters.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// A schema problem sent back for repair is cut to this many characters (a problem
/// quotes the offending value, which can be the whole answer).
const MAX_PROBLEM_CHARS: usize = 300;

/// Below this many tokens of room a repair request is not sent: the answer fails with
/// the problems found.
const MIN_REPAIR_TOKENS: usize = 64;

/// Tokens left free when the room for a cut text is worked out, for rounding.
const FIT_SLACK_TOKENS: usize = 8;

/// What the summariser is told.
const SUMMARY_INSTRUCTIONS: &str = "You summarise the earlier part of a conversation \
between a person, deckhand (a Kubernetes DevOps assistant) and its tools, so that the \
conversation can go on in a smaller context window. Keep every fact that may matter \
later: clusters, namespaces, workloads, files and other names; what the person asked and \
decided; tool results that matter (errors, states, numbers); what was done and what is \
still open. Leave out greetings and repetition. Write plain text, at most 300 words, \
with no preamble.";

/// The first words of every summary put into a conversation, so neither the model nor
/// a reader mistakes it for something said.
pub const SUMMARY_MARKER: &str = "[Summary of the";

/// A backend with what the router knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) endpoint: String,
    pub(crate) window: usize,
    counter: Counter,
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

/// Where and how long [`Router::discover_with`] looks for a local Ollama when
/// `OLLAMA_HOST` does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Ollama's URL when `OLLAMA_HOST` is not set.
    pub ollama_url: String,
    /// How long the probe (`GET /api/tags`) may take, connecting included.
    pub probe_timeout: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            ollama_url: crate::providers::ollama::OLLAMA_DEFAULT_URL.to_owned(),
            probe_timeout: OLLAMA_PROBE_TIMEOUT,
        }
    }
}

/// Who a call is for: the agent (route) and the thread, for the ledger.
#[derive(Debug, Clone, Copy)]
struct Ctx<'a> {
    agent: &'a str,
    thread: Option<&'a str>,
}

/// Routes requests to backends. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Router {
    entries: BTreeMap<String, Entry>,
    routes: BTreeMap<String, Vec<String>>,
    offline_fallback: bool,
    summarize_history: bool,
    timeouts: Timeouts,
    retry: RetryConfig,
    max_repairs: u32,
    max_tool_output_tokens: usize,
    redactor: Redactor,
    usage: Usage,
    notes: Vec<String>,
    /// Recent summaries by a hash of the backend and the transcript.
    summaries: Mutex<VecDeque<(u64, String)>>,
}

impl Router {
    /// A router with `config`'s settings and no backends but the offline one.
    pub fn new(config: &LlmConfig) -> Result<Self> {
        config.validate()?;
        let mut router = Self {
            entries: BTreeMap::new(),
            routes: BTreeMap::new(),
            offline_fallback: config.offline_fallback,
            summarize_history: config.summarize_history,
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
            max_repairs: config.max_repairs,
            max_tool_output_tokens: config.max_tool_output_tokens,
            redactor: Redactor::new(&config.redaction.extra_patterns)?,
            usage: Usage::new(),
            notes: Vec::new(),
            summaries: Mutex::new(VecDeque::new()),
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

    /// Like [`Router::from_config`], and asks Ollama which models it has: the one at
    /// `OLLAMA_HOST` (then a model it has pulled replaces the default when
    /// `OLLAMA_MODEL` is not set), or, when nothing is configured or found in the
    /// environment, a local Ollama on its default port, used if it answers (with
    /// `OLLAMA_MODEL` or the first model it has pulled). The probe takes at most
    /// [`OLLAMA_PROBE_TIMEOUT`].
    pub async fn discover(config: &LlmConfig, env: Env<'_>) -> Result<Self> {
        Self::discover_with(config, env, &Discovery::default()).await
    }

    /// [`Router::discover`] with another default Ollama URL or probe deadline.
    pub async fn discover_with(
        config: &LlmConfig,
        env: Env<'_>,
        discovery: &Discovery,
    ) -> Result<Self> {
        let mut config = config.clone();
        let mut notes = Vec::new();
        if config.discover && config.backends.is_empty() {
            let host = env("OLLAMA_HOST");
            notes = config.discover_from_env(env);
            let url = host
                .as_deref()
                .map(config::ollama_url)
                .unwrap_or_else(|| discovery.ollama_url.clone());
            if host.is_some() || config.backends.is_empty() {
                let probed = probe_ollama(&url, discovery.probe_timeout).await;
                notes.push(adopt_ollama(
                    &mut config,
                    &url,
                    host.is_some(),
                    env("OLLAMA_MODEL"),
                    probed,
                ));
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
                counter: Counter::for_model(&model),
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

    /// The accounting ledger. `router.usage().add_sink(..)` sends every call's record
    /// to a store too; `router.usage().snapshot().prometheus()` renders the metrics.
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

    /// The token counter of backend `name` (exact for OpenAI models, an estimate
    /// otherwise), or `None` when there is no such backend.
    pub fn counter(&self, name: &str) -> Option<Counter> {
        self.entries.get(name).map(|entry| entry.counter)
    }

    /// How `request` measures against the tightest backend of `agent`'s chain: for each
    /// backend with a model, the request as that backend would get it (tools and schema
    /// in the prompt when not native), counted with its counter against its window; the
    /// one with the least room left. `None` when the chain has no model (offline only).
    /// Set `response_schema` ([`ResponseSchema::of`]) to measure a structured request.
    pub fn measure(&self, agent: &str, request: &ChatRequest) -> Option<ContextFit> {
        self.chain(agent)
            .iter()
            .filter_map(|name| self.entries.get(name))
            .filter(|entry| !entry.backend.capabilities().offline)
            .map(|entry| {
                let adapted = prompt::adapt(request, entry.backend.capabilities());
                ContextFit {
                    backend: entry.backend.name().to_owned(),
                    model: entry.backend.model().to_owned(),
                    window: entry.window,
                    prompt_tokens: entry.counter.count_request(&adapted),
                    answer_reserve: tokens::answer_reserve(&adapted),
                    counter: entry.counter,
                }
            })
            .min_by_key(|fit| fit.window as i128 - (fit.prompt_tokens + fit.answer_reserve) as i128)
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
        let schema = ResponseSchema::of::<T>()?;
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
        let ctx = Ctx {
            agent,
            thread: request.thread_id.as_deref(),
        };
        let mut failed = Vec::new();
        for name in self.chain(agent) {
            let entry = self.entry(&name)?;
            let span = tracing::info_span!("llm_request", agent, thread_id = ctx.thread, backend = %name, model = entry.backend.model());
            match self
                .on_backend(entry, ctx, &request, schema.as_ref(), cancel, redactions)
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
    /// window. Long tool outputs are cut; when it still does not fit, the oldest turns
    /// are summarised by the model (one bounded call; its usage is returned), or
    /// dropped with a note when that fails; what still does not fit is
    /// `context_too_long`.
    async fn prepare(
        &self,
        entry: &Entry,
        ctx: Ctx<'_>,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<(ChatRequest, TokenUsage)> {
        let mut prepared = prompt::adapt(request, entry.backend.capabilities());
        let mut used = TokenUsage::default();
        if entry.backend.capabilities().offline {
            return Ok((prepared, used));
        }
        let counter = entry.counter;
        let budget = entry
            .window
            .saturating_sub(tokens::answer_reserve(&prepared));
        tokens::cut_tool_outputs(counter, &mut prepared, self.max_tool_output_tokens);
        if self.summarize_history && counter.count_request(&prepared) > budget {
            // Take out enough that the summary itself fits in the room freed.
            let target = budget.saturating_sub(SUMMARY_MAX_TOKENS as usize + SUMMARY_NOTE_TOKENS);
            let old = tokens::oldest_to_remove(counter, &prepared, target);
            if !old.is_empty() {
                match self.summarize(entry, ctx, &prepared, &old, cancel).await {
                    Ok((summary, usage)) => {
                        used = usage;
                        let note = Message::system(format!(
                            "{SUMMARY_MARKER} {} earliest messages of this conversation, written by the model {} because they no longer fit its context window; the messages themselves were left out:]\n{summary}",
                            old.len(),
                            entry.backend.model()
                        ));
                        tokens::replace_with(&mut prepared, &old, note);
                    }
                    Err(Error::Cancelled) => return Err(Error::Cancelled),
                    Err(error) => {
                        tracing::warn!(backend = entry.backend.name(), kind = error.kind(), %error, "the history summary failed; dropping the oldest turns instead");
                    }
                }
            }
        }
        tokens::fit(
            counter,
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
        Ok((prepared, used))
    }

    /// Asks `entry`'s model for a summary of the messages at `indices` of `request`:
    /// one attempt, at most [`SUMMARY_MAX_TOKENS`], the transcript cut to its window.
    async fn summarize(
        &self,
        entry: &Entry,
        ctx: Ctx<'_>,
        request: &ChatRequest,
        indices: &[usize],
        cancel: &CancellationToken,
    ) -> Result<(String, TokenUsage)> {
        let transcript = indices
            .iter()
            .map(|&index| transcript_entry(&request.messages[index]))
            .collect::<Vec<_>>()
            .join("\n\n");
        let key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            entry.backend.name().hash(&mut hasher);
            transcript.hash(&mut hasher);
            hasher.finish()
        };
        let cached = self
            .summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, summary)| summary.clone());
        if let Some(summary) = cached {
            return Ok((summary, TokenUsage::default()));
        }
        let ask = |transcript: &str| {
            vec![
                Message::system(SUMMARY_INSTRUCTIONS),
                Message::user(format!(
                    "The earlier part of the conversation:\n\n{transcript}\n\nWrite the summary now."
                )),
            ]
        };
        // The transcript gets what the window leaves after the instructions and the
        // answer (a cut's note counts in what truncate_middle keeps).
        let around = entry.counter.count_request(&ChatRequest::new(ask("")));
        let room = entry
            .window
            .saturating_sub(SUMMARY_MAX_TOKENS as usize + around + FIT_SLACK_TOKENS);
        let transcript = entry.counter.truncate_middle(&transcript, room);
        let mut summary_request = ChatRequest::new(ask(&transcript))
            .with_temperature(0.0)
            .with_max_tokens(SUMMARY_MAX_TOKENS);
        summary_request.thread_id = ctx.thread.map(str::to_owned);
        let summary_request = prompt::adapt(&summary_request, entry.backend.capabilities());
        let started = Instant::now();
        let result = self.attempt_once(entry, &summary_request, cancel).await;
        let mut record = record_of(entry, ctx, Purpose::Summary);
        record.latency = started.elapsed();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if !matches!(error, Error::Cancelled) {
                    fail_record(&mut record, &error);
                    self.usage.record(record).await;
                }
                return Err(error);
            }
        };
        record.answered = true;
        record.tokens_in = response.usage.input;
        record.tokens_out = response.usage.output;
        record.cost_usd = entry
            .prices
            .map(|p| p.cost(response.usage.input, response.usage.output));
        let summary = response.text.trim().to_owned();
        if summary.is_empty() {
            let error = Error::BadResponse {
                backend: entry.backend.name().to_owned(),
                message: "the history summary came back empty".into(),
            };
            fail_record(&mut record, &error);
            self.usage.record(record).await;
            return Err(error);
        }
        self.usage.record(record).await;
        let mut cache = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= SUMMARY_CACHE {
            cache.pop_front();
        }
        cache.push_back((key, summary.clone()));
        Ok((summary, response.usage))
    }

    async fn on_backend(
        &self,
        entry: &Entry,
        ctx: Ctx<'_>,
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
        let (mut prepared, mut total) = match self.prepare(entry, ctx, &request, cancel).await {
            Ok(prepared) => prepared,
            Err(error) => {
                self.record_failure(entry, ctx, Purpose::Chat, Duration::ZERO, &error)
                    .await;
                return Err(error);
            }
        };
        let prompt_len = prepared.messages.len();
        let attempts = 1 + schema.map_or(0, |_| self.max_repairs);
        for attempt in 1..=attempts {
            let purpose = match attempt {
                1 => Purpose::Chat,
                _ => Purpose::Repair,
            };
            let mut response = self.call(entry, ctx, &prepared, purpose, cancel).await?;
            finish_response(&mut response, entry, &request.tools);
            total.input += response.usage.input;
            total.output += response.usage.output;
            let mut record = record_of(entry, ctx, purpose);
            record.answered = true;
            record.latency = response.latency;
            record.tokens_in = response.usage.input;
            record.tokens_out = response.usage.output;
            record.cost_usd = entry
                .prices
                .map(|p| p.cost(response.usage.input, response.usage.output));
            record.redactions = if attempt == 1 { redactions as u64 } else { 0 };
            response.usage = total;
            response.latency = started.elapsed();
            response.cost_usd = entry.prices.map(|p| p.cost(total.input, total.output));
            response.redactions = redactions;
            let Some((_, validator)) = schema else {
                self.usage.record(record).await;
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
                        self.usage.record(record).await;
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
                fail_record(&mut record, &error);
                self.usage.record(record).await;
                return Err(error);
            }
            // Only the latest answer and its problems follow the prompt, cut to the room
            // left, so every repair round stays inside the window.
            prepared.messages.truncate(prompt_len);
            if !push_repair(entry, &mut prepared, response.text.clone(), &problems) {
                let error = Error::SchemaInvalid {
                    backend: entry.backend.name().to_owned(),
                    attempts: attempt,
                    problems,
                    last_output: response.text,
                };
                fail_record(&mut record, &error);
                self.usage.record(record).await;
                return Err(error);
            }
            self.usage.record(record).await;
        }
        unreachable_error(entry)
    }

    /// Records a failed call (a cancellation is not a failure of the backend).
    async fn record_failure(
        &self,
        entry: &Entry,
        ctx: Ctx<'_>,
        purpose: Purpose,
        latency: Duration,
        error: &Error,
    ) {
        if matches!(error, Error::Cancelled) {
            return;
        }
        let mut record = record_of(entry, ctx, purpose);
        record.latency = latency;
        fail_record(&mut record, error);
        self.usage.record(record).await;
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

    /// One whole-answer call to `entry`, bounded by the total deadline and `cancel`.
    async fn attempt_once(
        &self,
        entry: &Entry,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<ChatResponse> {
        let total = self.timeouts.total();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Error::Cancelled),
            result = tokio::time::timeout(total, entry.backend.chat(request)) => {
                result.unwrap_or_else(|_| Err(timeout(entry, TimeoutPhase::Total, total)))
            }
        };
        result.map_err(|error| self.fill_context(error, entry))
    }

    /// One whole-answer call to `entry` with retries; each failed attempt is recorded,
    /// the answer's `latency` is its own attempt's (the caller records it).
    async fn call(
        &self,
        entry: &Entry,
        ctx: Ctx<'_>,
        request: &ChatRequest,
        purpose: Purpose,
        cancel: &CancellationToken,
    ) -> Result<ChatResponse> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let error = match self.attempt_once(entry, request, cancel).await {
                Ok(mut response) => {
                    response.latency = started.elapsed();
                    return Ok(response);
                }
                Err(error) => error,
            };
            self.record_failure(entry, ctx, purpose, started.elapsed(), &error)
                .await;
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
        let ctx = Ctx {
            agent,
            thread: request.thread_id.as_deref(),
        };
        let mut failed = Vec::new();
        for name in self.chain(agent) {
            let entry = self.entry(&name)?;
            match self.open_stream(entry, ctx, &request, cancel).await {
                Ok((inner, first, started, summary_usage)) => {
                    let forward = Forward {
                        entry: entry.clone(),
                        agent: agent.to_owned(),
                        thread: request.thread_id.clone(),
                        tools: request.tools.clone(),
                        usage: self.usage.clone(),
                        cancel: cancel.clone(),
                        deadline: started + self.timeouts.total(),
                        started,
                        redactions,
                        failed_over: failed,
                        total: self.timeouts.total(),
                        summary_usage,
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
        ctx: Ctx<'_>,
        request: &ChatRequest,
        cancel: &CancellationToken,
    ) -> Result<(ChatStream, StreamEvent, Instant, TokenUsage)> {
        let (prepared, summary_usage) = match self.prepare(entry, ctx, request, cancel).await {
            Ok(prepared) => prepared,
            Err(error) => {
                self.record_failure(entry, ctx, Purpose::Stream, Duration::ZERO, &error)
                    .await;
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
                Ok((stream, first)) => return Ok((stream, first, started, summary_usage)),
                Err(error) => self.fill_context(error, entry),
            };
            self.record_failure(entry, ctx, Purpose::Stream, started.elapsed(), &error)
                .await;
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

/// Asks the Ollama at `url` which models it has, within `timeout` (connecting
/// included); the error says why it did not answer.
async fn probe_ollama(url: &str, timeout: Duration) -> std::result::Result<Vec<String>, String> {
    let client = crate::http::client(timeout).map_err(|error| error.to_string())?;
    let probe = crate::providers::ollama::list_models(&client, url, "ollama");
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(models)) => Ok(models),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Uses what the Ollama probe found: with `OLLAMA_HOST` (`from_host`), its backend is
/// already configured and keeps its place (an Ollama that does not answer yet is
/// fallen back from per request), and a pulled model replaces the default when
/// `OLLAMA_MODEL` is not set; without it, an Ollama that answers with a model becomes the
/// only backend. Returns the note for `check`.
fn adopt_ollama(
    config: &mut LlmConfig,
    url: &str,
    from_host: bool,
    model_env: Option<String>,
    probed: std::result::Result<Vec<String>, String>,
) -> String {
    let pulled = |models: &[String], wanted: &str| {
        models
            .iter()
            .any(|m| m == wanted || m.strip_suffix(":latest") == Some(wanted))
    };
    match (probed, from_host) {
        (Ok(models), true) => {
            let Some(backend) = config.backends.get_mut("ollama") else {
                return format!("an Ollama answers at {url}");
            };
            let wanted = backend.model_name().to_owned();
            match (model_env, pulled(&models, &wanted), models.first()) {
                (Some(_), _, _) | (None, true, _) => {
                    format!("the Ollama at {url} answers; using {wanted}")
                }
                (None, false, Some(first)) => {
                    let note = format!(
                        "the Ollama at {url} answers but has not pulled {wanted}; using {first}, the first model it has"
                    );
                    backend.model = Some(first.clone());
                    note
                }
                (None, false, None) => format!(
                    "the Ollama at {url} answers but has no model pulled; run `ollama pull {wanted}`"
                ),
            }
        }
        (Err(why), true) => format!(
            "the Ollama at {url} (OLLAMA_HOST) does not answer now ({why}); its requests fall back along the route until it does"
        ),
        (Ok(models), false) => match model_env.or_else(|| models.first().cloned()) {
            Some(model) => {
                config.backends.insert(
                    "ollama".into(),
                    BackendConfig::new(BackendKind::Ollama, model.clone()).with_base_url(url),
                );
                config
                    .routes
                    .entry(config::DEFAULT_ROUTE.into())
                    .or_insert_with(|| vec!["ollama".into()]);
                format!("a local Ollama answers at {url}; using {model}")
            }
            None => format!("a local Ollama answers at {url} but has no model pulled"),
        },
        (Err(why), false) => format!(
            "no backend configured, none in the environment, and no Ollama at {url} ({why}): \
             every agent uses the offline backend"
        ),
    }
}

/// A usage record of a call to `entry` for `ctx`, not yet filled in.
fn record_of(entry: &Entry, ctx: Ctx<'_>, purpose: Purpose) -> UsageRecord {
    UsageRecord {
        thread_id: ctx.thread.map(str::to_owned),
        at: SystemTime::now(),
        agent: ctx.agent.to_owned(),
        backend: entry.backend.name().to_owned(),
        model: entry.backend.model().to_owned(),
        purpose,
        tokens_in: 0,
        tokens_out: 0,
        latency: Duration::ZERO,
        answered: false,
        error: None,
        error_message: None,
        cost_usd: None,
        redactions: 0,
    }
}

/// Marks `record` with `error`.
fn fail_record(record: &mut UsageRecord, error: &Error) {
    record.error = Some(error.kind().to_owned());
    record.error_message = Some(
        error
            .to_string()
            .chars()
            .take(MAX_ERROR_MESSAGE_CHARS)
            .collect(),
    );
}

/// Appends the repair request for an answer that broke its schema: the answer and its
/// problems, cut so that the request stays inside the window (the problems first get up
/// to half of the room, the answer is cut in the middle to the rest). `false`, and
/// nothing appended, when the window leaves no useful room for a repair.
fn push_repair(
    entry: &Entry,
    prepared: &mut ChatRequest,
    answer: String,
    problems: &[String],
) -> bool {
    let counter = entry.counter;
    let budget = entry
        .window
        .saturating_sub(tokens::answer_reserve(prepared));
    let overhead = 2 * counter.count_message(&Message::assistant(""));
    let room = budget.saturating_sub(counter.count_request(prepared) + overhead + FIT_SLACK_TOKENS);
    if room < MIN_REPAIR_TOKENS {
        return false;
    }
    let problems = problems
        .iter()
        .map(|problem| cut_chars(problem, MAX_PROBLEM_CHARS))
        .collect::<Vec<_>>()
        .join("\n- ");
    let repair = counter.truncate_middle(
        &format!(
            "That answer does not match the required JSON Schema:\n- {problems}\nReply again with only the corrected JSON document."
        ),
        room / 2,
    );
    let answer = counter.truncate_middle(&answer, room.saturating_sub(counter.count_text(&repair)));
    prepared.messages.push(Message::assistant(answer));
    prepared.messages.push(Message::user(repair));
    true
}

/// `text` cut to `max` characters, with `…` where it was cut.
fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// One removed message as the summariser reads it.
fn transcript_entry(message: &Message) -> String {
    let who = match message.role {
        Role::System => "system".to_owned(),
        Role::User => "person".to_owned(),
        Role::Assistant => "assistant".to_owned(),
        Role::Tool => format!("result of tool {}", message.name.as_deref().unwrap_or("?")),
    };
    let mut text = format!("[{who}] {}", message.content);
    for call in &message.tool_calls {
        text.push_str(&format!(
            "\n[assistant calls {}] {}",
            call.name, call.arguments
        ));
    }
    text
}

/// Forwards a backend's stream to the caller, enforcing the total deadline and
/// cancellation, and finishing the final answer.
struct Forward {
    entry: Entry,
    agent: String,
    thread: Option<String>,
    tools: Vec<ToolDefinition>,
    usage: Usage,
    cancel: CancellationToken,
    started: Instant,
    deadline: Instant,
    total: Duration,
    redactions: usize,
    failed_over: Vec<FailedAttempt>,
    /// Tokens a history summary used before the stream opened.
    summary_usage: TokenUsage,
}

impl Forward {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            agent: &self.agent,
            thread: self.thread.as_deref(),
        }
    }

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
                    let mut record = record_of(&self.entry, self.ctx(), Purpose::Stream);
                    record.answered = true;
                    record.latency = response.latency;
                    record.tokens_in = response.usage.input;
                    record.tokens_out = response.usage.output;
                    record.cost_usd = response.cost_usd;
                    record.redactions = self.redactions as u64;
                    self.usage.record(record).await;
                    response.usage.input += self.summary_usage.input;
                    response.usage.output += self.summary_usage.output;
                    response.failed_over = self.failed_over;
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
                        let mut record = record_of(&self.entry, self.ctx(), Purpose::Stream);
                        record.latency = self.started.elapsed();
                        fail_record(&mut record, &error);
                        self.usage.record(record).await;
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
