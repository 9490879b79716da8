//! A cluster's store replicated to a shared PostgreSQL: writes queue while PostgreSQL is
//! down and arrive once it is back, exactly once; knowledge searches fall back to the
//! local copy meanwhile. Real SQLite, real PostgreSQL, stopped and started mid-run.
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::knowledge::KnowledgeStore;
use deckhand_runtime::{ApprovalRecord, Interface, Message, MessageRole, PlanId, Rating, Thread};
use deckhand_runtime::{ConversationStore, ThreadStore};
use deckhand_store::{Database, ReplicationConfig, SearchSource};
use deckhand_testkit::{Postgres, SqliteFile};
use sqlx::Row;
use std::time::Duration;

const FLUSH: Duration = Duration::from_secs(60);

async fn count(db: &Database, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// A resolved thread: the thread, two messages, an approval, a knowledge entry, a rating.
async fn resolve(store: &Database, cluster: &str, request: &str) -> Thread {
    let thread = Thread::new(cluster, "ana", request);
    store.create_thread(&thread).await.unwrap();
    store
        .add_message(&Message::new(thread.id, MessageRole::User, "ana", request))
        .await
        .unwrap();
    store
        .add_message(&Message::new(
            thread.id,
            MessageRole::Assistant,
            "jamie",
            "done",
        ))
        .await
        .unwrap();
    store
        .record_approval(&ApprovalRecord::of_plan(
            thread.id,
            PlanId::new(),
            "sha256:1",
            "ana",
            Interface::Cli,
        ))
        .await
        .unwrap();
    let mut entry = KnowledgeEntry::new(thread.id, cluster, request, "done");
    entry.resolution_summary = "rolled back the deployment".into();
    store.upsert_knowledge(&entry).await.unwrap();
    store
        .rate_thread(&Rating::new(thread.id, 100, "", "ana").unwrap())
        .await
        .unwrap();
    thread
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_an_outage_of_the_shared_database_without_duplicates() {
    let mut postgres = Postgres::start().await.unwrap();
    let shared_url = postgres.create_database("shared").await.unwrap();
    let shared = Database::connect(&shared_url).await.unwrap();
    let file = SqliteFile::new().unwrap();
    let local = Database::open_sqlite(file.path()).await.unwrap();
    let store = local
        .clone()
        .replicate_to(
            ReplicationConfig::new(&shared_url).with_retry_interval(Duration::from_millis(200)),
        )
        .unwrap();
    // Another cluster's knowledge, only in the shared database.
    let mut elsewhere = KnowledgeEntry::new(
        deckhand_runtime::ThreadId::new(),
        "aks-west",
        "payments crashloop",
        "fixed",
    );
    elsewhere.rating = Some(100);
    shared.upsert_knowledge_entry(&elsewhere).await.unwrap();

    // Up: writes arrive.
    let first = resolve(&store, "eks-prod", "checkout crashloop after deploy").await;
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    assert!(store.shared_reachable());
    assert_eq!(count(&shared, "threads").await, 1);
    let (hits, source) = store
        .search_knowledge_sourced("crashloop", 10)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Shared);
    assert_eq!(hits.len(), 2, "both clusters' knowledge: {hits:#?}");

    // Down: writes go on locally and queue; searches use the local copy.
    postgres.stop();
    let mut during = Vec::new();
    for n in 0..5 {
        during.push(resolve(&store, "eks-prod", &format!("checkout crashloop {n}")).await);
    }
    assert!(store.replication_pending().await.unwrap() > 0);
    let (hits, source) = store
        .search_knowledge_sourced("crashloop", 10)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Local);
    assert_eq!(
        hits.len(),
        6,
        "this cluster's knowledge, including what is queued"
    );
    assert!(hits.iter().all(|hit| hit.entry.cluster_id == "eks-prod"));
    // Give the pusher time to fail at least once against the stopped server.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!store.shared_reachable());
    assert!(store.replication_pending().await.unwrap() > 0);

    // Keep what is queued, to send it a second time below.
    sqlx::query(
        "CREATE TABLE outbox_copy AS SELECT kind, entity_id, payload, created_at FROM outbox",
    )
    .execute(local.pool())
    .await
    .unwrap();
    let queued = count(&local, "outbox_copy").await;
    assert_eq!(queued, store.replication_pending().await.unwrap());

    // Back (same port, same data): the queue drains, exactly once.
    postgres.restart().await.unwrap();
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    assert!(store.shared_reachable());
    let shared = Database::connect(&shared_url).await.unwrap();
    assert_eq!(count(&shared, "threads").await, 6);
    assert_eq!(count(&shared, "messages").await, 12);
    assert_eq!(count(&shared, "approvals").await, 6);
    assert_eq!(count(&shared, "ratings").await, 6);
    assert_eq!(count(&shared, "knowledge").await, 7);
    for thread in during.iter().chain([&first]) {
        let copy = shared.thread_ratings(thread.id).await.unwrap();
        assert_eq!(copy.len(), 1);
        let stored = deckhand_runtime::ThreadStore::thread(&shared, thread.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, deckhand_runtime::ThreadStatus::Closed);
    }
    // Audit records stay with the cluster that made them.
    assert_eq!(count(&shared, "audit_log").await, 0);
    assert_eq!(count(&local, "audit_log").await, 12);
    let (hits, source) = store
        .search_knowledge_sourced("crashloop", 10)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Shared);
    assert_eq!(hits.len(), 7);

    // Everything sent again (as after a crash between sending and forgetting), plus one
    // new rating: only the new rating is added.
    sqlx::query(
        "INSERT INTO outbox (kind, entity_id, payload, created_at) \
         SELECT kind, entity_id, payload, created_at FROM outbox_copy",
    )
    .execute(local.pool())
    .await
    .unwrap();
    store
        .rate_thread(&Rating::new(first.id, 100, "still fine", "ana").unwrap())
        .await
        .unwrap();
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    assert_eq!(count(&shared, "threads").await, 6);
    assert_eq!(count(&shared, "messages").await, 12);
    assert_eq!(count(&shared, "approvals").await, 6);
    assert_eq!(count(&shared, "knowledge").await, 7);
    assert_eq!(count(&shared, "ratings").await, 7, "only the new rating");

    // What stays local is served by the local store through the same store.
    use deckhand_runtime::{AuditLog, EventLog};
    store
        .append_audit(deckhand_runtime::AuditEntry::new(
            "ana",
            "audit.checked",
            None,
            "chain",
        ))
        .await
        .unwrap();
    assert!(store.verify_audit().await.unwrap().is_intact());
    assert_eq!(
        store
            .append_event(first.id, "message", &serde_json::json!({}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&shared, "audit_log").await, 0);
    assert_eq!(count(&shared, "thread_events").await, 0);
    store.stop_replication().await;
}

