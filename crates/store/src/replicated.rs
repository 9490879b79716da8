//! A store for one cluster of many: every write lands in the cluster's local SQLite and,
//! in the same transaction, in an outbox; a background task copies the outbox to the
//! shared PostgreSQL with idempotent upserts (every row has a UUID), deleting what was
//! sent. While PostgreSQL is unreachable writes go on locally and queue; they are sent
//! when it is back. A crash between sending and deleting sends a batch twice, which the
//! upserts absorb: nothing is lost, nothing is doubled.
//!
//! Replicated: threads, messages, ratings, statuses, approvals, knowledge entries and
//! their embeddings, and LLM usage.
//!
//! Knowledge searches ask the shared database (every cluster's knowledge) when it
//! answers, else the local copy (this cluster's). The audit log, event logs, snapshots
//! and tokens stay local: they belong to the cluster that made them.

use crate::conversation::{
    insert_approval_in, insert_message_with, insert_rating_in, update_thread_status_with, Audited,
};
use crate::database::{insert_thread_with, now_micros, ConnectOptions, Database};
use crate::embeddings::{upsert_embedding_with, Embedding, HybridHit};
use crate::error::{Error, Result};
use crate::knowledge::upsert_knowledge_with;
use crate::usage::{record_llm_usage_with, LlmUsage};
use deckhand_runtime::knowledge::{KnowledgeEntry, KnowledgeHit, KnowledgeStore};
use deckhand_runtime::{
    ApprovalRecord, ConversationStore, Message, PlanId, Rating, Thread, ThreadId, ThreadStatus,
    ThreadStore,
};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row};
use std::sync::atomic::{AtomicBool, Ordering};
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
enum Replicated {
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

/// The connection to the shared database, made lazily and remade after outages.
#[derive(Debug)]
struct SharedLink {
    config: ReplicationConfig,
    database: Mutex<Option<Database>>,
    reachable: AtomicBool,
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
        let was = self.reachable.swap(reachable, Ordering::SeqCst);
        if was != reachable {
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

/// A cluster's store: local SQLite, replicated to a shared PostgreSQL.
///
/// Implements every store trait of the runtime: threads, conversations and knowledge are
/// replicated; plans, audit, snapshots, events and tokens are served by the local store
/// alone ([`ReplicatedStore::local`]).
#[derive(Debug)]
pub struct ReplicatedStore {
    local: Database,
    shared: Arc<SharedLink>,
    wake: Arc<Notify>,
    drained: Arc<Notify>,
    shutdown: CancellationToken,
    pusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ReplicatedStore {
    /// Starts replicating `local` (an SQLite store) to the shared database. Does not
    /// wait for the shared database: it may be down now and come up later.
    pub fn start(local: Database, config: ReplicationConfig) -> Self {
        let shared = Arc::new(SharedLink {
            config,
            database: Mutex::new(None),
            reachable: AtomicBool::new(false),
        });
        let wake = Arc::new(Notify::new());
        let drained = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let pusher = tokio::spawn(push_loop(
            local.clone(),
            shared.clone(),
            wake.clone(),
            drained.clone(),
            shutdown.clone(),
        ));
        Self {
            local,
            shared,
            wake,
            drained,
            shutdown,
            pusher: Mutex::new(Some(pusher)),
        }
    }

    /// The local store (plans, audit, snapshots, events, tokens live only here).
    pub fn local(&self) -> &Database {
        &self.local
    }

    /// Whether the last exchange with the shared database succeeded.
    pub fn shared_reachable(&self) -> bool {
        self.shared.reachable.load(Ordering::SeqCst)
    }

    /// Writes queued and not yet confirmed by the shared database.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn pending(&self) -> Result<i64> {
        sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.local.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>(0))
            .map_err(|source| Error::Query {
                context: "counting queued writes",
                source,
            })
    }

    /// Waits until every queued write has been sent, or `timeout` passes; returns how
    /// many are still queued.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn flush(&self, timeout: Duration) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let drained = self.drained.notified();
            let pending = self.pending().await?;
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(pending);
            }
            self.wake.notify_one();
            let _ = tokio::time::timeout_at(deadline, drained).await;
        }
    }

    /// Stops the background task (what is queued stays queued for the next start).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(pusher) = self.pusher.lock().await.take() {
            let _ = pusher.await;
        }
    }

    /// Runs `write` on the local store and queues `replicated` in the same transaction.
    async fn write<F>(&self, context: &'static str, replicated: Replicated, write: F) -> Result<()>
    where
        F: for<'t> FnOnce(
            &'t mut sqlx::Transaction<'static, Any>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<()>> + Send + 't>,
        >,
    {
        let query = |source| Error::Query { context, source };
        let mut transaction = self.local.pool.begin().await.map_err(query)?;
        write(&mut transaction).await?;
        enqueue(&mut transaction, &replicated).await?;
        transaction.commit().await.map_err(query)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Creates a thread locally and queues it.
    ///
    /// # Errors
    /// As [`Database`]'s.
    pub async fn create_thread(&self, thread: &Thread) -> Result<()> {
        let copy = thread.clone();
        self.write(
            "creating a thread",
            Replicated::Thread(thread.clone()),
            |tx| Box::pin(async move { insert_thread_with(&mut **tx, &copy).await }),
        )
        .await
    }

    /// Adds a message locally and queues it.
    ///
    /// # Errors
    /// As [`Database`]'s.
    pub async fn add_message(&self, message: &Message) -> Result<()> {
        let copy = message.clone();
        self.write(
            "storing a message",
            Replicated::Message(message.clone()),
            |tx| Box::pin(async move { insert_message_with(&mut **tx, &copy).await }),
        )
        .await
    }

    /// Rates a thread locally (audited there) and queues the rating.
    ///
    /// # Errors
    /// As [`Database::insert_rating`].
    pub async fn rate_thread(&self, rating: &Rating) -> Result<()> {
        let copy = rating.clone();
        self.write(
            "rating a thread",
            Replicated::Rating(rating.clone()),
            |tx| Box::pin(async move { insert_rating_in(tx, &copy, Audited::Yes).await }),
        )
        .await
    }

    /// Sets a thread's status locally and queues the change.
    ///
    /// # Errors
    /// As [`Database::update_thread_status`].
    pub async fn set_thread_status(&self, thread: ThreadId, status: ThreadStatus) -> Result<()> {
        self.write(
            "setting a thread's status",
            Replicated::ThreadStatus { thread, status },
            |tx| {
                Box::pin(async move { update_thread_status_with(&mut **tx, thread, status).await })
            },
        )
        .await
    }

    /// Records an approval locally (audited there) and queues it.
    ///
    /// # Errors
    /// As [`Database::insert_approval`].
    pub async fn record_approval(&self, approval: &ApprovalRecord) -> Result<()> {
        let copy = approval.clone();
        self.write(
            "recording an approval",
            Replicated::Approval(approval.clone()),
            |tx| Box::pin(async move { insert_approval_in(tx, &copy, Audited::Yes).await }),
        )
        .await
    }

    /// Stores a knowledge entry locally and queues it.
    ///
    /// # Errors
    /// As [`Database::upsert_knowledge_entry`].
    pub async fn upsert_knowledge(&self, entry: &KnowledgeEntry) -> Result<()> {
        let copy = entry.clone();
        self.write(
            "storing a knowledge entry",
            Replicated::Knowledge(entry.clone()),
            |tx| Box::pin(async move { upsert_knowledge_with(&mut **tx, &copy).await }),
        )
        .await
    }

    /// Stores a knowledge entry's embedding locally and queues it.
    ///
    /// # Errors
    /// As [`Database::upsert_knowledge_embedding`].
    pub async fn upsert_knowledge_embedding(
        &self,
        id: uuid::Uuid,
        embedding: &Embedding,
    ) -> Result<()> {
        let copy = embedding.clone();
        self.write(
            "storing a knowledge entry's embedding",
            Replicated::KnowledgeEmbedding {
                knowledge_id: id,
                model: embedding.model.clone(),
                bits: embedding
                    .vector
                    .iter()
                    .map(|value| value.to_bits())
                    .collect(),
            },
            |tx| {
                Box::pin(async move {
                    match upsert_embedding_with(&mut **tx, id, &copy).await? {
                        true => Ok(()),
                        false => Err(Error::KnowledgeNotFound { id }),
                    }
                })
            },
        )
        .await
    }

    /// Stores one LLM call's usage locally and queues it (under one UUID on both sides).
    ///
    /// # Errors
    /// As [`Database::record_llm_usage`].
    pub async fn record_llm_usage(&self, usage: &LlmUsage) -> Result<()> {
        let id = uuid::Uuid::new_v4();
        let copy = usage.clone();
        self.write(
            "storing LLM usage",
            Replicated::LlmUsage {
                id,
                usage: usage.clone(),
            },
            |tx| Box::pin(async move { record_llm_usage_with(&mut **tx, id, &copy).await }),
        )
        .await
    }

    /// [`Database::search_knowledge_hybrid`] on the shared database when it answers, else
    /// on the local copy, as [`ReplicatedStore::search_knowledge`] does; says which.
    ///
    /// # Errors
    /// The local store's errors (the shared one's only make it fall back).
    pub async fn search_knowledge_hybrid(
        &self,
        query: &str,
        vector: Option<&Embedding>,
        limit: u32,
    ) -> Result<(Vec<HybridHit>, SearchSource)> {
        // A bad vector is the caller's error, not a sign that the shared database is down.
        if let Some(vector) = vector {
            vector.check()?;
        }
        if !self.shared_reachable() {
            return Ok((
                self.local
                    .search_knowledge_hybrid(query, vector, limit)
                    .await?,
                SearchSource::Local,
            ));
        }
        let shared = async {
            let database = self.shared.database().await?;
            database
                .with_search_options(self.local.search_options())
                .with_hybrid_options(self.local.hybrid_options())
                .search_knowledge_hybrid(query, vector, limit)
                .await
        };
        match shared.await {
            Ok(hits) => {
                self.shared.mark(true);
                Ok((hits, SearchSource::Shared))
            }
            Err(error) => {
                tracing::debug!(%error, "searching the local copy of knowledge");
                self.shared.mark(false);
                Ok((
                    self.local
                        .search_knowledge_hybrid(query, vector, limit)
                        .await?,
                    SearchSource::Local,
                ))
            }
        }
    }

    /// Searches the shared database when it answers, else the local copy; says which.
    /// While the shared database is known to be unreachable (the background task probes
    /// it every retry interval), searches go straight to the local copy.
    ///
    /// # Errors
    /// The local store's errors (the shared one's only make it fall back).
    pub async fn search_knowledge(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<KnowledgeHit>, SearchSource)> {
        if !self.shared_reachable() {
            // Known down (the background task probes it): don't make the person wait
            // for a connection timeout on every search.
            return Ok((
                self.local.search_knowledge(query, limit).await?,
                SearchSource::Local,
            ));
        }
        let shared = async {
            let database = self.shared.database().await?;
            database
                .with_search_options(self.local.search_options())
                .search_knowledge(query, limit)
                .await
        };
        match shared.await {
            Ok(hits) => {
                self.shared.mark(true);
                Ok((hits, SearchSource::Shared))
            }
            Err(error) => {
                tracing::debug!(%error, "searching the local copy of knowledge");
                self.shared.mark(false);
                Ok((
                    self.local.search_knowledge(query, limit).await?,
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

impl Drop for ReplicatedStore {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sends the outbox, oldest first, in batches, until told to stop.
async fn push_loop(
    local: Database,
    shared: Arc<SharedLink>,
    wake: Arc<Notify>,
    drained: Arc<Notify>,
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
                drained.notify_waiters();
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
        if shared.reachable.load(Ordering::SeqCst) {
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

impl ThreadStore for ReplicatedStore {
    async fn create_thread(&self, thread: &Thread) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::create_thread(self, thread).await?)
    }

    async fn thread(&self, id: ThreadId) -> deckhand_runtime::Result<Option<Thread>> {
        self.local.thread(id).await
    }

    async fn recent_threads(&self, limit: u32) -> deckhand_runtime::Result<Vec<Thread>> {
        self.local.recent_threads(limit).await
    }
}

impl ConversationStore for ReplicatedStore {
    async fn add_message(&self, message: &Message) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::add_message(self, message).await?)
    }

    async fn messages(&self, thread: ThreadId) -> deckhand_runtime::Result<Vec<Message>> {
        Ok(self.local.thread_messages(thread).await?)
    }

    async fn rate_thread(&self, rating: &Rating) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::rate_thread(self, rating).await?)
    }

    async fn ratings(&self, thread: ThreadId) -> deckhand_runtime::Result<Vec<Rating>> {
        Ok(self.local.thread_ratings(thread).await?)
    }

    async fn set_thread_status(
        &self,
        thread: ThreadId,
        status: ThreadStatus,
    ) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::set_thread_status(self, thread, status).await?)
    }

    async fn record_approval(&self, approval: &ApprovalRecord) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::record_approval(self, approval).await?)
    }

    async fn approvals(&self, plan: PlanId) -> deckhand_runtime::Result<Vec<ApprovalRecord>> {
        Ok(self.local.plan_approvals(plan).await?)
    }
}

