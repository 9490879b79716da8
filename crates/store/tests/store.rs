//! Messages, ratings, status, approvals, tokens, event logs, snapshots, the audit chain
//! and knowledge search, each test run on real SQLite and real PostgreSQL.
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

mod common;

use chrono::{Duration, Utc};
use common::TestStore;
use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::knowledge::{score, KnowledgeEntry, KnowledgeStore, SearchOptions};
use deckhand_runtime::restore::{ObjectKey, SnapshotStore};
use deckhand_runtime::token::{hash_token, ApiToken, TokenStore};
use deckhand_runtime::{
    ApprovalRecord, ConversationStore, EventLog, Interface, Message, MessageRole, PlanId, Rating,
    Thread, ThreadId, ThreadStatus, ThreadStore,
};
use deckhand_store::{Backend, Error};
use serde_json::json;
use std::collections::BTreeSet;

both_backends!(
    messages_keep_their_order_and_are_never_doubled,
    ratings_are_validated_audited_and_100_closes,
    threads_can_be_marked_restored,
    approvals_record_who_what_and_where,
    tokens_are_found_by_hash_and_revoked,
    tokens_keep_their_identity_and_expire,
    outside_keys_link_to_threads,
    event_ids_increase_per_thread_under_concurrency,
    the_first_snapshot_of_an_object_wins,
    the_audit_chain_holds_under_concurrent_appends,
    tampering_with_the_audit_log_is_found,
    knowledge_search_ranks_and_filters,
    knowledge_queries_are_taken_literally,
    entries_matching_every_word_come_first,
);

async fn thread(store: &TestStore) -> Thread {
    let thread = Thread::new("cluster-a", "ana", "why is checkout crash-looping?");
    store.database.create_thread(&thread).await.unwrap();
    thread
}

async fn messages_keep_their_order_and_are_never_doubled(store: &TestStore) {
    let db = &store.database;
    let thread = thread(store).await;
    let mut written = Vec::new();
    for (offset, role, author, text) in [
        (
            0,
            MessageRole::User,
            "ana",
            "why is checkout crash-looping in shop?",
        ),
        (
            1,
            MessageRole::Agent,
            "scarlet",
            "plan: read the pod's logs",
        ),
        (
            2,
            MessageRole::Assistant,
            "jamie",
            "the image tag does not exist",
        ),
        (3, MessageRole::System, "deckhand", "plan approved by ana"),
    ] {
        let mut message = Message::new(thread.id, role, author, text);
        message.created_at = thread.created_at + Duration::milliseconds(offset);
        db.add_message(&message).await.unwrap();
        written.push(message);
    }
    db.add_message(&written[1]).await.unwrap();
    db.add_message(&Message::new(
        ThreadId::new(),
        MessageRole::User,
        "bo",
        "elsewhere",
    ))
    .await
    .unwrap();
    let read = db.messages(thread.id).await.unwrap();
    assert_eq!(read.len(), 4, "{read:#?}");
    for (read, written) in read.iter().zip(&written) {
        assert_eq!(read.id, written.id);
        assert_eq!(read.role, written.role);
        assert_eq!(read.author, written.author);
        assert_eq!(read.text, written.text);
        assert_eq!(
            read.created_at.timestamp_micros(),
            written.created_at.timestamp_micros()
        );
    }
}

