//! Nothing is lost or half-written when the process dies: a child process (this test
//! binary, on the ignored `child_writes_until_killed`) writes threads, messages,
//! knowledge, events, snapshots, ratings and audit records from several tasks at once and
//! is killed with SIGKILL; the store is reopened and every invariant the writes'
//! transactions promise is checked. Twice, so the second child also starts from a store
//! that survived a kill. On real SQLite and real PostgreSQL.
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

mod common;

use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::knowledge::{KnowledgeEntry, KnowledgeStore};
use deckhand_runtime::restore::{ObjectKey, SnapshotStore};
use deckhand_runtime::{
    ConversationStore, EventLog, Message, MessageRole, Rating, Thread, ThreadStore,
};
use deckhand_store::{Backend, Database};
use serde_json::json;
use sqlx::Row;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const URL_ENV: &str = "DECKHAND_CRASH_TEST_URL";
/// Tasks writing at once in the child.
const WRITERS: usize = 4;

/// One unit of work, as a thread's life goes: each call is its own transaction.
async fn write_one_thread(db: &Database, writer: usize, n: usize) {
    let thread = Thread::new(
        "crash-cluster",
        format!("writer-{writer}"),
        format!("thread {n}"),
    );
    db.create_thread(&thread).await.unwrap();
    for role in [
        MessageRole::User,
        MessageRole::Agent,
        MessageRole::Assistant,
    ] {
        db.add_message(&Message::new(
            thread.id,
            role,
            "someone",
            format!("crashloop message {n}"),
        ))
        .await
        .unwrap();
    }
    let mut entry = KnowledgeEntry::new(
        thread.id,
        "crash-cluster",
        format!("crashloop {n}"),
        "fixed",
    );
    entry.tags = vec!["crash".into()];
    db.upsert_knowledge(&entry).await.unwrap();
    db.append_event(thread.id, "message", &json!({"n": n}))
        .await
        .unwrap();
    let object = ObjectKey {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("shop".into()),
        name: format!("web-{writer}-{n}"),
    };
    db.record_snapshot(thread.id, &object, Some(&json!({"spec": {"replicas": n}})))
        .await
        .unwrap();
    db.append_event(thread.id, "step", &json!({"n": n}))
        .await
        .unwrap();
    db.rate_thread(&Rating::new(thread.id, 100, "resolved", "ana").unwrap())
        .await
        .unwrap();
    db.append_audit(AuditEntry::new(
        "scarlet",
        "tool.called",
        Some(thread.id),
        "kube_get",
    ))
    .await
    .unwrap();
}

/// In the child: writes until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "started by the kill -9 tests as a child process"]
async fn child_writes_until_killed() {
    let Ok(url) = std::env::var(URL_ENV) else {
        return; // run directly with --ignored: nothing to do
    };
    let db = Database::connect(&url).await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    write_one_thread(&db, writer, n).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}

async fn count(db: &Database, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .get::<i64, _>(0)
}

/// Starts a child writing to `url`, lets it write at least `threads` threads more than
/// there are, and kills it with SIGKILL mid-write.
async fn write_then_kill(db: &Database, url: &str, threads: i64) {
    let before = count(db, "SELECT COUNT(*) FROM threads").await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writes_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(URL_ENV, url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(db, "SELECT COUNT(*) FROM threads").await < before + threads {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        assert!(Instant::now() < deadline, "the child wrote too slowly");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// What the transactions promise, whatever instant the writer died at.
async fn check_consistent(db: &Database) {
    if db.backend() == Backend::Sqlite {
        let integrity: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(integrity, "ok");
        sqlx::query("INSERT INTO knowledge_fts (knowledge_fts) VALUES ('integrity-check')")
            .execute(db.pool())
            .await
            .unwrap();
    }
    let verification = db.verify_audit().await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    // Each rating is audited in its own transaction, and closes its thread there.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'thread.rated'"
        )
        .await,
        count(db, "SELECT COUNT(*) FROM ratings").await
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM ratings r JOIN threads t ON t.id = r.thread_id \
                   WHERE t.status <> 'closed'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM knowledge k JOIN ratings r ON r.thread_id = k.thread_id \
                   WHERE k.rating IS NULL OR k.rating <> r.score"
        )
        .await,
        0
    );
    // Event ids are gapless per thread and the counter agrees with the log.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM (SELECT thread_id, COUNT(*) AS n, MAX(id) AS last \
                   FROM thread_events GROUP BY thread_id) e WHERE e.n <> e.last"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM counters c WHERE c.name LIKE 'events:%' AND c.value <> \
                   (SELECT MAX(e.id) FROM thread_events e WHERE 'events:' || e.thread_id = c.name)"
        )
        .await,
        0
    );
    // The full-text index holds exactly the stored entries.
    let indexed = match db.backend() {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM knowledge_fts WHERE knowledge_fts MATCH 'crashloop'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM knowledge WHERE search @@ to_tsquery('english', 'crashloop')"
        }
    };
    assert_eq!(
        count(db, indexed).await,
        count(db, "SELECT COUNT(*) FROM knowledge").await
    );
    // Snapshots: one per object, seqs unique per thread.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM (SELECT thread_id, seq FROM snapshots \
                   GROUP BY thread_id, seq HAVING COUNT(*) > 1) d"
        )
        .await,
        0
    );
}

async fn survives_kill_9(store: &common::TestStore) {
    let db = &store.database;
    for round in 1..=2 {
        write_then_kill(db, &store.url, 150).await;
        // Reopen, as deckhand would after the crash.
        let reopened = Database::connect(&store.url).await.unwrap();
        check_consistent(&reopened).await;
        // And the store goes on working: the chain continues past the crash.
        reopened
            .append_audit(AuditEntry::new(
                "deckhand",
                "store.reopened",
                None,
                format!("round {round}"),
            ))
            .await
            .unwrap();
        assert!(reopened.verify_audit().await.unwrap().is_intact());
        assert!(!reopened.search("crashloop", 5).await.unwrap().is_empty());
        reopened.close().await;
    }
    assert!(count(db, "SELECT COUNT(*) FROM threads").await >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9_during_heavy_writes() {
    survives_kill_9(&common::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_kill_9_during_heavy_writes() {
    survives_kill_9(&common::postgres().await).await;
}
