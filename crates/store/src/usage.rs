//! LLM usage per call and per thread: every call the LLM layer made (tokens in and out,
//! latency, error, estimated cost, backend, model, agent, purpose), stored as the
//! router's usage sink hands it over, and read back per thread with totals.
//!
//! This crate does not depend on `deckhand-llm`: [`LlmUsage`] mirrors its
//! `UsageRecord` field for field, and the binary plugs [`Database::record_llm_usage`]
//! into the router with `deckhand_llm::sink_fn`.

use crate::database::{timestamp, Database};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Most calls [`Database::thread_llm_usage`] lists (the newest; the totals count all).
pub const MAX_LISTED_CALLS: i64 = 1000;

/// One call to a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LlmUsage {
    /// The thread it served, if any.
    pub thread_id: Option<String>,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// The agent (route) that asked.
    pub agent: String,
    /// The backend's name in the configuration.
    pub backend: String,
    /// The model.
    pub model: String,
    /// Why: `chat`, `stream`, `repair` or `summary`.
    pub purpose: String,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Answer tokens.
    pub tokens_out: u64,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// Whether the backend answered.
    pub answered: bool,
    /// The LLM layer's error kind, when it went wrong.
    pub error_kind: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Estimated cost in US dollars, when prices are configured.
    pub cost_usd: Option<f64>,
    /// Secrets redacted from the request.
    pub redactions: u64,
}

/// Sums over a set of calls.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LlmUsageTotals {
    /// Calls made.
    pub calls: u64,
    /// Calls the backend answered.
    pub answered: u64,
    /// Calls with an error.
    pub errors: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Answer tokens.
    pub tokens_out: u64,
    /// Summed latency, in milliseconds.
    pub latency_ms: u64,
    /// Summed estimated cost in US dollars (calls without prices count 0).
    pub cost_usd: f64,
    /// Secrets redacted.
    pub redactions: u64,
}

impl LlmUsageTotals {
    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.answered += other.answered;
        self.errors += other.errors;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.latency_ms += other.latency_ms;
        self.cost_usd += other.cost_usd;
        self.redactions += other.redactions;
    }
}

/// The totals of one agent, backend and model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlmUsageGroup {
    /// The agent.
    pub agent: String,
    /// The backend.
    pub backend: String,
    /// The model.
    pub model: String,
    /// Its totals.
    pub totals: LlmUsageTotals,
}

/// A thread's LLM usage: totals, totals per agent, backend and model, and the calls.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThreadLlmUsage {
    /// The thread.
    pub thread_id: String,
    /// Every call of the thread summed.
    pub total: LlmUsageTotals,
    /// Per agent, backend and model, in that order.
    pub by_model: Vec<LlmUsageGroup>,
    /// The calls, oldest first (at most [`MAX_LISTED_CALLS`], the newest).
    pub calls: Vec<LlmUsage>,
}

/// A count as the databases store it (BIGINT is signed).
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored count back; a negative one (which the CHECKs rule out) reads as 0.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Database {
    /// Stores one call's usage (under a new UUID, so a replicated store can copy it once).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn record_llm_usage(&self, usage: &LlmUsage) -> Result<()> {
        const CONTEXT: &str = "storing LLM usage";
        let id = uuid::Uuid::new_v4();
        let mut transaction = self.begin_write(CONTEXT).await?;
        record_llm_usage_with(&mut *transaction, id, usage).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![crate::replicated::Replicated::LlmUsage {
                id,
                usage: usage.clone(),
            }]
        })
        .await
    }

    /// The LLM usage of `thread_id`: totals, totals per agent, backend and model, and
    /// the calls (empty, with zero totals, for a thread that made none).
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn thread_llm_usage(&self, thread_id: &str) -> Result<ThreadLlmUsage> {
        const CONTEXT: &str = "reading a thread's LLM usage";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        // SUM over BIGINT is NUMERIC in PostgreSQL, which sqlx's Any driver cannot
        // read: every sum is cast back to BIGINT.
        let groups = sqlx::query(
            "SELECT agent, backend, model, COUNT(*) AS calls, \
             CAST(SUM(answered) AS BIGINT) AS answered, \
             CAST(SUM(CASE WHEN error_kind IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS errors, \
             CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
             CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, \
             CAST(SUM(latency_ms) AS BIGINT) AS latency_ms, \
             CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd, \
             CAST(SUM(redactions) AS BIGINT) AS redactions \
             FROM llm_usage WHERE thread_id = $1 \
             GROUP BY agent, backend, model ORDER BY agent, backend, model",
        )
        .bind(thread_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query)?
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>>>()?;
        let mut total = LlmUsageTotals::default();
        for group in &groups {
            total.add(&group.totals);
        }
        let mut calls = sqlx::query(
            "SELECT thread_id, at, agent, backend, model, purpose, tokens_in, tokens_out, \
             latency_ms, answered, error_kind, error_message, cost_usd, redactions \
             FROM llm_usage WHERE thread_id = $1 ORDER BY at DESC, seq DESC LIMIT $2",
        )
        .bind(thread_id)
        .bind(MAX_LISTED_CALLS)
        .fetch_all(&self.pool)
        .await
        .map_err(query)?
        .iter()
        .map(call_from_row)
        .collect::<Result<Vec<_>>>()?;
        calls.reverse();
        Ok(ThreadLlmUsage {
            thread_id: thread_id.to_owned(),
            total,
            by_model: groups,
            calls,
        })
    }
}

