//! Accounting: every call to a backend becomes a [`UsageRecord`] (tokens, latency, error,
//! estimated cost, backend, model, agent and thread). The ledger ([`Usage`]) sums them
//! in memory per backend, model and agent for metrics ([`UsageSnapshot::prometheus`]),
//! and hands each to its [`UsageSink`]s, so a store can keep them per thread.

use crate::backend::BoxFuture;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long the router waits for one sink to take one record before it logs a warning
/// and moves on: a slow store must not hold up the agents for long.
pub const SINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A whole answer.
    Chat,
    /// A streamed answer.
    Stream,
    /// A request to repair structured output that broke its schema.
    Repair,
    /// A summary of old turns that did not fit the window.
    Summary,
}

impl Purpose {
    /// The name stored and shown (`chat`, `stream`, `repair`, `summary`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Stream => "stream",
            Self::Repair => "repair",
            Self::Summary => "summary",
        }
    }
}

/// One call to a backend: each attempt (a retry, a repair, a summary) is one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecord {
    /// The thread the call served ([`crate::ChatRequest::thread_id`]), if any.
    pub thread_id: Option<String>,
    /// When the call ended.
    pub at: SystemTime,
    /// The agent (route) that asked.
    pub agent: String,
    /// The backend's name.
    pub backend: String,
    /// The model.
    pub model: String,
    /// Why the call was made.
    pub purpose: Purpose,
    /// Prompt tokens, as the backend reported them (0 for a failed call).
    pub tokens_in: u64,
    /// Answer tokens, as the backend reported them.
    pub tokens_out: u64,
    /// How long the call took.
    pub latency: Duration,
    /// Whether the backend answered (false: the call failed; `error` says how).
    pub answered: bool,
    /// [`crate::Error::kind`] of what went wrong: a failed call, or an answer that
    /// still broke its schema after the last repair.
    pub error: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Estimated cost in US dollars, when the backend's prices are configured.
    pub cost_usd: Option<f64>,
    /// Secrets redacted from the request before it was sent.
    pub redactions: u64,
}

/// Where usage records go besides the in-memory ledger: the thread store implements it
/// (through [`sink_fn`] in the binary) to keep usage per thread.
pub trait UsageSink: Send + Sync + std::fmt::Debug {
    /// The sink's name, for logs.
    fn name(&self) -> &str;

    /// Stores one record.
    ///
    /// # Errors
    /// [`Error::UsageSink`]; the router logs it and carries on.
    fn record<'a>(&'a self, record: &'a UsageRecord) -> BoxFuture<'a, Result<()>>;
}

/// A sink from an async function, so a store's method can be plugged in without a type
/// of its own: `sink_fn("store", move |record| { let db = db.clone(); async move {
/// db.record_llm_usage(&convert(record)).await } })`.
pub fn sink_fn<F, Fut, E>(name: impl Into<String>, function: F) -> Arc<dyn UsageSink>
where
    F: Fn(UsageRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Arc::new(FnSink {
        name: name.into(),
        function,
    })
}

struct FnSink<F> {
    name: String,
    function: F,
}

impl<F> std::fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSink").field("name", &self.name).finish()
    }
}

impl<F, Fut, E> UsageSink for FnSink<F>
where
    F: Fn(UsageRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn record<'a>(&'a self, record: &'a UsageRecord) -> BoxFuture<'a, Result<()>> {
        let future = (self.function)(record.clone());
        Box::pin(async move {
            future.await.map_err(|error| Error::UsageSink {
                sink: self.name.clone(),
                source: error.into(),
            })
        })
    }
}

/// Prices of a model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Per million prompt tokens.
    pub input_per_mtok: f64,
    /// Per million answer tokens.
    pub output_per_mtok: f64,
}

impl Prices {
    /// The estimated cost of these tokens.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok) / 1e6
    }
}

/// Totals for one backend, model and agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// The backend's name.
    pub backend: String,
    /// The model.
    pub model: String,
    /// The agent (route) that asked.
    pub agent: String,
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed (each attempt counts).
    pub errors: u64,
    /// Failures by [`crate::Error::kind`].
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Answer tokens.
    pub tokens_out: u64,
    /// Sum of the answered requests' latencies, in milliseconds.
    pub latency_ms_total: u64,
    /// The slowest answered request, in milliseconds.
    pub latency_ms_max: u64,
    /// Estimated cost in US dollars (0 when no prices are configured).
    pub cost_usd: f64,
    /// Secrets redacted from this row's requests.
    pub redactions: u64,
}

/// Every row, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageSnapshot {
    /// One row per backend, model and agent.
    pub rows: Vec<UsageRow>,
}