async fn ratings_are_validated_audited_and_100_closes(store: &TestStore) {
    let db = &store.database;
    let thread = thread(store).await;
    let mut entry = KnowledgeEntry::new(thread.id, "cluster-a", "checkout crash loop", "bad tag");
    entry.rating = None;
    db.upsert_knowledge(&entry).await.unwrap();

    db.rate_thread(&Rating::new(thread.id, 70, "close, not quite", "ana").unwrap())
        .await
        .unwrap();
    assert_eq!(
        db.thread(thread.id).await.unwrap().unwrap().status,
        ThreadStatus::Open
    );
    assert_eq!(
        db.knowledge_of_thread(thread.id).await.unwrap()[0].rating,
        Some(70)
    );

    // Out of range: refused by the type, and by the store for a hand-built rating.
    assert!(Rating::new(thread.id, 101, "", "ana").is_err());
    assert!(Rating::new(thread.id, -1, "", "ana").is_err());
    let mut forged = Rating::new(thread.id, 100, "", "ana").unwrap();
    forged.score = 150;
    let error = db.insert_rating(&forged).await.unwrap_err();
    assert!(matches!(error, Error::InvalidRating { .. }), "{error}");
    let error = db
        .insert_rating(&Rating::new(ThreadId::new(), 50, "", "ana").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ThreadNotFound { .. }), "{error}");

    let closing = Rating::new(thread.id, 100, "fixed, thanks", "ana").unwrap();
    db.rate_thread(&closing).await.unwrap();
    let stored = db.thread(thread.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ThreadStatus::Closed);
    assert!(stored.updated_at >= thread.updated_at);
    let ratings = db.ratings(thread.id).await.unwrap();
    assert_eq!(
        ratings
            .iter()
            .map(|rating| rating.score)
            .collect::<Vec<_>>(),
        vec![70, 100]
    );
    assert_eq!(ratings[1].comment, "fixed, thanks");
    assert_eq!(
        db.knowledge_of_thread(thread.id).await.unwrap()[0].rating,
        Some(100)
    );

    // Only the two accepted ratings are in the audit log, with their scores.
    let audit = db.audit_records(0, 100).await.unwrap();
    let rated: Vec<_> = audit
        .iter()
        .filter(|record| record.action == "thread.rated")
        .collect();
    assert_eq!(rated.len(), 2, "{audit:#?}");
    assert_eq!(rated[1].details["score"], json!(100));
    assert_eq!(rated[1].details["closed"], json!(true));
    assert_eq!(rated[1].thread_id, Some(thread.id));
    assert_eq!(rated[1].actor, "ana");
}

async fn threads_can_be_marked_restored(store: &TestStore) {
    let db = &store.database;
    let thread = thread(store).await;
    db.set_thread_status(thread.id, ThreadStatus::Restored)
        .await
        .unwrap();
    assert_eq!(
        db.thread(thread.id).await.unwrap().unwrap().status,
        ThreadStatus::Restored
    );
    assert!(db
        .set_thread_status(ThreadId::new(), ThreadStatus::Closed)
        .await
        .is_err());
}

async fn approvals_record_who_what_and_where(store: &TestStore) {
    let db = &store.database;
    let thread = thread(store).await;
    let plan = PlanId::new();
    let whole = ApprovalRecord::of_plan(thread.id, plan, "sha256:abc", "ana", Interface::Slack);
    let mut step = ApprovalRecord::of_plan(thread.id, plan, "sha256:abc", "bo", Interface::Gui);
    step.step_id = Some("scale".into());
    step.approved_at = whole.approved_at + Duration::seconds(1);
    db.record_approval(&whole).await.unwrap();
    db.record_approval(&step).await.unwrap();
    db.record_approval(&step).await.unwrap(); // the same record again: no-op
    let approvals = db.approvals(plan).await.unwrap();
    assert_eq!(approvals.len(), 2);
    assert_eq!(approvals[0].interface, Interface::Slack);
    assert_eq!(approvals[0].approved_by, "ana");
    assert_eq!(approvals[0].step_id, None);
    assert_eq!(approvals[1].step_id.as_deref(), Some("scale"));
    assert_eq!(approvals[1].plan_hash, "sha256:abc");
    assert!(db.approvals(PlanId::new()).await.unwrap().is_empty());
    let audit = db.audit_records(0, 100).await.unwrap();
    let approved: Vec<_> = audit
        .iter()
        .filter(|record| record.action == "plan.approved")
        .collect();
    assert_eq!(approved.len(), 2);
    assert_eq!(approved[0].subject, "sha256:abc");
    assert_eq!(approved[0].details["interface"], json!("slack"));
}

