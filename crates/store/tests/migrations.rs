//! The same migrations and queries on a real SQLite file and a real PostgreSQL server.

use deckhand_runtime::{Thread, ThreadId, ThreadStatus, ThreadStore};
use deckhand_store::{Backend, Database};
use deckhand_testkit::{Postgres, SqliteFile};

/// Plans and step transitions: stored, upserted per step, appended as events.
async fn exercise_plans(database: &Database) {
    use deckhand_runtime::plan::{CatalogEntry, PlanDraft, Step, ToolCatalog};
    use deckhand_runtime::scheduler::{StepRecord, StepState};
    use deckhand_runtime::{AgentRole, Plan, PlanStore};
    let catalog = ToolCatalog::new([CatalogEntry {
        name: "kube_scale".into(),
        description: "scales".into(),
        input_schema: serde_json::json!({"type": "object"}),
        mutating: true,
    }]);
    let thread = ThreadId::new();
    let plan = Plan::new(
        thread,
        "scale web to 3",
        "scarlet/offline-rules",
        PlanDraft {
            steps: vec![Step {
                id: "scale".into(),
                agent: AgentRole::Jamie,
                title: "Scale web to 3".into(),
                tool: "kube_scale".into(),
                input: serde_json::json!({"name": "web", "replicas": 3}),
                depends_on: vec![],
                mutating: true,
                rationale: "asked for".into(),
            }],
        },
        &catalog,
    )
    .expect("plan");
    database.save_plan(&plan).await.expect("save plan");
    database
        .save_plan(&plan)
        .await
        .expect("saving twice is a no-op");
    assert_eq!(
        database.plan(plan.id).await.expect("read"),
        Some(plan.clone())
    );
    assert_eq!(
        database.plans_of_thread(thread).await.expect("list").len(),
        1
    );
    let record = |state, output: Option<serde_json::Value>, error: Option<&str>, at| StepRecord {
        plan_id: plan.id,
        step_id: "scale".into(),
        state,
        attempt: 1,
        output,
        error: error.map(str::to_owned),
        at_micros: at,
    };
    database
        .record_step(&record(StepState::Running, None, None, 1))
        .await
        .expect("running");
    database
        .record_step(&record(
            StepState::Succeeded,
            Some(serde_json::json!({"replicas": 3})),
            None,
            2,
        ))
        .await
        .expect("succeeded");
    let states = database.latest_steps(plan.id).await.expect("states");
    assert_eq!(states.len(), 1);
    assert_eq!(states["scale"].state, StepState::Succeeded);
    assert_eq!(
        states["scale"].output,
        Some(serde_json::json!({"replicas": 3}))
    );
    let events = database.step_events(plan.id).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|event| event.1.as_str()).collect();
    assert_eq!(kinds, vec!["running", "succeeded"]);
}

/// Exercises a freshly migrated store: writes threads, reads them back, lists them.
async fn exercise(database: &Database) {
    let migrations = database
        .applied_migrations()
        .await
        .expect("migrations listed");
    assert_eq!(
        migrations,
        vec![
            20261122000001,
            20261123000001,
            20261124000001,
            20261124000002,
            20261125000001,
            20261125000002,
            20261125000003,
            20261126000001,
            20261127000005
        ],
        "each migration is applied once, the backend's own merged in by version"
    );
    exercise_plans(database).await;

    let first = Thread::new("cluster-a", "ana", "why is checkout crash-looping?");
    let mut second = Thread::new("cluster-b", "bo", "scale web to 5");
    second.created_at += chrono::Duration::seconds(1);
    second.status = ThreadStatus::Closed;
    database.create_thread(&first).await.expect("insert first");
    database
        .create_thread(&second)
        .await
        .expect("insert second");

    // Timestamps are stored to the microsecond.
    let truncate = |mut thread: Thread| {
        thread.created_at =
            chrono::DateTime::from_timestamp_micros(thread.created_at.timestamp_micros())
                .expect("in range");
        thread.updated_at =
            chrono::DateTime::from_timestamp_micros(thread.updated_at.timestamp_micros())
                .expect("in range");
        thread
    };
    assert_eq!(
        database.thread(first.id).await.expect("read"),
        Some(truncate(first.clone()))
    );
    assert_eq!(
        database
            .thread(ThreadId::new())
            .await
            .expect("read missing"),
        None
    );

    let recent = database.recent_threads(10).await.expect("list");
    let ids: Vec<ThreadId> = recent.iter().map(|thread| thread.id).collect();
    assert_eq!(ids, vec![second.id, first.id], "newest first");
    assert_eq!(recent[0].status, ThreadStatus::Closed);
    assert_eq!(database.recent_threads(1).await.expect("list one").len(), 1);

    // The same id twice is refused by the primary key.
    assert!(database.create_thread(&first).await.is_err());
}

