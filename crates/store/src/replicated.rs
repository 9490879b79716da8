//! A store for one cluster of many ([`Database::replicate_to`]): every replicated write
//! lands in the cluster's local SQLite and, in the same transaction, in an outbox; a
//! background task copies the outbox to the shared PostgreSQL with idempotent upserts
//! (every row has a UUID), deleting what was sent. While PostgreSQL is unreachable writes
//! go on locally and queue; they are sent when it is back. A crash between sending and deleting sends a batch twice, which the
//! upserts absorb: nothing is lost, nothing is doubled.
//!
//! Replicated: threads, messages, ratings, statuses, approvals, knowledge entries and
//! their embeddings, and LLM usage.
//!
//! Knowledge searches ask the shared database (every cluster's knowledge) when it
//! answers, else the local copy (this cluster's). The audit log, event logs, snapshots,
//! tokens, plans and heartbeat runs stay local: they belong to the cluster that made
//! them.

use crate::conversation::{
    insert_approval_in, insert_message_with, insert_rating_in, update_thread_status_with, Audited,
};
use crate::database::{now_micros, ConnectOptions, Database};
use crate::embeddings::{upsert_embedding_with, Embedding, HybridHit};
use crate::error::{Error, Result};
use crate::knowledge::upsert_knowledge_with;
use crate::usage::{record_llm_usage_with, LlmUsage};
use deckhand_runtime::knowledge::{KnowledgeEntry, KnowledgeHit};
use deckhand_runtime::{ApprovalRecord, Message, Rating, Thread, ThreadId, ThreadStatus};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

/// How long to wait between attempts while the shared database is unreachable.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// How long a query to the shared database may wait for a connection: an outage must
/// be noticed fast, since searches fall back to the local copy then.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_secs(2);
/// Outbox rows sent per transaction.
pub const DEFAULT_BATCH_SIZE: u32 = 200;

/// Where and how to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// The shared PostgreSQL (`postgres://...`).
    pub shared_url: String,
    /// Wait between attempts while it is unreachable.
    pub retry_interval: Duration,
    /// Connection timeout towards it.
    pub shared_timeout: Duration,
    /// Rows sent per transaction.
    pub batch_size: u32,
}

impl ReplicationConfig {
    /// Replication to `shared_url` with the default timings.
    pub fn new(shared_url: impl Into<String>) -> Self {
        Self {
            shared_url: shared_url.into(),
            retry_interval: DEFAULT_RETRY_INTERVAL,
            shared_timeout: DEFAULT_SHARED_TIMEOUT,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// The same with another retry interval.
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }
}

/// One queued write.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub(crate) enum Replicated {
    Thread(Thread),
    ThreadStatus {
        thread: ThreadId,
        status: ThreadStatus,
    },
    Message(Message),
    Rating(Rating),
    Approval(ApprovalRecord),
    Knowledge(KnowledgeEntry),
    /// A knowledge entry's vector, its components as their f32 bits (integers survive
    /// JSON exactly; decimal text of an f32 read back through an f64 may not).
    KnowledgeEmbedding {
        knowledge_id: uuid::Uuid,
        model: String,
        bits: Vec<u32>,
    },
    /// One LLM call's usage, under the id it was stored with locally.
    LlmUsage {
        id: uuid::Uuid,
        usage: LlmUsage,
    },
}

impl Replicated {
    /// The write of `embedding` for knowledge entry `id`.
    pub(crate) fn embedding(id: uuid::Uuid, embedding: &Embedding) -> Self {
        Self::KnowledgeEmbedding {
            knowledge_id: id,
            model: embedding.model.clone(),
            bits: embedding
                .vector
                .iter()
                .map(|value| value.to_bits())
                .collect(),
        }
    }

