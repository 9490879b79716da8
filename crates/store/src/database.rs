//! Connecting to SQLite or PostgreSQL, running the migrations, and the thread store.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use deckhand_runtime::knowledge::SearchOptions;
use deckhand_runtime::{Thread, ThreadId, ThreadStatus, ThreadStore};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::{Any, AnyPool, Executor, Row};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The migrations both backends run, embedded at build time.
static SHARED_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");
/// What only SQLite runs (FTS5, triggers), merged with the shared ones by version.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
/// What only PostgreSQL runs (tsvector + GIN, identity columns, trigger functions).
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long an SQLite writer waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per pool: deckhand is one process with modest concurrency.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// How long to wait for a connection before reporting the database unreachable.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing a replicated store waits for its queue to reach the shared database.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Database`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a query waits for a connection (including connecting) before failing:
    /// keep it short where an unreachable database must be noticed quickly.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The shared migrations and this backend's own, in version order.
#[derive(Debug)]
struct MergedMigrations(Vec<Migration>);

type Resolved<'s> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>,
            > + Send
            + 's,
    >,
>;

impl<'s> MigrationSource<'s> for MergedMigrations {
    fn resolve(self) -> Resolved<'s> {
        Box::pin(async move { Ok(self.0) })
    }
}

async fn migrator(backend: Backend) -> std::result::Result<Migrator, sqlx::migrate::MigrateError> {
    let own = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    let mut migrations: Vec<Migration> = SHARED_MIGRATIONS
        .iter()
        .chain(own.iter())
        .cloned()
        .collect();
    migrations.sort_by_key(|migration| migration.version);
    Migrator::new(MergedMigrations(migrations)).await
}

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server (shared between clusters).
    Postgres,
}

impl Backend {
    fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(Error::UnsupportedUrl { url: redact(url) })
        }
    }
}

/// A connection pool to the store, migrated to the current schema.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) pool: AnyPool,
    backend: Backend,
    pub(crate) search_options: SearchOptions,
    pub(crate) hybrid_options: crate::embeddings::HybridOptions,
    /// The link to the shared database, when this store is replicated to one.
    pub(crate) replication: Option<std::sync::Arc<crate::replicated::Replication>>,
    /// The hybrid search's candidate vectors, kept between searches (shared by clones).
    pub(crate) vector_cache: std::sync::Arc<crate::embeddings::VectorCache>,
}

impl Database {
    /// Opens (creating if needed) the SQLite database file at `path`, in WAL mode.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to `url` (`sqlite:PATH?mode=rwc` or `postgres://...`) and runs the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, ConnectOptions::default()).await
    }

    /// [`Database::connect`] with pool settings.
    pub async fn connect_with(url: &str, connect: ConnectOptions) -> Result<Self> {
        let backend = Backend::of_url(url)?;
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url).map_err(|source| Error::Connect {
            url: redact(url),
            source,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(connect.max_connections)
            .acquire_timeout(connect.acquire_timeout)
            .after_connect(move |connection, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; NORMAL sync is durable
                        // in WAL mode up to the last checkpointed commit on power loss,
                        // and never corrupts; foreign keys are off by default in SQLite.
                        connection
                            .execute(
                                format!(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
                                    SQLITE_BUSY_TIMEOUT.as_millis()
                                )
                                .as_str(),
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| Error::Connect {
                url: redact(url),
                source,
            })?;
        let migrate = |source| Error::Migrate {
            url: redact(url),
            source,
        };
        migrator(backend)
            .await
            .map_err(migrate)?
            .run(&pool)
            .await
            .map_err(migrate)?;
        Ok(Self {
            pool,
            backend,
            search_options: SearchOptions::default(),
            hybrid_options: crate::embeddings::HybridOptions::default(),
            replication: None,
            vector_cache: std::sync::Arc::default(),
        })
    }

    /// The same store, searching knowledge with `options` (the rating threshold, the
    /// recency half-life).
    #[must_use]
    pub fn with_search_options(mut self, options: SearchOptions) -> Self {
        self.search_options = options;
        self
    }

    /// How knowledge searches rank and filter.
    pub fn search_options(&self) -> SearchOptions {
        self.search_options
    }

    /// The pool, for what the typed methods do not cover (tests that tamper with rows,
    /// maintenance).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|source| Error::Query {
                context: "checking the connection",
                source,
            })
    }

    /// Versions of the migrations applied so far, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(|source| Error::Query {
                    context: "listing applied migrations",
                    source,
                })?;
        rows.iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|source| Error::Query {
                context: "listing applied migrations",
                source,
            })
    }

    /// Closes the pool, waiting for connections to be returned. A replicated store first
    /// sends what is queued, for at most [`CLOSE_FLUSH_TIMEOUT`] (less when the shared
    /// database is down: the rest is sent at the next start), and stops replicating.
    pub async fn close(&self) {
        self.finish_replication(CLOSE_FLUSH_TIMEOUT).await;
        self.pool.close().await;
    }

    async fn insert_thread(&self, thread: &Thread) -> Result<()> {
        const CONTEXT: &str = "creating a thread";
        let mut transaction = self.begin_write(CONTEXT).await?;
        insert_thread_with(&mut *transaction, thread).await?;
        self.commit_write(transaction, CONTEXT, || {
            vec![crate::replicated::Replicated::Thread(thread.clone())]
        })
        .await
    }

    async fn select_thread(&self, id: ThreadId) -> Result<Option<Thread>> {
        const CONTEXT: &str = "reading a thread";
        let row = sqlx::query(&format!("{THREAD_COLUMNS} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| Error::Query {
                context: CONTEXT,
                source,
            })?;
        row.map(|row| thread_from_row(&row, CONTEXT)).transpose()
    }

    async fn select_recent_threads(&self, limit: u32) -> Result<Vec<Thread>> {
        const CONTEXT: &str = "listing threads";
        let rows = sqlx::query(&format!(
            "{THREAD_COLUMNS} ORDER BY created_at DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| Error::Query {
            context: CONTEXT,
            source,
        })?;
        rows.iter()
            .map(|row| thread_from_row(row, CONTEXT))
            .collect()
    }
}