impl UsageSnapshot {
    /// Sums the rows.
    pub fn total(&self) -> UsageRow {
        let mut total = UsageRow {
            backend: "*".into(),
            model: "*".into(),
            agent: "*".into(),
            ..UsageRow::default()
        };
        for row in &self.rows {
            total.requests += row.requests;
            total.errors += row.errors;
            for (kind, n) in &row.errors_by_kind {
                *total.errors_by_kind.entry(kind.clone()).or_default() += n;
            }
            total.tokens_in += row.tokens_in;
            total.tokens_out += row.tokens_out;
            total.latency_ms_total += row.latency_ms_total;
            total.latency_ms_max = total.latency_ms_max.max(row.latency_ms_max);
            total.cost_usd += row.cost_usd;
            total.redactions += row.redactions;
        }
        total
    }
}

impl UsageSnapshot {
    /// The rows in Prometheus' text exposition format, for the API's `/metrics`:
    /// `deckhand_llm_requests_total`, `deckhand_llm_errors_total` (by `kind`),
    /// `deckhand_llm_tokens_total` (by `direction`), `deckhand_llm_latency_seconds_sum`,
    /// `deckhand_llm_latency_seconds_max`, `deckhand_llm_cost_usd_total` and
    /// `deckhand_llm_redactions_total`, each labelled with `backend`, `model` and `agent`.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let labels = |row: &UsageRow| {
            format!(
                "backend=\"{}\",model=\"{}\",agent=\"{}\"",
                escape(&row.backend),
                escape(&row.model),
                escape(&row.agent)
            )
        };
        let each = |f: &dyn Fn(&UsageRow) -> String| -> Vec<(String, String)> {
            self.rows.iter().map(|row| (labels(row), f(row))).collect()
        };
        family(
            "deckhand_llm_requests_total",
            "counter",
            "LLM requests answered.",
            each(&|r| r.requests.to_string()),
        );
        let errors = self
            .rows
            .iter()
            .flat_map(|row| {
                row.errors_by_kind.iter().map(move |(kind, n)| {
                    (
                        format!("{},kind=\"{}\"", labels(row), escape(kind)),
                        n.to_string(),
                    )
                })
            })
            .collect();
        family(
            "deckhand_llm_errors_total",
            "counter",
            "Failed LLM attempts, by error kind.",
            errors,
        );
        let tokens = self
            .rows
            .iter()
            .flat_map(|row| {
                [
                    (
                        format!("{},direction=\"in\"", labels(row)),
                        row.tokens_in.to_string(),
                    ),
                    (
                        format!("{},direction=\"out\"", labels(row)),
                        row.tokens_out.to_string(),
                    ),
                ]
            })
            .collect();
        family(
            "deckhand_llm_tokens_total",
            "counter",
            "Tokens sent (in) and generated (out).",
            tokens,
        );
        family(
            "deckhand_llm_latency_seconds_sum",
            "counter",
            "Summed latency of answered requests.",
            each(&|r| format!("{}", r.latency_ms_total as f64 / 1000.0)),
        );
        family(
            "deckhand_llm_latency_seconds_max",
            "gauge",
            "The slowest answered request.",
            each(&|r| format!("{}", r.latency_ms_max as f64 / 1000.0)),
        );
        family(
            "deckhand_llm_cost_usd_total",
            "counter",
            "Estimated cost from the configured prices.",
            each(&|r| format!("{}", r.cost_usd)),
        );
        family(
            "deckhand_llm_redactions_total",
            "counter",
            "Secrets redacted before sending.",
            each(&|r| r.redactions.to_string()),
        );
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type Key = (String, String, String);

/// The ledger, shared by cheap clones: totals in memory, and the sinks every record
/// goes to.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    rows: Arc<Mutex<BTreeMap<Key, UsageRow>>>,
    sinks: Arc<Mutex<Vec<Arc<dyn UsageSink>>>>,
}

impl Usage {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_row(&self, backend: &str, model: &str, agent: &str, f: impl FnOnce(&mut UsageRow)) {
        let key = (backend.to_owned(), model.to_owned(), agent.to_owned());
        // A poisoned lock only means another thread panicked mid-update of counters.
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(key).or_insert_with(|| UsageRow {
            backend: backend.to_owned(),
            model: model.to_owned(),
            agent: agent.to_owned(),
            ..UsageRow::default()
        });
        f(row);
    }

