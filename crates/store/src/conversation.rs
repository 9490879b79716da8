//! What happens in a thread: messages, ratings (a score of 100 closes the thread),
//! status, approvals, and the per-thread event log a WebSocket client resumes from.

use crate::audit::append_audit_in;
use crate::database::{next_counter, now_micros, timestamp, Database};
use crate::error::{Error, Result};
use crate::replicated::Replicated;
use deckhand_runtime::audit::AuditEntry;
use deckhand_runtime::thread::CLOSING_SCORE;
use deckhand_runtime::{
    ApprovalRecord, ConversationStore, EventLog, Interface, Message, MessageRole, PlanId, Rating,
    ThreadEvent, ThreadId, ThreadStatus,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

impl Database {
    /// Appends a message; the same message (same id) again changes nothing.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn insert_message(&self, message: &Message) -> Result<()> {
        const CONTEXT: &str = "adding a message";
        let mut transaction = self.begin_write(CONTEXT).await?;
        insert_message_with(&mut *transaction, message).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::Message(message.clone())]
        })
        .await
    }

    /// The thread's messages, oldest first.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn thread_messages(&self, thread: ThreadId) -> Result<Vec<Message>> {
        const CONTEXT: &str = "reading messages";
        let rows = sqlx::query(
            "SELECT id, thread_id, role, author, body, created_at FROM messages \
             WHERE thread_id = $1 ORDER BY created_at, id",
        )
        .bind(thread.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: CONTEXT,
            source,
        })?;
        rows.iter().map(message_from_row).collect()
    }

    /// Records a rating and audits it, in one transaction: a score of 100 closes the
    /// thread, and the thread's knowledge entries take the new score.
    ///
    /// # Errors
    /// [`Error::InvalidRating`] for a score above 100, [`Error::ThreadNotFound`],
    /// [`Error::Query`].
    pub async fn insert_rating(&self, rating: &Rating) -> Result<()> {
        const CONTEXT: &str = "rating a thread";
        let mut transaction = self.begin_write(CONTEXT).await?;
        insert_rating_in(&mut transaction, rating, Audited::Yes).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::Rating(rating.clone())]
        })
        .await
    }

    /// The thread's ratings, oldest first.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn thread_ratings(&self, thread: ThreadId) -> Result<Vec<Rating>> {
        const CONTEXT: &str = "reading ratings";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let rows = sqlx::query(
            "SELECT id, score, comment, rated_by, created_at FROM ratings \
             WHERE thread_id = $1 ORDER BY created_at, id",
        )
        .bind(thread.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                let score: i64 = row.try_get("score").map_err(query)?;
                Ok(Rating {
                    id: uuid_column(row, "id", CONTEXT)?,
                    thread_id: thread,
                    score: u8::try_from(score).map_err(|_| Error::CorruptRow {
                        context: CONTEXT,
                        message: format!("score {score}"),
                    })?,
                    comment: row.try_get("comment").map_err(query)?,
                    rated_by: row.try_get("rated_by").map_err(query)?,
                    created_at: timestamp(row.try_get("created_at").map_err(query)?, CONTEXT)?,
                })
            })
            .collect()
    }

    /// Sets a thread's status.
    ///
    /// # Errors
    /// [`Error::ThreadNotFound`], [`Error::Query`].
    pub async fn update_thread_status(&self, thread: ThreadId, status: ThreadStatus) -> Result<()> {
        const CONTEXT: &str = "setting a thread's status";
        let mut transaction = self.begin_write(CONTEXT).await?;
        update_thread_status_with(&mut *transaction, thread, status).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::ThreadStatus { thread, status }]
        })
        .await
    }

    /// Records an approval and audits it, in one transaction; the same approval (same
    /// id) again changes nothing.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn insert_approval(&self, approval: &ApprovalRecord) -> Result<()> {
        const CONTEXT: &str = "recording an approval";
        let mut transaction = self.begin_write(CONTEXT).await?;
        insert_approval_in(&mut transaction, approval, Audited::Yes).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![Replicated::Approval(approval.clone())]
        })
        .await
    }

    /// The approvals of a plan, oldest first.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn plan_approvals(&self, plan: PlanId) -> Result<Vec<ApprovalRecord>> {
        const CONTEXT: &str = "reading approvals";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let corrupt = |message: String| Error::CorruptRow {
            context: CONTEXT,
            message,
        };
        let rows = sqlx::query(
            "SELECT id, thread_id, plan_hash, step_id, approved_by, interface, approved_at \
             FROM approvals WHERE plan_id = $1 ORDER BY approved_at, id",
        )
        .bind(plan.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                let interface: String = row.try_get("interface").map_err(query)?;
                Ok(ApprovalRecord {
                    id: uuid_column(row, "id", CONTEXT)?,
                    thread_id: thread_column(row, "thread_id", CONTEXT)?,
                    plan_id: plan,
                    plan_hash: row.try_get("plan_hash").map_err(query)?,
                    step_id: row.try_get("step_id").map_err(query)?,
                    approved_by: row.try_get("approved_by").map_err(query)?,
                    interface: Interface::parse(&interface)
                        .ok_or_else(|| corrupt(format!("unknown interface {interface:?}")))?,
                    approved_at: timestamp(row.try_get("approved_at").map_err(query)?, CONTEXT)?,
                })
            })
            .collect()
    }

    /// Appends an event to the thread's log and returns its id (one more than the last).
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`].
    pub async fn insert_event(
        &self,
        thread: ThreadId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        const CONTEXT: &str = "appending a thread event";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let payload = serde_json::to_string(payload).map_err(|source| Error::Encode {
            what: "an event's payload",
            source,
        })?;
        let mut transaction = self.pool.begin().await.map_err(query)?;
        let id = next_counter(&mut transaction, &format!("events:{thread}"), CONTEXT).await?;
        sqlx::query(
            "INSERT INTO thread_events (thread_id, id, kind, payload, at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(thread.to_string())
        .bind(id)
        .bind(kind)
        .bind(payload)
        .bind(now_micros().timestamp_micros())
        .execute(&mut *transaction)
        .await
        .map_err(query)?;
        transaction.commit().await.map_err(query)?;
        Ok(id)
    }

    /// The thread's events after `after_id`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn thread_events_after(
        &self,
        thread: ThreadId,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ThreadEvent>> {
        const CONTEXT: &str = "reading thread events";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let rows = sqlx::query(
            "SELECT id, kind, payload, at FROM thread_events \
             WHERE thread_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(thread.to_string())
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get("payload").map_err(query)?;
                Ok(ThreadEvent {
                    thread_id: thread,
                    id: row.try_get("id").map_err(query)?,
                    kind: row.try_get("kind").map_err(query)?,
                    payload: json_column(&payload, CONTEXT)?,
                    at: timestamp(row.try_get("at").map_err(query)?, CONTEXT)?,
                })
            })
            .collect()
    }
}

/// Appends `message` (no-op when its id is stored) through `executor`.
pub(crate) async fn insert_message_with<'e, E>(executor: E, message: &Message) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO messages (id, thread_id, role, author, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(message.id.to_string())
    .bind(message.thread_id.to_string())
    .bind(message.role.as_str())
    .bind(&message.author)
    .bind(&message.text)
    .bind(message.created_at.timestamp_micros())
    .execute(executor)
    .await
    .map_err(|source| Error::Query {
        context: "storing a message",
        source,
    })?;
    Ok(())
}

/// Whether a write also appends to the audit log: yes where it happens, no where it is
/// copied to the shared database (each store's chain records its own decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audited {
    Yes,
    No,
}

/// The rating write of [`Database::insert_rating`], inside `transaction`.
pub(crate) async fn insert_rating_in(
    transaction: &mut sqlx::Transaction<'_, Any>,
    rating: &Rating,
    audited: Audited,
) -> Result<()> {
    const CONTEXT: &str = "rating a thread";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    if rating.score > CLOSING_SCORE {
        return Err(Error::InvalidRating {
            thread: rating.thread_id,
            source: deckhand_runtime::thread::ScoreOutOfRange {
                score: i64::from(rating.score),
            },
        });
    }
    let thread = rating.thread_id.to_string();
    let now = now_micros().timestamp_micros();
    // The thread's row first: its lock orders concurrent ratings of one thread.
    let updated = if rating.closes_thread() {
        sqlx::query("UPDATE threads SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(ThreadStatus::Closed.as_str())
            .bind(now)
            .bind(&thread)
    } else {
        sqlx::query("UPDATE threads SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&thread)
    }
    .execute(&mut **transaction)
    .await
    .map_err(query)?;
    if updated.rows_affected() == 0 {
        return Err(Error::ThreadNotFound {
            thread: rating.thread_id,
        });
    }
    let inserted = sqlx::query(
        "INSERT INTO ratings (id, thread_id, score, comment, rated_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(rating.id.to_string())
    .bind(&thread)
    .bind(i64::from(rating.score))
    .bind(&rating.comment)
    .bind(&rating.rated_by)
    .bind(rating.created_at.timestamp_micros())
    .execute(&mut **transaction)
    .await
    .map_err(query)?;
    sqlx::query("UPDATE knowledge SET rating = $1, updated_at = $2 WHERE thread_id = $3")
        .bind(i64::from(rating.score))
        .bind(now)
        .bind(&thread)
        .execute(&mut **transaction)
        .await
        .map_err(query)?;
    if audited == Audited::Yes && inserted.rows_affected() > 0 {
        append_audit_in(
            transaction,
            AuditEntry::new(
                &rating.rated_by,
                "thread.rated",
                Some(rating.thread_id),
                &thread,
            )
            .with_details(serde_json::json!({
                "rating_id": rating.id.to_string(),
                "score": rating.score,
                "comment": rating.comment,
                "closed": rating.closes_thread(),
            })),
        )
        .await?;
    }
    Ok(())
}

/// The approval write of [`Database::insert_approval`], inside `transaction`.
pub(crate) async fn insert_approval_in(
    transaction: &mut sqlx::Transaction<'_, Any>,
    approval: &ApprovalRecord,
    audited: Audited,
) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO approvals (id, thread_id, plan_id, plan_hash, step_id, approved_by, \
         interface, approved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(approval.id.to_string())
    .bind(approval.thread_id.to_string())
    .bind(approval.plan_id.to_string())
    .bind(&approval.plan_hash)
    .bind(approval.step_id.clone())
    .bind(&approval.approved_by)
    .bind(approval.interface.as_str())
    .bind(approval.approved_at.timestamp_micros())
    .execute(&mut **transaction)
    .await
    .map_err(|source| Error::Query {
        context: "recording an approval",
        source,
    })?;
    if audited == Audited::Yes && inserted.rows_affected() > 0 {
        append_audit_in(
            transaction,
            AuditEntry::new(
                &approval.approved_by,
                "plan.approved",
                Some(approval.thread_id),
                &approval.plan_hash,
            )
            .with_details(serde_json::json!({
                "approval_id": approval.id.to_string(),
                "plan_id": approval.plan_id.to_string(),
                "step_id": approval.step_id,
                "interface": approval.interface.as_str(),
            })),
        )
        .await?;
    }
    Ok(())
}

/// Sets a thread's status through `executor`.
pub(crate) async fn update_thread_status_with<'e, E>(
    executor: E,
    thread: ThreadId,
    status: ThreadStatus,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let updated = sqlx::query("UPDATE threads SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now_micros().timestamp_micros())
        .bind(thread.to_string())
        .execute(executor)
        .await
        .map_err(|source| Error::Query {
            context: "setting a thread's status",
            source,
        })?;
    match updated.rows_affected() {
        0 => Err(Error::ThreadNotFound { thread }),
        _ => Ok(()),
    }
}

fn message_from_row(row: &AnyRow) -> Result<Message> {
    const CONTEXT: &str = "reading messages";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let role: String = row.try_get("role").map_err(query)?;
    Ok(Message {
        id: uuid_column(row, "id", CONTEXT)?,
        thread_id: thread_column(row, "thread_id", CONTEXT)?,
        role: MessageRole::parse(&role).ok_or_else(|| Error::CorruptRow {
            context: CONTEXT,
            message: format!("unknown role {role:?}"),
        })?,
        author: row.try_get("author").map_err(query)?,
        text: row.try_get("body").map_err(query)?,
        created_at: timestamp(row.try_get("created_at").map_err(query)?, CONTEXT)?,
    })
}

/// A UUID stored as text.
pub(crate) fn uuid_column(row: &AnyRow, column: &str, context: &'static str) -> Result<uuid::Uuid> {
    let text: String = row
        .try_get(column)
        .map_err(|source| Error::Query { context, source })?;
    uuid::Uuid::parse_str(&text).map_err(|error| Error::CorruptRow {
        context,
        message: format!("{column} {text:?}: {error}"),
    })
}

/// A thread id stored as text.
pub(crate) fn thread_column(row: &AnyRow, column: &str, context: &'static str) -> Result<ThreadId> {
    uuid_column(row, column, context).map(ThreadId::from)
}

/// JSON stored as text.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    text: &str,
    context: &'static str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|error| Error::CorruptRow {
        context,
        message: format!("stored JSON: {error}"),
    })
}

impl ConversationStore for Database {
    async fn add_message(&self, message: &Message) -> deckhand_runtime::Result<()> {
        Ok(self.insert_message(message).await?)
    }

    async fn messages(&self, thread: ThreadId) -> deckhand_runtime::Result<Vec<Message>> {
        Ok(self.thread_messages(thread).await?)
    }

    async fn rate_thread(&self, rating: &Rating) -> deckhand_runtime::Result<()> {
        Ok(self.insert_rating(rating).await?)
    }

    async fn ratings(&self, thread: ThreadId) -> deckhand_runtime::Result<Vec<Rating>> {
        Ok(self.thread_ratings(thread).await?)
    }

    async fn set_thread_status(
        &self,
        thread: ThreadId,
        status: ThreadStatus,
    ) -> deckhand_runtime::Result<()> {
        Ok(self.update_thread_status(thread, status).await?)
    }

    async fn record_approval(&self, approval: &ApprovalRecord) -> deckhand_runtime::Result<()> {
        Ok(self.insert_approval(approval).await?)
    }

    async fn approvals(&self, plan: PlanId) -> deckhand_runtime::Result<Vec<ApprovalRecord>> {
        Ok(self.plan_approvals(plan).await?)
    }
}

impl EventLog for Database {
    async fn append_event(
        &self,
        thread: ThreadId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> deckhand_runtime::Result<i64> {
        Ok(self.insert_event(thread, kind, payload).await?)
    }

    async fn events_after(
        &self,
        thread: ThreadId,
        after_id: i64,
        limit: u32,
    ) -> deckhand_runtime::Result<Vec<ThreadEvent>> {
        Ok(self.thread_events_after(thread, after_id, limit).await?)
    }
}