#[tokio::test]
async fn sqlite_store_migrates_and_queries() {
    let file = SqliteFile::new().expect("temp sqlite");
    let database = Database::open_sqlite(file.path())
        .await
        .expect("open sqlite");
    assert_eq!(database.backend(), Backend::Sqlite);
    exercise(&database).await;
    database.close().await;

    // Reopening keeps the data and applies no migration twice.
    let database = Database::open_sqlite(file.path())
        .await
        .expect("reopen sqlite");
    assert_eq!(database.recent_threads(10).await.expect("list").len(), 2);
    assert_eq!(
        database
            .applied_migrations()
            .await
            .expect("migrations")
            .len(),
        9
    );
}

#[tokio::test]
async fn postgres_store_migrates_and_queries() {
    let postgres = Postgres::start().await.expect("postgres starts");
    let url = postgres
        .create_database("deckhand_store")
        .await
        .expect("database");
    let database = Database::connect(&url).await.expect("connect postgres");
    assert_eq!(database.backend(), Backend::Postgres);
    exercise(&database).await;
    database.close().await;

    let database = Database::connect(&url).await.expect("reconnect postgres");
    assert_eq!(database.recent_threads(10).await.expect("list").len(), 2);
    assert_eq!(
        database
            .applied_migrations()
            .await
            .expect("migrations")
            .len(),
        9
    );
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    // Nothing listens on the port of a stopped server.
    let mut postgres = Postgres::start().await.expect("postgres starts");
    let url = postgres.url();
    postgres.stop();
    let error = Database::connect(&url).await.expect_err("no server");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

/// A store made before the conversations migration keeps its threads through it (the
/// threads table is rebuilt to widen its status check).
async fn upgrade_keeps_threads(url: &str) {
    let old = tempfile::tempdir().expect("temp dir");
    for name in ["20261122000001_threads.sql", "20261123000001_plans.sql"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(name),
            old.path().join(name),
        )
        .expect("copy migration");
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("old migrations")
        .run(&pool)
        .await
        .expect("old schema");
    let thread = Thread::new("cluster-a", "ana", "made before the upgrade");
    sqlx::query(
        "INSERT INTO threads (id, cluster_id, user_name, title, status, created_at, updated_at) \
         VALUES ($1, 'cluster-a', 'ana', 'made before the upgrade', 'closed', $2, $2)",
    )
    .bind(thread.id.to_string())
    .bind(thread.created_at.timestamp_micros())
    .execute(&pool)
    .await
    .expect("old thread");
    pool.close().await;

    let database = Database::connect(url).await.expect("upgrade");
    let kept = database
        .thread(thread.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(kept.title, "made before the upgrade");
    assert_eq!(kept.status, ThreadStatus::Closed);
    assert_eq!(
        database.recent_threads(10).await.expect("list")[0].id,
        thread.id,
        "the index on created_at is back"
    );
    assert_eq!(
        database
            .applied_migrations()
            .await
            .expect("migrations")
            .len(),
        9
    );
}

#[tokio::test]
async fn sqlite_upgrade_keeps_threads() {
    let file = SqliteFile::new().expect("temp sqlite");
    upgrade_keeps_threads(&file.url()).await;
}

#[tokio::test]
async fn postgres_upgrade_keeps_threads() {
    let postgres = Postgres::start().await.expect("postgres starts");
    let url = postgres
        .create_database("deckhand_upgrade")
        .await
        .expect("database");
    upgrade_keeps_threads(&url).await;
}