    /// Sends every record from now on to `sink` too (after the ones added before).
    /// Works through a shared router: `router.usage().add_sink(sink)`.
    pub fn add_sink(&self, sink: Arc<dyn UsageSink>) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }

    /// Adds `record` to the in-memory totals only.
    pub fn tally(&self, record: &UsageRecord) {
        let ms = u64::try_from(record.latency.as_millis()).unwrap_or(u64::MAX);
        self.with_row(&record.backend, &record.model, &record.agent, |row| {
            if record.answered {
                row.requests += 1;
                row.tokens_in += record.tokens_in;
                row.tokens_out += record.tokens_out;
                row.latency_ms_total += ms;
                row.latency_ms_max = row.latency_ms_max.max(ms);
                row.cost_usd += record.cost_usd.unwrap_or(0.0);
                row.redactions += record.redactions;
            }
            if let Some(kind) = &record.error {
                row.errors += 1;
                *row.errors_by_kind.entry(kind.clone()).or_default() += 1;
            }
        });
    }

    /// Adds `record` to the totals and hands it to every sink, each bounded by
    /// [`SINK_TIMEOUT`]; a sink's failure is logged, never returned.
    pub async fn record(&self, record: UsageRecord) {
        self.tally(&record);
        let sinks: Vec<Arc<dyn UsageSink>> =
            self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for sink in sinks {
            match tokio::time::timeout(SINK_TIMEOUT, sink.record(&record)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(sink = sink.name(), thread_id = record.thread_id.as_deref(), %error, source = ?std::error::Error::source(&error), "LLM usage not stored")
                }
                Err(_) => {
                    tracing::warn!(sink = sink.name(), thread_id = record.thread_id.as_deref(), timeout = ?SINK_TIMEOUT, "LLM usage not stored: the sink did not answer in time")
                }
            }
        }
    }

    /// A copy of every row.
    pub fn snapshot(&self) -> UsageSnapshot {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        UsageSnapshot {
            rows: rows.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(backend: &str, model: &str, agent: &str) -> UsageRecord {
        UsageRecord {
            thread_id: None,
            at: SystemTime::now(),
            agent: agent.into(),
            backend: backend.into(),
            model: model.into(),
            purpose: Purpose::Chat,
            tokens_in: 0,
            tokens_out: 0,
            latency: Duration::ZERO,
            answered: true,
            error: None,
            error_message: None,
            cost_usd: None,
            redactions: 0,
        }
    }

    #[test]
    fn rows_add_up() {
        let usage = Usage::new();
        let prices = Prices {
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
        };
        let cost = prices.cost(1000, 500);
        assert!((cost - 0.0075).abs() < 1e-12);
        usage.tally(&UsageRecord {
            tokens_in: 1000,
            tokens_out: 500,
            latency: Duration::from_millis(30),
            cost_usd: Some(cost),
            redactions: 1,
            ..record("gpt", "gpt-4o", "planner")
        });
        usage.tally(&UsageRecord {
            tokens_in: 10,
            tokens_out: 5,
            latency: Duration::from_millis(90),
            ..record("gpt", "gpt-4o", "planner")
        });
        let failed = |backend, model, agent, kind: &str| UsageRecord {
            answered: false,
            error: Some(kind.into()),
            ..record(backend, model, agent)
        };
        usage.tally(&failed("gpt", "gpt-4o", "planner", "rate_limited"));
        usage.tally(&failed("local", "llama3.1", "copilot", "connect"));
        let snapshot = usage.snapshot();
        assert_eq!(snapshot.rows.len(), 2);
        let gpt = &snapshot.rows[0];
        assert_eq!((gpt.requests, gpt.errors, gpt.tokens_in), (2, 1, 1010));
        assert_eq!((gpt.latency_ms_total, gpt.latency_ms_max), (120, 90));
        let total = snapshot.total();
        assert_eq!(total.errors, 2);
        assert_eq!(total.errors_by_kind["connect"], 1);
        let text = snapshot.prometheus();
        assert!(text.contains(
            "deckhand_llm_requests_total{backend=\"gpt\",model=\"gpt-4o\",agent=\"planner\"} 2\n"
        ), "{text}");
        assert!(text.contains("kind=\"rate_limited\"} 1\n"), "{text}");
        assert!(text.contains("direction=\"out\"} 505\n"), "{text}");
        assert!(text.contains("deckhand_llm_latency_seconds_max{backend=\"gpt\",model=\"gpt-4o\",agent=\"planner\"} 0.09\n"), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[tokio::test]
    async fn every_record_reaches_every_sink_and_a_failing_sink_changes_nothing() {
        let usage = Usage::new();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        usage.add_sink(sink_fn("channel", move |record: UsageRecord| {
            let sender = sender.clone();
            async move { sender.send(record).map_err(|e| e.to_string()) }
        }));
        usage.add_sink(sink_fn("broken", |_record: UsageRecord| async {
            Err::<(), _>("the database is down")
        }));
        let mut answered = record("gpt", "gpt-4o", "planner");
        answered.thread_id = Some("thread-1".into());
        answered.tokens_in = 7;
        usage.record(answered.clone()).await;
        assert_eq!(receiver.recv().await, Some(answered));
        assert_eq!(usage.snapshot().total().tokens_in, 7);
        let error = sink_fn("broken", |_record: UsageRecord| async {
            Err::<(), _>("the database is down")
        })
        .record(&record("a", "b", "c"))
        .await
        .unwrap_err();
        assert_eq!(error.kind(), "usage_sink");
        assert!(error.to_string().contains("broken"));
    }
}