/// One LLM call of `thread`.
fn usage(thread: &Thread, tokens_in: u64) -> deckhand_store::LlmUsage {
    deckhand_store::LlmUsage {
        thread_id: Some(thread.id.to_string()),
        at: chrono::Utc::now(),
        agent: "planner".into(),
        backend: "local".into(),
        model: "qwen2.5-coder:1.5b".into(),
        purpose: "chat".into(),
        tokens_in,
        tokens_out: 10,
        latency_ms: 900,
        answered: true,
        error_kind: None,
        error_message: None,
        cost_usd: None,
        redactions: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_llm_usage_replicate_through_an_outage_once() {
    use deckhand_store::Embedding;
    let mut postgres = Postgres::start().await.unwrap();
    let shared_url = postgres.create_database("shared").await.unwrap();
    let file = SqliteFile::new().unwrap();
    let local = Database::open_sqlite(file.path()).await.unwrap();
    let store = local
        .clone()
        .replicate_to(
            ReplicationConfig::new(&shared_url).with_retry_interval(Duration::from_millis(200)),
        )
        .unwrap();
    let model = "nomic-embed-text";
    // An entry with a vector and a call of its thread, while the shared database is up.
    let first = resolve(&store, "eks-prod", "checkout pods restarting").await;
    let entry = local.knowledge_of_thread(first.id).await.unwrap().remove(0);
    let vector = vec![0.1f32, 0.2, 0.3, 0.4];
    store
        .upsert_knowledge_embedding(entry.id, &Embedding::new(model, vector.clone()))
        .await
        .unwrap();
    store.record_llm_usage(&usage(&first, 100)).await.unwrap();
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    let shared = Database::connect(&shared_url).await.unwrap();
    assert_eq!(
        shared.knowledge_embedding(entry.id).await.unwrap(),
        Some(Embedding::new(model, vector.clone())),
        "the vector arrives bit for bit"
    );
    assert_eq!(count(&shared, "llm_usage").await, 1);
    let paraphrase = Embedding::new(model, vec![0.1, 0.2, 0.3, 0.41]);
    let (hits, source) = store
        .search_knowledge_hybrid_sourced("ram quota exceeded", Some(&paraphrase), 5)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Shared);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entry.id, entry.id);

    // Down: vectors and usage queue; searches by meaning use the local copy.
    postgres.stop();
    let mut during = Vec::new();
    for n in 0..3u8 {
        let thread = resolve(&store, "eks-prod", &format!("payments pods restarting {n}")).await;
        let entry = local
            .knowledge_of_thread(thread.id)
            .await
            .unwrap()
            .remove(0);
        store
            .upsert_knowledge_embedding(
                entry.id,
                &Embedding::new(model, vec![0.1, 0.2, 0.3, 0.4 + f32::from(n) / 100.0]),
            )
            .await
            .unwrap();
        store.record_llm_usage(&usage(&thread, 200)).await.unwrap();
        during.push(thread);
    }
    store.record_llm_usage(&usage(&first, 300)).await.unwrap();
    let (hits, source) = store
        .search_knowledge_hybrid_sourced("ram quota exceeded", Some(&paraphrase), 10)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Local);
    assert_eq!(hits.len(), 4, "{hits:#?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!store.shared_reachable());
    sqlx::query(
        "CREATE TABLE outbox_copy AS SELECT kind, entity_id, payload, created_at FROM outbox",
    )
    .execute(local.pool())
    .await
    .unwrap();

    // Back: everything arrives once.
    postgres.restart().await.unwrap();
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    let shared = Database::connect(&shared_url).await.unwrap();
    assert_eq!(count(&shared, "knowledge_embeddings").await, 4);
    assert_eq!(count(&shared, "llm_usage").await, 5);
    let totals = |usage: deckhand_store::ThreadLlmUsage| (usage.total.calls, usage.total.tokens_in);
    assert_eq!(
        totals(
            shared
                .thread_llm_usage(&first.id.to_string())
                .await
                .unwrap()
        ),
        (2, 400)
    );
    assert_eq!(
        totals(
            shared
                .thread_llm_usage(&first.id.to_string())
                .await
                .unwrap()
        ),
        totals(local.thread_llm_usage(&first.id.to_string()).await.unwrap()),
    );
    for thread in &during {
        let entry = local
            .knowledge_of_thread(thread.id)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            shared.knowledge_embedding(entry.id).await.unwrap(),
            local.knowledge_embedding(entry.id).await.unwrap()
        );
    }
    let (hits, source) = store
        .search_knowledge_hybrid_sourced("ram quota exceeded", Some(&paraphrase), 10)
        .await
        .unwrap();
    assert_eq!(source, SearchSource::Shared);
    assert_eq!(hits.len(), 4);

    // Sent again (a crash between sending and forgetting): nothing doubles.
    sqlx::query(
        "INSERT INTO outbox (kind, entity_id, payload, created_at) \
         SELECT kind, entity_id, payload, created_at FROM outbox_copy",
    )
    .execute(local.pool())
    .await
    .unwrap();
    assert!(store.replication_pending().await.unwrap() > 0);
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    assert_eq!(count(&shared, "knowledge_embeddings").await, 4);
    assert_eq!(count(&shared, "llm_usage").await, 5);

    // A vector for an entry the shared database never got (written before replication
    // was configured) is dropped there, not retried forever ahead of later writes.
    let mut unreplicated = KnowledgeEntry::new(first.id, "eks-prod", "older entry", "done");
    unreplicated.rating = Some(100);
    local.upsert_knowledge_entry(&unreplicated).await.unwrap();
    store
        .upsert_knowledge_embedding(unreplicated.id, &Embedding::new(model, vec![1.0; 4]))
        .await
        .unwrap();
    store.record_llm_usage(&usage(&first, 1)).await.unwrap();
    assert_eq!(store.flush_replication(FLUSH).await.unwrap(), 0);
    assert_eq!(count(&shared, "knowledge_embeddings").await, 4);
    assert_eq!(
        count(&shared, "llm_usage").await,
        6,
        "the write behind it arrived"
    );
    store.stop_replication().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_queued_at_close_is_sent_by_the_next_start() {
    let mut postgres = Postgres::start().await.unwrap();
    let shared_url = postgres.create_database("shared").await.unwrap();
    let config =
        ReplicationConfig::new(&shared_url).with_retry_interval(Duration::from_millis(200));
    // Down from the start: the process works on with its local store.
    postgres.stop();
    let file = SqliteFile::new().unwrap();
    let store = Database::open_sqlite(file.path())
        .await
        .unwrap()
        .replicate_to(config.clone())
        .unwrap();
    assert!(store.is_replicated());
    assert!(matches!(
        store.clone().replicate_to(config.clone()),
        Err(deckhand_store::Error::ReplicationSource { .. })
    ));
    // Clones replicate too: they are how the product passes its store around.
    let clone = store.clone();
    let mut written = Vec::new();
    for n in 0..3 {
        written.push(resolve(&clone, "eks-prod", &format!("disk pressure {n}")).await);
    }
    let queued = store.replication_pending().await.unwrap();
    assert!(queued > 0);
    // Closing gives up once sending fails, not after the whole flush timeout.
    let started = std::time::Instant::now();
    store.close().await;
    // Closing another clone afterwards does not wait for a flush nobody would make.
    clone.close().await;
    assert!(
        started.elapsed() < deckhand_store::database::CLOSE_FLUSH_TIMEOUT,
        "closing took {:?}",
        started.elapsed()
    );
    let reopened = Database::open_sqlite(file.path()).await.unwrap();
    assert_eq!(reopened.replication_pending().await.unwrap(), queued);
    reopened.close().await;

    // The next start, with the shared database back, sends the leftovers and its own.
    postgres.restart().await.unwrap();
    let store = Database::open_sqlite(file.path())
        .await
        .unwrap()
        .replicate_to(config)
        .unwrap();
    written.push(resolve(&store, "eks-prod", "disk pressure again").await);
    store.close().await;
    let reopened = Database::open_sqlite(file.path()).await.unwrap();
    assert_eq!(reopened.replication_pending().await.unwrap(), 0);
    let shared = Database::connect(&shared_url).await.unwrap();
    assert_eq!(count(&shared, "threads").await, 4);
    assert_eq!(count(&shared, "messages").await, 8);
    assert_eq!(count(&shared, "knowledge").await, 4);
    assert_eq!(count(&shared, "ratings").await, 4);
    for thread in &written {
        assert_eq!(
            shared.thread_messages(thread.id).await.unwrap(),
            reopened.thread_messages(thread.id).await.unwrap()
        );
    }
    // A store that just started (a CLI command) asks the shared database at once, not
    // only once the background task has found it.
    let other = SqliteFile::new().unwrap();
    let fresh = Database::open_sqlite(other.path())
        .await
        .unwrap()
        .replicate_to(ReplicationConfig::new(&shared_url))
        .unwrap();
    let (hits, source) = fresh.search_knowledge_sourced("disk", 10).await.unwrap();
    assert_eq!(source, SearchSource::Shared);
    assert_eq!(hits.len(), 4);
    assert_eq!(fresh.search_knowledge("disk", 10).await.unwrap().len(), 4);
    fresh.close().await;
}