async fn tokens_are_found_by_hash_and_revoked(store: &TestStore) {
    let db = &store.database;
    let (token, secret) = ApiToken::issue("ci", vec!["threads:read".into()]);
    db.create_token(&token).await.unwrap();
    let found = db
        .token_by_hash(&hash_token(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, token.id);
    assert_eq!(found.scopes, vec!["threads:read"]);
    assert!(found.is_active());
    // The token itself is nowhere in the table.
    assert!(db.token_by_hash(&secret).await.unwrap().is_none());
    let rows = sqlx::query("SELECT COUNT(*) FROM api_tokens WHERE token_hash = $1 OR name = $1")
        .bind(&secret)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&rows, 0), 0);
    // The same hash twice is refused.
    let mut copy = token.clone();
    copy.id = uuid::Uuid::new_v4();
    assert!(db.create_token(&copy).await.is_err());

    assert!(db.revoke_token(token.id).await.unwrap());
    assert!(!db.revoke_token(token.id).await.unwrap());
    assert!(!db.revoke_token(uuid::Uuid::new_v4()).await.unwrap());
    let revoked = db.token_by_hash(&token.token_hash).await.unwrap().unwrap();
    assert!(!revoked.is_active());
    let (second, _) = ApiToken::issue("gui", vec![]);
    db.create_token(&second).await.unwrap();
    assert_eq!(db.tokens().await.unwrap().len(), 2);
}

