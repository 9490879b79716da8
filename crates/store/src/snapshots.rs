//! Snapshots for restore: the state of each object before a thread first touched it.
//! The first touch per (thread, object) wins, by the table's primary key and
//! `ON CONFLICT DO NOTHING`, so concurrent callers cannot both record one.

use crate::conversation::json_column;
use crate::database::{next_counter, now_micros, timestamp, Database};
use crate::error::{Error, Result};
use deckhand_runtime::restore::{ObjectKey, Snapshot, SnapshotStore};
use deckhand_runtime::ThreadId;
use sqlx::Row;

impl Database {
    /// Records `prior` as `object` before `thread` touched it; `false` (and nothing
    /// changed) when the thread already has a snapshot of that object.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Encode`].
    pub async fn insert_snapshot(
        &self,
        thread: ThreadId,
        object: &ObjectKey,
        prior: Option<&serde_json::Value>,
    ) -> Result<bool> {
        const CONTEXT: &str = "recording a snapshot";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let prior = prior
            .map(serde_json::to_string)
            .transpose()
            .map_err(|source| Error::Encode {
                what: "a snapshot",
                source,
            })?;
        let mut transaction = self.pool.begin().await.map_err(query)?;
        // A seq lost to a conflict rolls back with it when nothing is recorded.
        let seq = next_counter(&mut transaction, &format!("snapshots:{thread}"), CONTEXT).await?;
        let inserted = sqlx::query(
            "INSERT INTO snapshots (thread_id, seq, api_version, kind, namespace, name, prior, \
             taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (thread_id, api_version, kind, namespace, name) DO NOTHING",
        )
        .bind(thread.to_string())
        .bind(seq)
        .bind(&object.api_version)
        .bind(&object.kind)
        .bind(object.namespace.clone().unwrap_or_default())
        .bind(&object.name)
        .bind(prior)
        .bind(now_micros().timestamp_micros())
        .execute(&mut *transaction)
        .await
        .map_err(query)?;
        if inserted.rows_affected() == 0 {
            transaction.rollback().await.map_err(query)?;
            return Ok(false);
        }
        transaction.commit().await.map_err(query)?;
        Ok(true)
    }

    /// The thread's snapshots, in the order the objects were first touched.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn thread_snapshots(&self, thread: ThreadId) -> Result<Vec<Snapshot>> {
        const CONTEXT: &str = "reading snapshots";
        let query = |source| Error::Query {
            context: CONTEXT,
            source,
        };
        let rows = sqlx::query(
            "SELECT seq, api_version, kind, namespace, name, prior, taken_at FROM snapshots \
             WHERE thread_id = $1 ORDER BY seq",
        )
        .bind(thread.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|row| {
                let namespace: String = row.try_get("namespace").map_err(query)?;
                let prior: Option<String> = row.try_get("prior").map_err(query)?;
                Ok(Snapshot {
                    thread_id: thread,
                    seq: row.try_get("seq").map_err(query)?,
                    object: ObjectKey {
                        api_version: row.try_get("api_version").map_err(query)?,
                        kind: row.try_get("kind").map_err(query)?,
                        namespace: (!namespace.is_empty()).then_some(namespace),
                        name: row.try_get("name").map_err(query)?,
                    },
                    prior: prior.map(|text| json_column(&text, CONTEXT)).transpose()?,
                    taken_at: timestamp(row.try_get("taken_at").map_err(query)?, CONTEXT)?,
                })
            })
            .collect()
    }
}

impl SnapshotStore for Database {
    async fn record_snapshot(
        &self,
        thread: ThreadId,
        object: &ObjectKey,
        prior: Option<&serde_json::Value>,
    ) -> deckhand_runtime::Result<bool> {
        Ok(self.insert_snapshot(thread, object, prior).await?)
    }

    async fn snapshots(&self, thread: ThreadId) -> deckhand_runtime::Result<Vec<Snapshot>> {
        Ok(self.thread_snapshots(thread).await?)
    }
}