impl KnowledgeStore for ReplicatedStore {
    async fn upsert_knowledge(&self, entry: &KnowledgeEntry) -> deckhand_runtime::Result<()> {
        Ok(ReplicatedStore::upsert_knowledge(self, entry).await?)
    }

    async fn search(&self, query: &str, limit: u32) -> deckhand_runtime::Result<Vec<KnowledgeHit>> {
        Ok(self.search_knowledge(query, limit).await?.0)
    }
}

// What stays local is served by the local store, so a ReplicatedStore can stand wherever
// a Database does.

impl deckhand_runtime::PlanStore for ReplicatedStore {
    async fn save_plan(&self, plan: &deckhand_runtime::Plan) -> deckhand_runtime::Result<()> {
        self.local.save_plan(plan).await
    }

    async fn record_step(
        &self,
        record: &deckhand_runtime::scheduler::StepRecord,
    ) -> deckhand_runtime::Result<()> {
        self.local.record_step(record).await
    }

    async fn latest_steps(
        &self,
        plan_id: PlanId,
    ) -> deckhand_runtime::Result<
        std::collections::HashMap<String, deckhand_runtime::scheduler::StepRecord>,
    > {
        self.local.latest_steps(plan_id).await
    }
}

impl deckhand_runtime::AuditLog for ReplicatedStore {
    async fn append_audit(
        &self,
        entry: deckhand_runtime::AuditEntry,
    ) -> deckhand_runtime::Result<deckhand_runtime::AuditRecord> {
        self.local.append_audit(entry).await
    }

