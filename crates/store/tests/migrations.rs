//! The same migrations and queries on a real SQLite file and a real PostgreSQL server.

use deckhand_runtime::{Thread, ThreadId, ThreadStatus, ThreadStore};
use deckhand_store::{Backend, Database};
use deckhand_testkit::{Postgres, SqliteFile};

/// Exercises a freshly migrated store: writes threads, reads them back, lists them.
async fn exercise(database: &Database) {
    let migrations = database
        .applied_migrations()
        .await
        .expect("migrations listed");
    assert_eq!(
        migrations,
        vec![20261122000001],
        "the thread migration is applied once"
    );

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
        1
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
        1
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
