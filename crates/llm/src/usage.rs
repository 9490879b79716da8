//! Accounting: requests, errors, tokens, latency and estimated cost per backend, model and
//! agent, kept in memory; callers take a [`UsageSnapshot`] to export as metrics or store.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The ledger, shared by cheap clones.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    rows: Arc<Mutex<BTreeMap<Key, UsageRow>>>,
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

    /// Records an answered request.
    #[allow(clippy::too_many_arguments)]
    pub fn record_success(
        &self,
        backend: &str,
        model: &str,
        agent: &str,
        tokens_in: u64,
        tokens_out: u64,
        latency: Duration,
        cost_usd: f64,
        redactions: usize,
    ) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.with_row(backend, model, agent, |row| {
            row.requests += 1;
            row.tokens_in += tokens_in;
            row.tokens_out += tokens_out;
            row.latency_ms_total += ms;
            row.latency_ms_max = row.latency_ms_max.max(ms);
            row.cost_usd += cost_usd;
            row.redactions += redactions as u64;
        });
    }

    /// Records a failed attempt.
    pub fn record_error(&self, backend: &str, model: &str, agent: &str, kind: &str) {
        self.with_row(backend, model, agent, |row| {
            row.errors += 1;
            *row.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
        });
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

    #[test]
    fn rows_add_up() {
        let usage = Usage::new();
        let prices = Prices {
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
        };
        let cost = prices.cost(1000, 500);
        assert!((cost - 0.0075).abs() < 1e-12);
        usage.record_success(
            "gpt",
            "gpt-4o",
            "planner",
            1000,
            500,
            Duration::from_millis(30),
            cost,
            1,
        );
        usage.record_success(
            "gpt",
            "gpt-4o",
            "planner",
            10,
            5,
            Duration::from_millis(90),
            0.0,
            0,
        );
        usage.record_error("gpt", "gpt-4o", "planner", "rate_limited");
        usage.record_error("local", "llama3.1", "copilot", "connect");
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
}
