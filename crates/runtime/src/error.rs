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
    /// An id (of a plan, say) is not a valid UUID.
    #[error("{input:?} is not a {what} id (expected a UUID)")]
    InvalidId {
        /// What kind of id.
        what: &'static str,
        /// What was given.
        input: String,
        /// Why it did not parse.
        #[source]
        source: uuid::Error,
    },
    /// A plan failed validation; every problem names its step.
    #[error("the plan is invalid:\n  - {}", problems.join("\n  - "))]
    InvalidPlan {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// An approval does not match the plan it is used for.
    #[error("approval refused: {reason}")]
    ApprovalMismatch {
        /// Why.
        reason: String,
    },
    /// A step input names an output that does not exist.
    #[error("{reference} does not exist")]
    MissingOutput {
        /// The reference, e.g. `steps.look.output.name`.
        reference: String,
    },
    /// A planner could not make a valid plan.
    #[error("planning failed: {message}")]
    Planning {
        /// Why, in words for the person.
        message: String,
    },
    /// A heartbeat task is misconfigured (its name, schedule, namespace or request).
    #[error("heartbeat task {task:?}: {problem}")]
    InvalidHeartbeat {
        /// The task's name, as written.
        task: String,
        /// What is wrong, in words.
        problem: String,
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