/// Stores one call's usage as `id` in `executor`'s database; storing the same id again
/// changes nothing.
pub(crate) async fn record_llm_usage_with<'e, E>(
    executor: E,
    id: uuid::Uuid,
    usage: &LlmUsage,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO llm_usage (id, thread_id, at, agent, backend, model, purpose, tokens_in, \
         tokens_out, latency_ms, answered, error_kind, error_message, cost_usd, redactions) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(usage.thread_id.as_deref())
    .bind(usage.at.timestamp_micros())
    .bind(&usage.agent)
    .bind(&usage.backend)
    .bind(&usage.model)
    .bind(&usage.purpose)
    .bind(signed(usage.tokens_in))
    .bind(signed(usage.tokens_out))
    .bind(signed(usage.latency_ms))
    .bind(i64::from(usage.answered))
    .bind(usage.error_kind.as_deref())
    .bind(usage.error_message.as_deref())
    .bind(usage.cost_usd)
    .bind(signed(usage.redactions))
    .execute(executor)
    .await
    .map_err(|source| Error::Query {
        context: "storing LLM usage",
        source,
    })?;
    Ok(())
}

fn group_from_row(row: &AnyRow) -> Result<LlmUsageGroup> {
    let query = |source| Error::Query {
        context: "reading a thread's LLM usage totals",
        source,
    };
    let count = |name: &str| row.try_get::<i64, _>(name).map(unsigned).map_err(query);
    Ok(LlmUsageGroup {
        agent: row.try_get("agent").map_err(query)?,
        backend: row.try_get("backend").map_err(query)?,
        model: row.try_get("model").map_err(query)?,
        totals: LlmUsageTotals {
            calls: count("calls")?,
            answered: count("answered")?,
            errors: count("errors")?,
            tokens_in: count("tokens_in")?,
            tokens_out: count("tokens_out")?,
            latency_ms: count("latency_ms")?,
            cost_usd: row.try_get("cost_usd").map_err(query)?,
            redactions: count("redactions")?,
        },
    })
}

fn call_from_row(row: &AnyRow) -> Result<LlmUsage> {
    const CONTEXT: &str = "reading an LLM call's usage";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let count = |name: &str| row.try_get::<i64, _>(name).map(unsigned).map_err(query);
    Ok(LlmUsage {
        thread_id: row.try_get("thread_id").map_err(query)?,
        at: timestamp(row.try_get("at").map_err(query)?, CONTEXT)?,
        agent: row.try_get("agent").map_err(query)?,
        backend: row.try_get("backend").map_err(query)?,
        model: row.try_get("model").map_err(query)?,
        purpose: row.try_get("purpose").map_err(query)?,
        tokens_in: count("tokens_in")?,
        tokens_out: count("tokens_out")?,
        latency_ms: count("latency_ms")?,
        answered: count("answered")? != 0,
        error_kind: row.try_get("error_kind").map_err(query)?,
        error_message: row.try_get("error_message").map_err(query)?,
        cost_usd: row.try_get("cost_usd").map_err(query)?,
        redactions: count("redactions")?,
    })
}
