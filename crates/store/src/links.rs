//! Links from outside conversations to threads: a Slack thread (`slack:CHANNEL:TS`) or an
//! Alertmanager group (`alertmanager:GROUP_KEY`) keeps talking to the same deckhand
//! thread. A key links to one thread; linking it again moves it (the latest wins).

use crate::conversation::thread_column;
use crate::database::{now_micros, Database};
use crate::error::{Error, Result};
use deckhand_runtime::ThreadId;

impl Database {
    /// Links `key` to `thread` (replacing an earlier link of the same key).
    ///
    /// # Errors
    /// [`Error::Query`] (also when the thread does not exist).
    pub async fn link_thread(&self, key: &str, thread: ThreadId) -> Result<()> {
        sqlx::query(
            "INSERT INTO thread_links (link_key, thread_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (link_key) DO UPDATE SET thread_id = excluded.thread_id, \
             created_at = excluded.created_at",
        )
        .bind(key)
        .bind(thread.to_string())
        .bind(now_micros().timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: "linking a thread",
            source,
        })?;
        Ok(())
    }

    /// The thread `key` links to, if any.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::CorruptRow`].
    pub async fn linked_thread(&self, key: &str) -> Result<Option<ThreadId>> {
        const CONTEXT: &str = "reading a thread link";
        sqlx::query("SELECT thread_id FROM thread_links WHERE link_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?
            .map(|row| thread_column(&row, "thread_id", CONTEXT))
            .transpose()
    }
}
