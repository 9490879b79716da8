//! The [`PlanStore`] impl: plans as JSON, each step's latest state upserted, and every
//! transition appended to `step_events` (both in one transaction, so the two never
//! disagree after a crash).

use crate::database::Database;
use crate::error::{Error, Result};
use deckhand_runtime::scheduler::{StepRecord, StepState};
use deckhand_runtime::{Plan, PlanId, PlanStore, ThreadId};
use sqlx::Row;
use std::collections::HashMap;

impl Database {
    /// Stores a plan; storing the same plan again changes nothing.
    ///
    /// # Errors
    /// [`Error::Query`] when the database refuses.
    pub async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        let body = serde_json::to_string(plan).map_err(|error| Error::CorruptRow {
            context: "storing a plan",
            message: error.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO plans (id, thread_id, hash, created_by, request, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(plan.id.to_string())
        .bind(plan.thread_id.to_string())
        .bind(&plan.hash)
        .bind(&plan.created_by)
        .bind(&plan.request)
        .bind(body)
        .bind(chrono::Utc::now().timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "storing a plan",
            source,
        })?;
        Ok(())
    }

    /// The plan with `id`, if stored.
    ///
    /// # Errors
    /// [`Error::Query`], or [`Error::CorruptRow`] for a body that is no longer a plan.
    pub async fn plan(&self, id: PlanId) -> Result<Option<Plan>> {
        const CONTEXT: &str = "reading a plan";
        let row = sqlx::query("SELECT body FROM plans WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?;
        row.map(|row| plan_from_row(&row, CONTEXT)).transpose()
    }

    /// The plans of a thread, oldest first.
    ///
    /// # Errors
    /// As [`Database::plan`].
    pub async fn plans_of_thread(&self, thread: ThreadId) -> Result<Vec<Plan>> {
        const CONTEXT: &str = "listing a thread's plans";
        let rows = sqlx::query("SELECT body FROM plans WHERE thread_id = $1 ORDER BY created_at")
            .bind(thread.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?;
        rows.iter().map(|row| plan_from_row(row, CONTEXT)).collect()
    }

    /// Records one step transition.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn insert_step_record(&self, record: &StepRecord) -> Result<()> {
        const CONTEXT: &str = "recording a step transition";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let output = match &record.output {
            Some(output) => {
                Some(
                    serde_json::to_string(output).map_err(|error| Error::CorruptRow {
                        context: CONTEXT,
                        message: error.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut transaction = self.pool.begin().await.map_err(query)?;
        sqlx::query(
            "INSERT INTO step_states (plan_id, step_id, state, attempt, output, error, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (plan_id, step_id) DO UPDATE SET state = excluded.state, \
             attempt = excluded.attempt, output = excluded.output, error = excluded.error, \
             updated_at = excluded.updated_at",
        )
        .bind(record.plan_id.to_string())
        .bind(&record.step_id)
        .bind(record.state.as_str())
        .bind(i64::from(record.attempt))
        .bind(output)
        .bind(record.error.clone())
        .bind(record.at_micros)
        .execute(&mut *transaction)
        .await
        .map_err(query)?;
        sqlx::query(
            "INSERT INTO step_events (plan_id, step_id, state, attempt, error, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.plan_id.to_string())
        .bind(&record.step_id)
        .bind(record.state.as_str())
        .bind(i64::from(record.attempt))
        .bind(record.error.clone())
        .bind(record.at_micros)
        .execute(&mut *transaction)
        .await
        .map_err(query)?;
        transaction.commit().await.map_err(query)?;
        Ok(())
    }

    /// Each step's latest state.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn step_states(&self, plan_id: PlanId) -> Result<HashMap<String, StepRecord>> {
        const CONTEXT: &str = "reading step states";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let corrupt = |message: String| Error::CorruptRow {
            context: CONTEXT,
            message,
        };
        let rows = sqlx::query(
            "SELECT step_id, state, attempt, output, error, updated_at FROM step_states WHERE plan_id = $1",
        )
        .bind(plan_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        let mut states = HashMap::with_capacity(rows.len());
        for row in rows {
            let step_id: String = row.try_get("step_id").map_err(query)?;
            let state: String = row.try_get("state").map_err(query)?;
            let attempt: i64 = row.try_get("attempt").map_err(query)?;
            let output: Option<String> = row.try_get("output").map_err(query)?;
            let record = StepRecord {
                plan_id,
                step_id: step_id.clone(),
                state: StepState::parse(&state).map_err(|error| corrupt(error.to_string()))?,
                attempt: u32::try_from(attempt).map_err(|error| corrupt(error.to_string()))?,
                output: output
                    .map(|text| serde_json::from_str(&text))
                    .transpose()
                    .map_err(|error| corrupt(format!("step {step_id}'s output: {error}")))?,
                error: row.try_get("error").map_err(query)?,
                at_micros: row.try_get("updated_at").map_err(query)?,
            };
            states.insert(step_id, record);
        }
        Ok(states)
    }

    /// Every transition of a plan, oldest first: `(step, state, attempt, error)`.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn step_events(
        &self,
        plan_id: PlanId,
    ) -> Result<Vec<(String, String, i64, Option<String>)>> {
        const CONTEXT: &str = "reading step events";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let rows = sqlx::query(
            "SELECT step_id, state, attempt, error FROM step_events WHERE plan_id = $1 ORDER BY at",
        )
        .bind(plan_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("step_id").map_err(query)?,
                    row.try_get("state").map_err(query)?,
                    row.try_get("attempt").map_err(query)?,
                    row.try_get("error").map_err(query)?,
                ))
            })
            .collect()
    }
}

fn plan_from_row(row: &sqlx::any::AnyRow, context: &'static str) -> Result<Plan> {
    let body: String = row
        .try_get("body")
        .map_err(|source| Error::Query { context, source })?;
    serde_json::from_str(&body).map_err(|error| Error::CorruptRow {
        context,
        message: error.to_string(),
    })
}

impl PlanStore for Database {
    async fn save_plan(&self, plan: &Plan) -> deckhand_runtime::Result<()> {
        Ok(self.insert_plan(plan).await?)
    }

    async fn record_step(&self, record: &StepRecord) -> deckhand_runtime::Result<()> {
        Ok(self.insert_step_record(record).await?)
    }

    async fn latest_steps(
        &self,
        plan_id: PlanId,
    ) -> deckhand_runtime::Result<HashMap<String, StepRecord>> {
        Ok(self.step_states(plan_id).await?)
    }
}
