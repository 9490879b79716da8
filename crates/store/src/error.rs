//! Errors of the store.

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL names a scheme this store does not serve.
    #[error("unsupported database URL {url:?}: expected sqlite:PATH or postgres://...")]
    UnsupportedUrl {
        /// The URL given (with any password removed).
        url: String,
    },
    /// The directory for an SQLite file could not be created.
    #[error("cannot create the directory for the SQLite database at {path}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL (with any password removed).
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// Running the migrations failed.
    #[error("cannot migrate the database at {url}")]
    Migrate {
        /// The URL (with any password removed).
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database query failed while {context}")]
    Query {
        /// What the store was doing.
        context: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A rating's score is outside 0–100.
    #[error("cannot rate thread {thread}: {source}")]
    InvalidRating {
        /// The thread.
        thread: deckhand_runtime::ThreadId,
        /// The score given.
        #[source]
        source: deckhand_runtime::thread::ScoreOutOfRange,
    },
    /// The thread named does not exist.
    #[error("there is no thread {thread}")]
    ThreadNotFound {
        /// The thread.
        thread: deckhand_runtime::ThreadId,
    },
    /// The knowledge entry named does not exist (an embedding needs its entry).
    #[error("there is no knowledge entry {id}")]
    KnowledgeNotFound {
        /// The entry's id.
        id: uuid::Uuid,
    },
    /// An embedding vector cannot be stored or compared.
    #[error("invalid embedding from model {model:?}: {message}")]
    InvalidEmbedding {
        /// The model named with it.
        model: String,
        /// What is wrong with it.
        message: String,
    },
    /// Only a local SQLite store, not yet replicated, can be replicated to a shared
    /// database.
    #[error(
        "only an SQLite store not replicated yet can be replicated to a shared database \
         (this one: {backend:?}, replicated: {replicated})"
    )]
    ReplicationSource {
        /// The store's backend.
        backend: crate::Backend,
        /// Whether it is replicated already.
        replicated: bool,
    },
    /// A value could not be written as JSON.
    #[error("cannot encode {what} as JSON")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored row does not hold what this version expects.
    #[error("corrupt row while {context}: {message}")]
    CorruptRow {
        /// What the store was doing.
        context: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for deckhand_runtime::Error {
    fn from(error: Error) -> Self {
        deckhand_runtime::Error::Store {
            context: error.to_string(),
            source: Box::new(error),
        }
    }
}