/// Inserts a new thread through `executor` (an error when the id is taken).
pub(crate) async fn insert_thread_with<'e, E>(executor: E, thread: &Thread) -> Result<()>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO threads (id, cluster_id, user_name, title, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(thread.id.to_string())
    .bind(&thread.cluster_id)
    .bind(&thread.user)
    .bind(&thread.title)
    .bind(thread.status.as_str())
    .bind(thread.created_at.timestamp_micros())
    .bind(thread.updated_at.timestamp_micros())
    .execute(executor)
    .await
    .map_err(|source| Error::Query {
        context: "creating a thread",
        source,
    })?;
    Ok(())
}

/// Bumps counter `name` and returns its new value (1 the first time), inside
/// `transaction`. Make it the transaction's first write: it then serialises every
/// transaction bumping the same counter (SQLite's write lock, PostgreSQL's row lock).
pub(crate) async fn next_counter(
    transaction: &mut sqlx::Transaction<'_, Any>,
    name: &str,
    context: &'static str,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
    )
    .bind(name)
    .fetch_one(&mut **transaction)
    .await
    .and_then(|row| row.try_get::<i64, _>(0))
    .map_err(|source| Error::Query { context, source })
}

/// The current time, to the microsecond (what the store keeps).
pub(crate) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

const THREAD_COLUMNS: &str =
    "SELECT id, cluster_id, user_name, title, status, created_at, updated_at FROM threads";

fn thread_from_row(row: &AnyRow, context: &'static str) -> Result<Thread> {
    let query = |source| Error::Query { context, source };
    let corrupt = |message: String| Error::CorruptRow { context, message };
    let id: String = row.try_get("id").map_err(query)?;
    let status: String = row.try_get("status").map_err(query)?;
    Ok(Thread {
        id: id
            .parse()
            .map_err(|error: deckhand_runtime::Error| corrupt(error.to_string()))?,
        cluster_id: row.try_get("cluster_id").map_err(query)?,
        user: row.try_get("user_name").map_err(query)?,
        title: row.try_get("title").map_err(query)?,
        status: status
            .parse::<ThreadStatus>()
            .map_err(|error| corrupt(error.to_string()))?,
        created_at: timestamp(row.try_get("created_at").map_err(query)?, context)?,
        updated_at: timestamp(row.try_get("updated_at").map_err(query)?, context)?,
    })
}

pub(crate) fn timestamp(micros: i64, context: &'static str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::CorruptRow {
        context,
        message: format!("timestamp {micros} is out of range"),
    })
}

/// The URL with any password replaced, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl ThreadStore for Database {
    async fn create_thread(&self, thread: &Thread) -> deckhand_runtime::Result<()> {
        Ok(self.insert_thread(thread).await?)
    }

    async fn thread(&self, id: ThreadId) -> deckhand_runtime::Result<Option<Thread>> {
        Ok(self.select_thread(id).await?)
    }

    async fn recent_threads(&self, limit: u32) -> deckhand_runtime::Result<Vec<Thread>> {
        Ok(self.select_recent_threads(limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://deckhand:s3cret@db:5432/x"),
            "postgres://deckhand:***@db:5432/x"
        );
        assert_eq!(
            redact("postgres://deckhand@db/x"),
            "postgres://deckhand@db/x"
        );
        assert_eq!(
            redact("sqlite://data/deckhand.db"),
            "sqlite://data/deckhand.db"
        );
    }

    #[test]
    fn only_sqlite_and_postgres_urls_are_accepted() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(Error::UnsupportedUrl { .. })
        ));
    }
}
