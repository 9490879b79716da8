//! This crate's error type: every variant names the repository, branch or forge it
//! concerns. No variant ever carries a token.

use std::path::PathBuf;
use std::time::Duration;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong writing threads to git or opening pull requests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[git]` configuration is invalid; every problem found is listed.
    #[error("invalid git configuration: {}", problems.join("; "))]
    Config {
        /// One line per problem, naming the key.
        problems: Vec<String>,
    },

    /// The token's environment variable is unset or empty.
    #[error("the git token for repository `{repository}` is missing: environment variable `{variable}` is unset or empty")]
    TokenEnvMissing {
        /// The repository the token is for.
        repository: String,
        /// The environment variable named in the configuration.
        variable: String,
    },

    /// The token file (a mounted Secret, typically) could not be read or is empty.
    #[error("the git token for repository `{repository}` could not be read from `{}`", path.display())]
    TokenFile {
        /// The repository the token is for.
        repository: String,
        /// The file named in the configuration.
        path: PathBuf,
        /// Why: missing, unreadable, or empty (then an `InvalidData` error).
        #[source]
        source: std::io::Error,
    },

    /// A file system operation on deckhand's clone failed.
    #[error("{operation} `{}` for repository `{repository}`", path.display())]
    Io {
        /// The repository's configured name.
        repository: String,
        /// What was being done.
        operation: String,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A libgit2 operation failed.
    #[error("git: {operation} in repository `{repository}` failed")]
    Git {
        /// The repository's configured name.
        repository: String,
        /// What was being done, e.g. "fetching `main` from `origin`".
        operation: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },

    /// The blocking task running a git step panicked or was cancelled.
    #[error("the git step for repository `{repository}` did not finish")]
    Blocking {
        /// The repository's configured name.
        repository: String,
        /// tokio's join error.
        #[source]
        source: tokio::task::JoinError,
    },

    /// The remote refused to update a branch (not a fast-forward, a protected branch, a
    /// hook said no).
    #[error(
        "push of `{branch}` to `{remote}` of repository `{repository}` was rejected: {message}"
    )]
    PushRejected {
        /// The repository's configured name.
        repository: String,
        /// The remote's name.
        remote: String,
        /// The branch that was pushed.
        branch: String,
        /// The remote's reason.
        message: String,
    },

    /// The base branch does not exist on the remote, so there is nothing to branch from.
    #[error(
        "base branch `{branch}` does not exist on remote `{remote}` of repository `{repository}`"
    )]
    BaseBranchMissing {
        /// The repository's configured name.
        repository: String,
        /// The remote's name.
        remote: String,
        /// The configured base branch.
        branch: String,
    },

    /// A step that needs the thread's branch (completion, reading manifests) ran before
    /// the branch was created at approval.
    #[error("branch `{branch}` does not exist in repository `{repository}` (it is created when the plan is approved)")]
    ThreadBranchMissing {
        /// The repository's configured name.
        repository: String,
        /// The thread's branch.
        branch: String,
    },

    /// A file on the thread's branch is not what deckhand wrote there (not UTF-8, or
    /// not a file).
    #[error("`{path}` on branch `{branch}` of repository `{repository}`: {problem}")]
    BadFile {
        /// The repository's configured name.
        repository: String,
        /// The thread's branch.
        branch: String,
        /// The path inside the repository.
        path: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The plan or a backup could not be serialised to JSON.
    #[error("serialising `{file}` for thread {thread}")]
    Serialize {
        /// The thread.
        thread: String,
        /// The file being written.
        file: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// The forge could not be reached, or its answer could not be read.
    #[error("{forge}: {operation} failed")]
    Http {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// What was being done.
        operation: String,
        /// reqwest's error (its URLs never hold the token: tokens travel in headers).
        #[source]
        source: reqwest::Error,
    },

    /// The forge rejected the token (401).
    #[error("{forge}: the token was rejected (401 Unauthorized): {message}")]
    Unauthorized {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// The forge's message.
        message: String,
    },

    /// The forge says the repository or project does not exist, or the token cannot see
    /// it (GitHub answers 404 for private repositories the token cannot read).
    #[error("{forge}: {what} not found, or the token cannot see it (404): {message}")]
    NotFound {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// The repository or project.
        what: String,
        /// The forge's message.
        message: String,
    },

    /// The forge's rate limit is exhausted; retry after the given delay or time.
    #[error("{forge}: rate limited ({status}){}{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default(), reset_at.map(|t| format!(", limit resets at unix time {t}")).unwrap_or_default())]
    RateLimited {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// 403 or 429.
        status: u16,
        /// From `Retry-After`.
        retry_after: Option<Duration>,
        /// From `X-RateLimit-Reset` (GitHub) or `RateLimit-Reset` (GitLab): unix seconds.
        reset_at: Option<u64>,
    },

    /// Any other answer the forge gave that is not a success.
    #[error("{forge}: {operation} answered {status}: {message}")]
    Forge {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The forge's message, shortened.
        message: String,
    },

    /// The forge said the pull request already exists, but listing open ones found none.
    #[error("{forge}: a pull request from `{branch}` already exists, but no open one was found")]
    ExistingPullRequestNotFound {
        /// `github` or `gitlab`, with the API base URL.
        forge: String,
        /// The head/source branch.
        branch: String,
    },
}

impl Error {
    pub(crate) fn git(
        repository: &str,
        operation: impl Into<String>,
    ) -> impl FnOnce(git2::Error) -> Error + '_ {
        let operation = operation.into();
        move |source| Error::Git {
            repository: repository.to_owned(),
            operation,
            source,
        }
    }
}