    fn entity_id(&self) -> String {
        match self {
            Self::Thread(thread) => thread.id.to_string(),
            Self::ThreadStatus { thread, .. } => thread.to_string(),
            Self::Message(message) => message.id.to_string(),
            Self::Rating(rating) => rating.id.to_string(),
            Self::Approval(approval) => approval.id.to_string(),
            Self::Knowledge(entry) => entry.id.to_string(),
            Self::KnowledgeEmbedding { knowledge_id, .. } => knowledge_id.to_string(),
            Self::LlmUsage { id, .. } => id.to_string(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Thread(_) => "thread",
            Self::ThreadStatus { .. } => "thread_status",
            Self::Message(_) => "message",
            Self::Rating(_) => "rating",
            Self::Approval(_) => "approval",
            Self::Knowledge(_) => "knowledge",
            Self::KnowledgeEmbedding { .. } => "knowledge_embedding",
            Self::LlmUsage { .. } => "llm_usage",
        }
    }

    /// Applies the write to the shared database; applying it twice changes nothing more.
    async fn apply(&self, transaction: &mut sqlx::Transaction<'_, Any>) -> Result<()> {
        match self {
            Self::Thread(thread) => {
                sqlx::query(
                    "INSERT INTO threads (id, cluster_id, user_name, title, status, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(thread.id.to_string())
                .bind(&thread.cluster_id)
                .bind(&thread.user)
                .bind(&thread.title)
                .bind(thread.status.as_str())
                .bind(thread.created_at.timestamp_micros())
                .bind(thread.updated_at.timestamp_micros())
                .execute(&mut **transaction)
                .await
                .map_err(|source| Error::Query {
                    context: "copying a thread to the shared database",
                    source,
                })?;
                Ok(())
            }
            Self::ThreadStatus { thread, status } => {
                update_thread_status_with(&mut **transaction, *thread, *status).await
            }
            Self::Message(message) => insert_message_with(&mut **transaction, message).await,
            Self::Rating(rating) => insert_rating_in(transaction, rating, Audited::No).await,
            Self::Approval(approval) => {
                insert_approval_in(transaction, approval, Audited::No).await
            }
            Self::Knowledge(entry) => upsert_knowledge_with(&mut **transaction, entry).await,
            Self::KnowledgeEmbedding {
                knowledge_id,
                model,
                bits,
            } => {
                let embedding = Embedding::new(
                    model.clone(),
                    bits.iter().map(|bits| f32::from_bits(*bits)).collect(),
                );
                // The entry is queued before its vector, so it is there unless it was
                // written before replication was configured: then the vector has nothing
                // to describe on the shared side and is dropped, not retried forever.
                if !upsert_embedding_with(&mut **transaction, *knowledge_id, &embedding).await? {
                    tracing::warn!(%knowledge_id, "skipped an embedding: the shared database has no such knowledge entry");
                }
                Ok(())
            }
            Self::LlmUsage { id, usage } => {
                record_llm_usage_with(&mut **transaction, *id, usage).await
            }
        }
    }
}

/// Queues `write` for the shared database inside the local `transaction`.
async fn enqueue(transaction: &mut sqlx::Transaction<'_, Any>, write: &Replicated) -> Result<()> {
    let payload = serde_json::to_string(write).map_err(|source| Error::Encode {
        what: "an outbox entry",
        source,
    })?;
    sqlx::query(
        "INSERT INTO outbox (kind, entity_id, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(write.kind())
    .bind(write.entity_id())
    .bind(payload)
    .bind(now_micros().timestamp_micros())
    .execute(&mut **transaction)
    .await
    .map_err(|source| Error::Query {
        context: "queueing a write for the shared database",
        source,
    })?;
    Ok(())
}

/// No exchange with the shared database yet: searches try it.
const UNKNOWN: u8 = 0;
/// The last exchange with the shared database succeeded.
const UP: u8 = 1;
/// The last exchange with the shared database failed: searches skip it until the
/// background task (which retries every interval) finds it back.
const DOWN: u8 = 2;

/// The connection to the shared database, made lazily and remade after outages.
#[derive(Debug)]
struct SharedLink {
    config: ReplicationConfig,
    database: Mutex<Option<Database>>,
    /// [`UNKNOWN`], [`UP`] or [`DOWN`]: what the last exchange said.
    state: AtomicU8,
    /// Failed attempts to send, so far: a flush at shutdown stops at the first new one.
    failures: AtomicU64,
}

impl SharedLink {
    async fn database(&self) -> Result<Database> {
        let mut slot = self.database.lock().await;
        if let Some(database) = slot.as_ref() {
            return Ok(database.clone());
        }
        let database = Database::connect_with(
            &self.config.shared_url,
            ConnectOptions {
                max_connections: 4,
                acquire_timeout: self.config.shared_timeout,
            },
        )
        .await?;
        *slot = Some(database.clone());
        Ok(database)
    }

    fn mark(&self, reachable: bool) {
        let state = if reachable { UP } else { DOWN };
        let was = self.state.swap(state, Ordering::SeqCst);
        if was != state {
            match reachable {
                true => {
                    tracing::info!(url = %crate::database::redact(&self.config.shared_url), "shared database reachable")
                }
                false => {
                    tracing::warn!(url = %crate::database::redact(&self.config.shared_url), "shared database unreachable; writes queue locally")
                }
            }
        }
    }
}

/// A store's replication: the link to the shared database and the task that sends the
/// outbox there. Shared by every clone of the [`Database`] it is attached to; the task
/// stops when the last clone goes (or at [`Database::close`]).
#[derive(Debug)]
pub(crate) struct Replication {
    shared: Arc<SharedLink>,
    wake: Arc<Notify>,
    attempted: Arc<Notify>,
    shutdown: CancellationToken,
    pusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Replication {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Database {
    /// This store (an SQLite one), replicated to the shared PostgreSQL of `config`: from
    /// now on threads, messages, ratings, statuses, approvals, knowledge entries and
    /// their embeddings, and LLM usage written through it (or any clone of it) are also
    /// queued, in the same local transaction, and a background task sends the queue to
    /// the shared database; knowledge searches ask the shared database first. Does not
    /// wait for the shared database: it may be down now and come up later. Needs a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`Error::ReplicationSource`] when this store is not SQLite (a PostgreSQL store is
    /// already shared) or is already replicated.
    pub fn replicate_to(mut self, config: ReplicationConfig) -> Result<Self> {
        if self.backend() != crate::Backend::Sqlite || self.replication.is_some() {
            return Err(Error::ReplicationSource {
                backend: self.backend(),
                replicated: self.replication.is_some(),
            });
        }
        let shared = Arc::new(SharedLink {
            config,
            database: Mutex::new(None),
            state: AtomicU8::new(UNKNOWN),
            failures: AtomicU64::new(0),
        });
        let wake = Arc::new(Notify::new());
        let attempted = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        // The task gets the store without the link, so it does not keep the link alive.
        let pusher = tokio::spawn(push_loop(
            self.clone(),
            shared.clone(),
            wake.clone(),
            attempted.clone(),
            shutdown.clone(),
        ));
        self.replication = Some(Arc::new(Replication {
            shared,
            wake,
            attempted,
            shutdown,
            pusher: Mutex::new(Some(pusher)),
        }));
        Ok(self)
    }

    /// Whether writes are replicated to a shared database.
    pub fn is_replicated(&self) -> bool {
        self.replication.is_some()
    }

    /// The same store without its replication: writes through it stay local, searches
    /// ask the local copy only.
    #[must_use]
    pub fn local(&self) -> Self {
        let mut local = self.clone();
        local.replication = None;
        local
    }

    /// Whether the last exchange with the shared database succeeded (`false` without
    /// replication).
    pub fn shared_reachable(&self) -> bool {
        self.replication
            .as_ref()
            .is_some_and(|replication| replication.shared.state.load(Ordering::SeqCst) == UP)
    }

    /// Writes queued and not yet confirmed by the shared database (0 without
    /// replication, unless an earlier replicated run left some).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn replication_pending(&self) -> Result<i64> {
        sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>(0))
            .map_err(|source| Error::Query {
                context: "counting queued writes",
                source,
            })
    }

    /// Waits until every queued write has been sent, or `timeout` passes (however often
    /// sending fails meanwhile); returns how many are still queued.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn flush_replication(&self, timeout: Duration) -> Result<i64> {
        self.flush_until(timeout, false).await
    }

    /// [`Database::flush_replication`], giving up early when `give_up_on_failure` and
    /// an attempt fails after the flush began (the shared database is down: what is
    /// queued waits for the next start rather than for the timeout).
    async fn flush_until(&self, timeout: Duration, give_up_on_failure: bool) -> Result<i64> {
        let Some(replication) = &self.replication else {
            return self.replication_pending().await;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let failures = replication.shared.failures.load(Ordering::SeqCst);
        loop {
            let attempted = replication.attempted.notified();
            let pending = self.replication_pending().await?;
            let failed = replication.shared.failures.load(Ordering::SeqCst) != failures;
            if pending == 0
                || tokio::time::Instant::now() >= deadline
                || (give_up_on_failure && failed)
            {
                return Ok(pending);
            }
            replication.wake.notify_one();
            let _ = tokio::time::timeout_at(deadline, attempted).await;
        }
    }

    /// Stops sending (what is queued stays queued for the next start). Every clone of
    /// this store stops replicating; writes through them still queue.
    pub async fn stop_replication(&self) {
        if let Some(replication) = &self.replication {
            replication.shutdown.cancel();
            if let Some(pusher) = replication.pusher.lock().await.take() {
                let _ = pusher.await;
            }
            if let Some(shared) = replication.shared.database.lock().await.take() {
                shared.pool.close().await;
            }
        }
    }

    /// Sends what is queued for at most `timeout` (less when the shared database turns
    /// out to be down), then stops sending.
    pub(crate) async fn finish_replication(&self, timeout: Duration) {
        // Stopped already (closed twice, or by another clone): nothing would send.
        if self
            .replication
            .as_ref()
            .is_none_or(|replication| replication.shutdown.is_cancelled())
        {
            return;
        }
        match self.flush_until(timeout, true).await {
            Ok(0) => {}
            Ok(pending) => {
                tracing::warn!(
                    pending,
                    "writes still queued for the shared database; they are sent at the next start"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "cannot count the writes queued for the shared database")
            }
        }
        self.stop_replication().await;
    }

    /// Starts a local write; [`Database::commit_write`] ends it.
    pub(crate) async fn begin_write(
        &self,
        context: &'static str,
    ) -> Result<sqlx::Transaction<'static, Any>> {
        let begun = match self.backend() {
            // IMMEDIATE takes SQLite's write lock now, waiting (busy_timeout) for another
            // writer; a deferred transaction can instead fail at once with "database is
            // locked" when it upgrades beside concurrent writers.
            crate::Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            crate::Backend::Postgres => self.pool.begin().await,
        };
        begun.map_err(|source| Error::Query { context, source })
    }

    /// Commits a local write; when replicating, queues `writes()` in the same
    /// transaction first, so a write is queued exactly when it is stored.
    pub(crate) async fn commit_write(
        &self,
        mut transaction: sqlx::Transaction<'static, Any>,
        context: &'static str,
        writes: impl FnOnce() -> Vec<Replicated>,
    ) -> Result<()> {
        if self.replication.is_some() {
            for write in writes() {
                enqueue(&mut transaction, &write).await?;
            }
        }
        transaction
            .commit()
            .await
            .map_err(|source| Error::Query { context, source })?;
        if let Some(replication) = &self.replication {
            replication.wake.notify_one();
        }
        Ok(())
    }

    /// [`Database::search_knowledge_hybrid`], saying which database answered: the shared
    /// one when replicating and it answers, else the local copy.
    ///
    /// # Errors
    /// The local store's errors (the shared one's only make it fall back).
    pub async fn search_knowledge_hybrid_sourced(
        &self,
        query: &str,
        vector: Option<&Embedding>,
        limit: u32,
    ) -> Result<(Vec<HybridHit>, SearchSource)> {
        let local = self.local();
        let Some(replication) = self
            .replication
            .as_ref()
            .filter(|replication| replication.shared.state.load(Ordering::SeqCst) != DOWN)
        else {
            return Ok((
                Box::pin(local.search_knowledge_hybrid(query, vector, limit)).await?,
                SearchSource::Local,
            ));
        };
        // A bad vector is the caller's error, not a sign that the shared database is down.
        if let Some(vector) = vector {
            vector.check()?;
        }
        let shared = async {
            let database = replication.shared.database().await?;
            let database = database
                .with_search_options(self.search_options())
                .with_hybrid_options(self.hybrid_options());
            Box::pin(database.search_knowledge_hybrid(query, vector, limit)).await
        };
        match shared.await {
            Ok(hits) => {
                replication.shared.mark(true);
                Ok((hits, SearchSource::Shared))
            }
            Err(error) => {
                tracing::debug!(%error, "searching the local copy of knowledge");
                replication.shared.mark(false);
                Ok((
                    Box::pin(local.search_knowledge_hybrid(query, vector, limit)).await?,
                    SearchSource::Local,
                ))
            }
        }
    }

    /// [`Database::search_knowledge`], saying which database answered: the shared one
    /// when replicating and it answers, else the local copy. While the shared database
    /// is known to be unreachable (the background task probes it every retry interval),
    /// searches go straight to the local copy: nobody waits for a connection timeout on
    /// every search.
    ///
    /// # Errors
    /// The local store's errors (the shared one's only make it fall back).
    pub async fn search_knowledge_sourced(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<KnowledgeHit>, SearchSource)> {
        let local = self.local();
        let Some(replication) = self
            .replication
            .as_ref()
            .filter(|replication| replication.shared.state.load(Ordering::SeqCst) != DOWN)
        else {
            return Ok((
                Box::pin(local.search_knowledge(query, limit)).await?,
                SearchSource::Local,
            ));
        };
        let shared = async {
            let database = replication.shared.database().await?;
            let database = database.with_search_options(self.search_options());
            Box::pin(database.search_knowledge(query, limit)).await
        };
        match shared.await {
            Ok(hits) => {
                replication.shared.mark(true);
                Ok((hits, SearchSource::Shared))
            }
            Err(error) => {
                tracing::debug!(%error, "searching the local copy of knowledge");
                replication.shared.mark(false);
                Ok((
                    Box::pin(local.search_knowledge(query, limit)).await?,
                    SearchSource::Local,
                ))
            }
        }
    }
}

/// Which database answered a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSource {
    /// The shared PostgreSQL: every cluster's knowledge.
    Shared,
    /// The local SQLite (the shared one was unreachable): this cluster's knowledge.
    Local,
}

/// Sends the outbox, oldest first, in batches, until told to stop.
async fn push_loop(
    local: Database,
    shared: Arc<SharedLink>,
    wake: Arc<Notify>,
    attempted: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let retry = shared.config.retry_interval;
    loop {
        match push_batch(&local, &shared).await {
            Ok(Pushed::More) => continue,
            Ok(pushed) => {
                if matches!(pushed, Pushed::Empty) {
                    shared.mark(true);
                }
                attempted.notify_waiters();
                // A write's notify_one leaves a permit, so one made meanwhile is not missed.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(retry) => {}
                }
            }
            Err(error) => {
                tracing::debug!(%error, "sending queued writes failed; retrying later");
                shared.mark(false);
                shared.failures.fetch_add(1, Ordering::SeqCst);
                attempted.notify_waiters();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

enum Pushed {
    /// Nothing was queued.
    Nothing,
    /// The outbox is now empty and the shared database answered.
    Empty,
    /// A full batch was sent; there may be more.
    More,
}

async fn push_batch(local: &Database, shared: &SharedLink) -> Result<Pushed> {
    const CONTEXT: &str = "sending queued writes";
    let query = |source| Error::Query {
        context: CONTEXT,
        source,
    };
    let batch_size = shared.config.batch_size;
    let rows = sqlx::query("SELECT seq, payload FROM outbox ORDER BY seq LIMIT $1")
        .bind(i64::from(batch_size))
        .fetch_all(&local.pool)
        .await
        .map_err(query)?;
    let Some(last) = rows.last() else {
        if shared.state.load(Ordering::SeqCst) == UP {
            return Ok(Pushed::Nothing);
        }
        // Nothing to send, but searches wait for word that the shared database is back.
        shared.database().await?.ping().await?;
        return Ok(Pushed::Empty);
    };
    let last_seq: i64 = last.try_get("seq").map_err(query)?;
    let database = shared.database().await?;
    let mut transaction = database.pool.begin().await.map_err(query)?;
    for row in &rows {
        let payload: String = row.try_get("payload").map_err(query)?;
        let write: Replicated =
            serde_json::from_str(&payload).map_err(|error| Error::CorruptRow {
                context: CONTEXT,
                message: format!("outbox entry: {error}"),
            })?;
        match write.apply(&mut transaction).await {
            // A status change or rating for a thread the shared store does not have
            // (created before replication was configured) cannot apply: skip it rather
            // than block everything queued behind it.
            Err(Error::ThreadNotFound { thread }) => {
                tracing::warn!(%thread, kind = write.kind(), "skipped: the shared database has no such thread");
            }
            other => other?,
        }
    }
    transaction.commit().await.map_err(query)?;
    // Sent: only now forget them. A crash before this line sends them again, harmlessly.
    sqlx::query("DELETE FROM outbox WHERE seq <= $1")
        .bind(last_seq)
        .execute(&local.pool)
        .await
        .map_err(query)?;
    Ok(if rows.len() == batch_size as usize {
        Pushed::More
    } else {
        Pushed::Empty
    })
}