async fn tokens_keep_their_identity_and_expire(store: &TestStore) {
    let db = &store.database;
    let (token, secret) = ApiToken::issue("alice laptop", vec!["operator".into()]);
    let mut token = token.for_identity("alice", vec!["devs".into(), "sre".into()], "ada");
    token.expires_at = Some(Utc::now() + Duration::hours(1));
    db.create_token(&token).await.unwrap();
    let found = db
        .token_by_hash(&hash_token(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.subject, "alice");
    assert_eq!(found.groups, vec!["devs", "sre"]);
    assert_eq!(found.created_by, "ada");
    assert_eq!(
        found.expires_at.map(|at| at.timestamp_micros()),
        token.expires_at.map(|at| at.timestamp_micros())
    );
    assert!(found.is_active());

    let (expired, _) = ApiToken::issue("old", vec!["viewer".into()]);
    let mut expired = expired.for_identity("bob", vec![], "ada");
    expired.expires_at = Some(Utc::now() - Duration::seconds(1));
    db.create_token(&expired).await.unwrap();
    let found = db
        .token_by_hash(&expired.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(!found.is_active(), "an expired token is not active");
}

async fn outside_keys_link_to_threads(store: &TestStore) {
    let db = &store.database;
    let first = thread(store).await;
    let second = thread(store).await;
    assert_eq!(db.linked_thread("slack:C1:1700.1").await.unwrap(), None);
    db.link_thread("slack:C1:1700.1", first.id).await.unwrap();
    db.link_thread("alertmanager:{}:{alertname=\"X\"}", second.id)
        .await
        .unwrap();
    assert_eq!(
        db.linked_thread("slack:C1:1700.1").await.unwrap(),
        Some(first.id)
    );
    // Linking again moves the key; the latest link wins.
    db.link_thread("slack:C1:1700.1", second.id).await.unwrap();
    assert_eq!(
        db.linked_thread("slack:C1:1700.1").await.unwrap(),
        Some(second.id)
    );
    assert_eq!(
        db.linked_thread("alertmanager:{}:{alertname=\"X\"}")
            .await
            .unwrap(),
        Some(second.id)
    );
    // A link to a thread that does not exist is refused.
    assert!(db.link_thread("slack:C2:1", ThreadId::new()).await.is_err());
}

async fn event_ids_increase_per_thread_under_concurrency(store: &TestStore) {
    let db = &store.database;
    let (a, b) = (ThreadId::new(), ThreadId::new());
    assert_eq!(
        db.append_event(a, "message", &json!({"n": 1}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.append_event(a, "plan", &json!({"n": 2})).await.unwrap(),
        2
    );
    assert_eq!(db.append_event(b, "message", &json!({})).await.unwrap(), 1);
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move { db.append_event(a, "step", &json!({"n": n})).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(
        ids,
        (3..=26).collect::<BTreeSet<i64>>(),
        "unique and gapless"
    );

    // A client that saw event 2 resumes after it.
    let resumed = db.events_after(a, 2, 10).await.unwrap();
    assert_eq!(
        resumed.iter().map(|event| event.id).collect::<Vec<_>>(),
        (3..=12).collect::<Vec<_>>()
    );
    assert!(resumed.iter().all(|event| event.kind == "step"));
    let first = db.events_after(a, 0, 2).await.unwrap();
    assert_eq!(first[0].payload, json!({"n": 1}));
    assert_eq!(first[1].kind, "plan");
    assert_eq!(db.events_after(a, 26, 10).await.unwrap().len(), 0);
    assert_eq!(db.events_after(b, 0, 10).await.unwrap().len(), 1);
}

async fn the_first_snapshot_of_an_object_wins(store: &TestStore) {
    let db = &store.database;
    let thread = ThreadId::new();
    let web = ObjectKey {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("shop".into()),
        name: "web".into(),
    };
    let role = ObjectKey {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        namespace: None,
        name: "reader".into(),
    };
    let before = json!({"spec": {"replicas": 2}});
    assert!(db
        .record_snapshot(thread, &web, Some(&before))
        .await
        .unwrap());
    assert!(!db
        .record_snapshot(thread, &web, Some(&json!({"spec": {"replicas": 5}})))
        .await
        .unwrap());
    assert!(db.record_snapshot(thread, &role, None).await.unwrap());
    // Concurrent first touches of one object: exactly one wins.
    let config = ObjectKey {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("shop".into()),
        name: "settings".into(),
    };
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (db, config) = (db.clone(), config.clone());
            tokio::spawn(async move {
                db.record_snapshot(thread, &config, Some(&json!({"n": n})))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(winners, 1);
    // Another thread touching the same object has its own snapshot.
    assert!(db
        .record_snapshot(ThreadId::new(), &web, None)
        .await
        .unwrap());

    let snapshots = db.snapshots(thread).await.unwrap();
    assert_eq!(snapshots.len(), 3);
    assert_eq!(snapshots[0].object, web);
    assert_eq!(snapshots[0].prior, Some(before));
    assert_eq!(snapshots[1].object, role);
    assert_eq!(snapshots[1].prior, None, "created by the thread");
    assert_eq!(snapshots[2].object, config);
    assert!(snapshots.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(snapshots
        .iter()
        .all(|snapshot| snapshot.thread_id == thread));
}

async fn the_audit_chain_holds_under_concurrent_appends(store: &TestStore) {
    let db = &store.database;
    assert!(db.verify_audit().await.unwrap().is_intact());
    let tasks: Vec<_> = (0..4)
        .map(|writer| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..15 {
                    db.append_audit(
                        AuditEntry::new(
                            format!("writer-{writer}"),
                            "tool.called",
                            None,
                            "kube_get",
                        )
                        .with_details(json!({"n": n, "nested": {"b": 1, "a": [true, null]}})),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let verification = db.verify_audit().await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.records, 60);
    let records = db.audit_records(0, 100).await.unwrap();
    assert_eq!(
        records.iter().map(|record| record.seq).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>()
    );
    assert!(records
        .windows(2)
        .all(|pair| pair[1].prev_hash == pair[0].hash));
}

async fn tampering_with_the_audit_log_is_found(store: &TestStore) {
    let db = &store.database;
    let thread = ThreadId::new();
    for n in 1..=5 {
        db.append_audit(
            AuditEntry::new(
                "ana",
                "cluster.write",
                Some(thread),
                "apps/v1 Deployment shop/web",
            )
            .with_details(json!({"replicas": n})),
        )
        .await
        .unwrap();
    }
    assert!(db.verify_audit().await.unwrap().is_intact());

    // Rows cannot be changed or removed through SQL...
    let update = "UPDATE audit_log SET details = '{\"replicas\":50}' WHERE seq = 3";
    assert!(sqlx::query(update).execute(db.pool()).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(db.pool())
        .await
        .is_err());
    // ...unless someone with the database's keys removes the guard first.
    let drop_guard = match db.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
        Backend::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
    };
    sqlx::query(drop_guard).execute(db.pool()).await.unwrap();
    sqlx::query(update).execute(db.pool()).await.unwrap();
    let verification = db.verify_audit().await.unwrap();
    assert_eq!(verification.records, 5);
    let broken = verification.first_broken.unwrap();
    assert_eq!(broken.seq, 3, "{broken:?}");
    assert!(
        broken.problem.contains("does not match its hash"),
        "{broken:?}"
    );

    // Appends go on after the damage; the damage stays found.
    db.append_audit(AuditEntry::new("ana", "audit.checked", None, "chain"))
        .await
        .unwrap();
    assert_eq!(
        db.verify_audit().await.unwrap().first_broken.unwrap().seq,
        3
    );
}

/// Stores an entry and returns it.
async fn entry(
    store: &TestStore,
    cluster: &str,
    request: &str,
    resolution: &str,
    rating: Option<u8>,
    age_days: i64,
) -> KnowledgeEntry {
    let mut entry = KnowledgeEntry::new(ThreadId::new(), cluster, request, "deckhand answered");
    entry.resolution_summary = resolution.into();
    entry.resolution_steps = vec!["kubectl rollout undo".into()];
    entry.tags = vec!["kubernetes".into()];
    entry.keywords = vec!["deployment".into()];
    entry.rating = rating;
    entry.created_at = Utc::now() - Duration::days(age_days);
    store.database.upsert_knowledge(&entry).await.unwrap();
    entry
}

async fn knowledge_search_ranks_and_filters(store: &TestStore) {
    let db = &store.database;
    let best = entry(
        store,
        "eks-prod",
        "checkout pod crashloop after deploy",
        "fixed the image tag",
        Some(100),
        1,
    )
    .await;
    let older = entry(
        store,
        "aks-west",
        "checkout pod crashloop after deploy",
        "fixed the image tag",
        Some(100),
        400,
    )
    .await;
    let lower = entry(
        store,
        "eks-prod",
        "checkout pod crashloop after deploy",
        "fixed the image tag",
        Some(65),
        1,
    )
    .await;
    let poor = entry(
        store,
        "eks-prod",
        "checkout pod crashloop after deploy",
        "restarted it",
        Some(59),
        1,
    )
    .await;
    let unrated = entry(
        store,
        "eks-prod",
        "checkout pod crashloop after deploy",
        "unknown",
        None,
        1,
    )
    .await;
    let unrelated = entry(
        store,
        "eks-prod",
        "rotate the ingress certificate",
        "renewed it",
        Some(100),
        1,
    )
    .await;

    let hits = db
        .search("why is checkout crash-looping? crashloop", 10)
        .await
        .unwrap();
    let ids: Vec<_> = hits.iter().map(|hit| hit.entry.id).collect();
    assert_eq!(ids, vec![best.id, lower.id, older.id], "{hits:#?}");
    assert!(!ids.contains(&poor.id) && !ids.contains(&unrated.id) && !ids.contains(&unrelated.id));
    assert_eq!(hits[0].entry.cluster_id, "eks-prod");
    assert_eq!(hits[0].entry.thread_id, best.thread_id);
    assert_eq!(hits[2].entry.cluster_id, "aks-west");
    assert_eq!(hits[0].entry.resolution_steps, vec!["kubectl rollout undo"]);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));

    // The SQL computes the runtime's formula.
    let options = SearchOptions::default();
    for hit in &hits {
        let text_rank = hit.relevance / (1.0 - hit.relevance);
        let age_days = (Utc::now() - hit.entry.created_at).num_seconds() as f64 / 86_400.0;
        let expected = score(text_rank, hit.entry.rating.unwrap(), age_days, &options);
        assert!(
            (hit.score - expected).abs() < 1e-6,
            "{} vs {expected}",
            hit.score
        );
        assert!(hit.relevance > 0.0 && hit.relevance < 1.0);
    }

    // Stemming: "certificates" finds "certificate"; tags and keywords are searched.
    let hits = db.search("certificates", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entry.id, unrelated.id);
    assert_eq!(db.search("kubernetes", 10).await.unwrap().len(), 4);
    assert_eq!(db.search("crashloop", 2).await.unwrap().len(), 2);

    // The threshold is configurable.
    let strict = db.clone().with_search_options(SearchOptions {
        min_rating: 90,
        ..SearchOptions::default()
    });
    assert_eq!(strict.search("crashloop", 10).await.unwrap().len(), 2);
    let lenient = db.clone().with_search_options(SearchOptions {
        min_rating: 0,
        ..SearchOptions::default()
    });
    assert_eq!(lenient.search("crashloop", 10).await.unwrap().len(), 4);

    // A rating makes an entry eligible; rewriting an entry re-indexes it.
    let mut thread = Thread::new("eks-prod", "ana", "crashloop");
    thread.id = unrated.thread_id;
    db.create_thread(&thread).await.unwrap();
    db.rate_thread(&Rating::new(thread.id, 90, "", "ana").unwrap())
        .await
        .unwrap();
    assert_eq!(db.search("crashloop", 10).await.unwrap().len(), 4);
    let mut rewritten = unrelated.clone();
    rewritten.request = "renew the tls secret".into();
    db.upsert_knowledge(&rewritten).await.unwrap();
    assert!(db.search("ingress", 10).await.unwrap().is_empty());
    assert_eq!(
        db.search("tls", 10).await.unwrap()[0].entry.id,
        unrelated.id
    );
}

async fn knowledge_queries_are_taken_literally(store: &TestStore) {
    let db = &store.database;
    let target = entry(
        store,
        "k3s-home",
        "ingress returns 502 NEAR the gateway",
        "fixed the service port",
        Some(80),
        3,
    )
    .await;
    for query in [
        "\"",
        "'; DROP TABLE knowledge; --",
        "NEAR(ingress gateway, 2)",
        "ingress AND OR NOT",
        "request:ingress",
        "ingress*",
        "(ingress",
        "ingress & !gateway | <-> :*",
        "502 -- /* */",
        "",
        "   ",
        "🚀 ingress",
        "\u{0}ingress",
    ] {
        let hits = db.search(query, 10).await.unwrap_or_else(|error| {
            panic!("{query:?} failed: {error}");
        });
        if query.contains("ingress") || query.contains("502") {
            assert_eq!(hits.len(), 1, "{query:?}: {hits:?}");
            assert_eq!(hits[0].entry.id, target.id);
        }
    }
    // The table is still there.
    assert_eq!(db.search("ingress", 10).await.unwrap().len(), 1);
}

async fn entries_matching_every_word_come_first(store: &TestStore) {
    let db = &store.database;
    let both = entry(
        store,
        "eks-prod",
        "ingress timeout on payments",
        "raised the timeout",
        Some(61),
        600,
    )
    .await;
    let one = entry(
        store,
        "eks-prod",
        "ingress for payments",
        "added a rule",
        Some(100),
        0,
    )
    .await;
    let hits = db.search("ingress timeout", 10).await.unwrap();
    let ids: Vec<_> = hits.iter().map(|hit| hit.entry.id).collect();
    assert_eq!(ids, vec![both.id, one.id], "{hits:#?}");
    assert!(
        hits[1].score > hits[0].score,
        "the partial match scores higher on its own"
    );
    // The same order whatever the limit.
    assert_eq!(
        db.search("ingress timeout", 1).await.unwrap()[0].entry.id,
        both.id
    );
    assert_eq!(db.search("timeout", 10).await.unwrap().len(), 1);
}
