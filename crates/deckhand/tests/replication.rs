//! Multi-cluster: the real `deckhand serve` binary with its local SQLite store and
//! `shared_database_url` naming a real PostgreSQL that is down when deckhand starts. The
//! cluster works on (asks, plans, runs, rates, searches its own knowledge), its writes
//! queue, `/metrics` shows the queue; once PostgreSQL is started the thread, its
//! messages, rating, knowledge and LLM usage arrive there exactly once, and knowledge
//! searches answer from every cluster's knowledge.

#![allow(clippy::unwrap_used)]

mod common;

use common::{serve, Caller, WAIT};
use deckhand::store::Database;
use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::{AuditLog, ThreadId, ThreadStore};
use deckhand_testkit::process::free_port;
use deckhand_testkit::{KubeApiServer, Postgres};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns something, for at most [`WAIT`].
async fn eventually<T, F>(what: &str, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Caller {
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The thread ids of a knowledge search for `query`.
    async fn knowledge(&self, query: &str) -> Vec<String> {
        let (status, hits) = self.get(&format!("/api/knowledge?q={query}")).await;
        assert_eq!(status, 200, "{hits}");
        hits.as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["thread_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The value of the unlabelled gauge `name` in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Asks for a read-only diagnosis, waits for its plan to run, and rates the thread 100.
async fn resolve(caller: &Caller, local: &Database, text: &str) -> ThreadId {
    let (status, thread) = caller
        .post("/api/threads", json!({"text": text, "namespace": "shop"}))
        .await;
    assert!(status == 200 || status == 201, "{thread}");
    let thread: ThreadId = thread["thread"]["id"].as_str().unwrap().parse().unwrap();
    // The read-only run ends by keeping what it found as the thread's knowledge entry.
    eventually("the thread's knowledge entry", || async {
        (!local.knowledge_of_thread(thread).await.unwrap().is_empty()).then_some(())
    })
    .await;
    let (status, rated) = caller
        .post(
            &format!("/api/threads/{thread}/rating"),
            json!({"rating": 100, "comment": "spot on"}),
        )
        .await;
    assert_eq!(status, 200, "{rated}");
    assert_eq!(rated["status"], "closed");
    thread
}

#[tokio::test]
async fn a_cluster_works_on_while_the_shared_database_is_down_and_catches_up_once() {
    let mut postgres = Postgres::start().await.unwrap();
    let shared_url = postgres.create_database("shared").await.unwrap();
    // Migrated once while up, to add another cluster's knowledge later on.
    Database::connect(&shared_url).await.unwrap().close().await;
    postgres.stop();

    let cluster = KubeApiServer::start().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    Api::<Namespace>::all(client)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!("shared_database_url = \"{shared_url}\"\n"),
    )
    .unwrap();
    let port = free_port().unwrap();
    let mut deckhand = serve(
        dir.path(),
        port,
        Some(cluster.kubeconfig()),
        "info,deckhand_store=debug",
    )
    .await;
    let caller = Caller::admin(dir.path(), port);
    // Read beside the running process, as an operator would (SQLite in WAL mode).
    let local = Database::open_sqlite(&dir.path().join("data/deckhand.db"))
        .await
        .unwrap();

    // Down: the cluster works on; its writes queue, and /metrics says so.
    let first = resolve(&caller, &local, "list pods in shop").await;
    assert_eq!(caller.knowledge("pods").await, [first.to_string()]);
    let queued = eventually("the queue in /metrics", || async {
        let metrics = caller.metrics().await;
        let pending = gauge(&metrics, "deckhand_store_replication_pending")?;
        (pending > 0).then_some((
            pending,
            gauge(&metrics, "deckhand_store_shared_database_reachable"),
        ))
    })
    .await;
    assert_eq!(queued.1, Some(0), "the shared database is down");
    assert!(local.replication_pending().await.unwrap() > 0);

    // Up: what was queued arrives, and the queue empties.
    postgres.restart().await.unwrap();
    let shared = Database::connect(&shared_url).await.unwrap();
    eventually("the queue to drain", || async {
        (local.replication_pending().await.unwrap() == 0).then_some(())
    })
    .await;
    let stored = shared.thread(first).await.unwrap().expect("the thread");
    assert_eq!(
        stored.status,
        deckhand_runtime::ThreadStatus::Closed,
        "its rating closed it there too"
    );
    // Exactly once: the same messages, rating, knowledge and usage as the local store.
    let messages = local.thread_messages(first).await.unwrap();
    assert!(messages.len() >= 2, "{messages:#?}");
    assert_eq!(shared.thread_messages(first).await.unwrap(), messages);
    assert_eq!(shared.thread_ratings(first).await.unwrap().len(), 1);
    let knowledge = local.knowledge_of_thread(first).await.unwrap();
    assert_eq!(knowledge.len(), 1);
    let copied = shared.knowledge_of_thread(first).await.unwrap();
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].id, knowledge[0].id);
    assert_eq!(copied[0].rating, Some(100));
    let calls = |usage: deckhand::store::ThreadLlmUsage| usage.total.calls;
    let local_calls = calls(local.thread_llm_usage(&first.to_string()).await.unwrap());
    assert!(local_calls > 0, "the offline model answered");
    assert_eq!(
        calls(shared.thread_llm_usage(&first.to_string()).await.unwrap()),
        local_calls
    );
    // The audit log stays with the cluster that made it.
    assert!(shared.audit_records(0, 10).await.unwrap().is_empty());
    eventually("/metrics to see the shared database back", || async {
        let metrics = caller.metrics().await;
        (gauge(&metrics, "deckhand_store_replication_pending") == Some(0)
            && gauge(&metrics, "deckhand_store_shared_database_reachable") == Some(1))
        .then_some(())
    })
    .await;

    // Another cluster's knowledge, only in the shared database: searches find both.
    let mut elsewhere = KnowledgeEntry::new(
        ThreadId::new(),
        "aks-west",
        "pods pending in payments",
        "fixed",
    );
    elsewhere.rating = Some(100);
    shared.upsert_knowledge_entry(&elsewhere).await.unwrap();
    let mut found = caller.knowledge("pods").await;
    found.sort();
    let mut expected = vec![first.to_string(), elsewhere.thread_id.to_string()];
    expected.sort();
    assert_eq!(found, expected);

    // Up all along: a second thread arrives without waiting for a retry; stopping
    // deckhand right after loses nothing either.
    let second = resolve(&caller, &local, "list pods in shop again").await;
    deckhand.stop();
    let log = std::fs::read_to_string(dir.path().join(format!("deckhand-{port}.log"))).unwrap();
    assert!(log.contains("deckhand stopped"), "{log}");
    assert_eq!(local.replication_pending().await.unwrap(), 0, "{log}");
    assert_eq!(
        shared.thread_messages(second).await.unwrap(),
        local.thread_messages(second).await.unwrap()
    );
    assert_eq!(shared.thread_ratings(second).await.unwrap().len(), 1);
    assert_eq!(shared.recent_threads(10).await.unwrap().len(), 2);
}
