//! The heartbeat ledger: per scheduled task, when it was first seen, the slot and times of
//! its latest run, and how that run ended (`heartbeat_ledger`, one row per task).
//!
//! Starting a run is a claim: one upsert that moves `last_scheduled_for` forward only, so
//! two runners sharing a database (or a runner and a stale copy of itself) never both
//! start the same slot. The row is written before the launch and again after it, so a run
//! the process never finished stays visible (`last_outcome` NULL) until the next start
//! marks it interrupted.

use crate::conversation::json_column;
use crate::database::{timestamp, Database};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use deckhand_runtime::heartbeat::{HeartbeatLedger, HeartbeatRecord, RunOutcome};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "SELECT task, since, last_scheduled_for, last_started_at, last_finished_at, \
     last_outcome, runs, failures FROM heartbeat_ledger";

impl Database {
    /// The task's record, created with `since = now` the first time a task is seen.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn register_heartbeat(
        &self,
        task: &str,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatRecord> {
        const CONTEXT: &str = "registering a heartbeat task";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        sqlx::query(
            "INSERT INTO heartbeat_ledger (task, since, runs, failures) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (task) DO NOTHING",
        )
        .bind(task)
        .bind(now.timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(query)?;
        self.heartbeat_record(task)
            .await?
            .ok_or_else(|| Error::CorruptRow {
                context: CONTEXT,
                message: format!(
                    "the record of heartbeat task {task:?} vanished after it was written"
                ),
            })
    }

    /// The record of `task`, if it was ever seen.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn heartbeat_record(&self, task: &str) -> Result<Option<HeartbeatRecord>> {
        const CONTEXT: &str = "reading a heartbeat record";
        sqlx::query(&format!("{COLUMNS} WHERE task = $1"))
            .bind(task)
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?
            .map(|row| record_from_row(&row, CONTEXT))
            .transpose()
    }

    /// Every task's record, by name.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn heartbeat_records(&self) -> Result<Vec<HeartbeatRecord>> {
        const CONTEXT: &str = "listing heartbeat records";
        let rows = sqlx::query(&format!("{COLUMNS} ORDER BY task"))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?;
        rows.iter()
            .map(|row| record_from_row(row, CONTEXT))
            .collect()
    }

    /// Claims the slot `scheduled_for` of `task` and records that its run starts at
    /// `started_at`; `false`, changing nothing, when that slot or a later one was already
    /// started. A task not seen before is recorded as seen at `started_at`.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn start_heartbeat_run(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> Result<bool> {
        // One statement: the row lock (PostgreSQL) or the write lock (SQLite) makes the
        // check and the update one step, so a slot is claimed once.
        let claimed = sqlx::query(
            "INSERT INTO heartbeat_ledger (task, since, last_scheduled_for, last_started_at, \
             last_finished_at, last_outcome, runs, failures) VALUES ($1, $3, $2, $3, NULL, NULL, 1, 0) \
             ON CONFLICT (task) DO UPDATE SET last_scheduled_for = excluded.last_scheduled_for, \
             last_started_at = excluded.last_started_at, last_finished_at = NULL, \
             last_outcome = NULL, runs = heartbeat_ledger.runs + 1 \
             WHERE heartbeat_ledger.last_scheduled_for IS NULL \
             OR heartbeat_ledger.last_scheduled_for < excluded.last_scheduled_for",
        )
        .bind(task)
        .bind(scheduled_for.timestamp_micros())
        .bind(started_at.timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "claiming a heartbeat slot",
            source,
        })?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Records how the run of `task` for `scheduled_for` ended; nothing when a later run
    /// started since. A failed or interrupted run counts as a failure once.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`].
    pub async fn finish_heartbeat_run(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<()> {
        let failed = i64::from(!matches!(outcome, RunOutcome::Launched { .. }));
        let outcome = serde_json::to_string(outcome).map_err(|source| Error::Encode {
            what: "a heartbeat run's outcome",
            source,
        })?;
        sqlx::query(
            "UPDATE heartbeat_ledger SET failures = failures + \
             CASE WHEN last_outcome IS NULL THEN CAST($5 AS BIGINT) ELSE 0 END, \
             last_finished_at = $3, last_outcome = $4 \
             WHERE task = $1 AND last_scheduled_for = $2",
        )
        .bind(task)
        .bind(scheduled_for.timestamp_micros())
        .bind(finished_at.timestamp_micros())
        .bind(outcome)
        .bind(failed)
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "recording the end of a heartbeat run",
            source,
        })?;
        Ok(())
    }
}

fn record_from_row(row: &AnyRow, context: &'static str) -> Result<HeartbeatRecord> {
    let query = |source| Error::Query { context, source };
    let optional_time = |column: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)
            .map_err(query)?
            .map(|micros| timestamp(micros, context))
            .transpose()
    };
    let count = |column: &str| -> Result<u64> {
        let value: i64 = row.try_get(column).map_err(query)?;
        u64::try_from(value).map_err(|_| Error::CorruptRow {
            context,
            message: format!("{column} is {value}"),
        })
    };
    let outcome: Option<String> = row.try_get("last_outcome").map_err(query)?;
    Ok(HeartbeatRecord {
        task: row.try_get("task").map_err(query)?,
        since: timestamp(row.try_get("since").map_err(query)?, context)?,
        last_scheduled_for: optional_time("last_scheduled_for")?,
        last_started_at: optional_time("last_started_at")?,
        last_finished_at: optional_time("last_finished_at")?,
        last_outcome: outcome
            .map(|text| json_column::<RunOutcome>(&text, context))
            .transpose()?,
        runs: count("runs")?,
        failures: count("failures")?,
    })
}

impl HeartbeatLedger for Database {
    async fn register(
        &self,
        task: &str,
        now: DateTime<Utc>,
    ) -> deckhand_runtime::Result<HeartbeatRecord> {
        Ok(self.register_heartbeat(task, now).await?)
    }

    async fn record_start(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> deckhand_runtime::Result<bool> {
        Ok(self
            .start_heartbeat_run(task, scheduled_for, started_at)
            .await?)
    }

    async fn record_finish(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> deckhand_runtime::Result<()> {
        Ok(self
            .finish_heartbeat_run(task, scheduled_for, finished_at, outcome)
            .await?)
    }

    async fn records(&self) -> deckhand_runtime::Result<Vec<HeartbeatRecord>> {
        Ok(self.heartbeat_records().await?)
    }
}
