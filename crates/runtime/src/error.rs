//! Errors of the runtime.

/// Errors raised by the runtime and by the stores behind its traits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A thread id is not a valid UUID.
    #[error("{input:?} is not a thread id (expected a UUID)")]
    InvalidThreadId {
        /// What was given.
        input: String,
        /// Why it did not parse.
        #[source]
        source: uuid::Error,
    },
    /// A thread status read from storage is not one this version knows.
    #[error("unknown thread status {status:?}")]
    UnknownThreadStatus {
        /// What was stored.
        status: String,
    },
    /// The store failed.
    #[error("thread store: {context}")]
    Store {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