    async fn audit_records(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> deckhand_runtime::Result<Vec<deckhand_runtime::AuditRecord>> {
        self.local.audit_records(after_seq, limit).await
    }

    async fn verify_audit(&self) -> deckhand_runtime::Result<deckhand_runtime::AuditVerification> {
        self.local.verify_audit().await
    }
}

impl deckhand_runtime::SnapshotStore for ReplicatedStore {
    async fn record_snapshot(
        &self,
        thread: ThreadId,
        object: &deckhand_runtime::ObjectKey,
        prior: Option<&serde_json::Value>,
    ) -> deckhand_runtime::Result<bool> {
        self.local.record_snapshot(thread, object, prior).await
    }

    async fn snapshots(
        &self,
        thread: ThreadId,
    ) -> deckhand_runtime::Result<Vec<deckhand_runtime::Snapshot>> {
        self.local.snapshots(thread).await
    }
}

impl deckhand_runtime::EventLog for ReplicatedStore {
    async fn append_event(
        &self,
        thread: ThreadId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> deckhand_runtime::Result<i64> {
        self.local.append_event(thread, kind, payload).await
    }

    async fn events_after(
        &self,
        thread: ThreadId,
        after_id: i64,
        limit: u32,
    ) -> deckhand_runtime::Result<Vec<deckhand_runtime::ThreadEvent>> {
        self.local.events_after(thread, after_id, limit).await
    }
}

impl deckhand_runtime::TokenStore for ReplicatedStore {
    async fn create_token(
        &self,
        token: &deckhand_runtime::ApiToken,
    ) -> deckhand_runtime::Result<()> {
        self.local.create_token(token).await
    }

    async fn token_by_hash(
        &self,
        token_hash: &str,
    ) -> deckhand_runtime::Result<Option<deckhand_runtime::ApiToken>> {
        self.local.token_by_hash(token_hash).await
    }

    async fn revoke_token(&self, id: uuid::Uuid) -> deckhand_runtime::Result<bool> {
        self.local.revoke_token(id).await
    }

    async fn tokens(&self) -> deckhand_runtime::Result<Vec<deckhand_runtime::ApiToken>> {
        self.local.tokens().await
    }
}
