//! One test body, two backends: each test in `both_backends!` runs once on a real SQLite
//! file and once on a real PostgreSQL server (started per test by the testkit).
#![allow(dead_code, clippy::unwrap_used)] // not every test binary uses every helper

use deckhand_store::Database;
use deckhand_testkit::{Postgres, SqliteFile};

/// A migrated store and the server or file behind it (dropped with it).
pub struct TestStore {
    pub database: Database,
    /// The URL another process can open.
    pub url: String,
    pub postgres: Option<Postgres>,
    pub sqlite: Option<SqliteFile>,
}

pub async fn sqlite() -> TestStore {
    let file = SqliteFile::new().unwrap();
    let database = Database::open_sqlite(file.path()).await.unwrap();
    TestStore {
        database,
        url: file.url(),
        postgres: None,
        sqlite: Some(file),
    }
}

pub async fn postgres() -> TestStore {
    let server = Postgres::start().await.unwrap();
    let url = server.create_database("deckhand").await.unwrap();
    let database = Database::connect(&url).await.unwrap();
    TestStore {
        database,
        url,
        postgres: Some(server),
        sqlite: None,
    }
}

/// For each `async fn name(store: &TestStore)` listed, a test `sqlite::name` and a test
/// `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = $crate::common::sqlite().await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = $crate::common::postgres().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}
