//! Errors of the test kit. They say what to install or run when a server cannot start.

use std::path::PathBuf;

/// Why a test server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server binary is missing.
    #[error("{what} not found at {path}; run scripts/test.sh (it installs everything the tests need) or set {env_var}")]
    BinaryMissing {
        /// The program.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides the location.
        env_var: &'static str,
    },
    /// A file-system operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (initdb, say) failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and output.
        output: String,
    },
    /// A server did not become ready in time, or exited during start-up.
    #[error("{server} did not become ready: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    NotReady {
        /// Which server.
        server: &'static str,
        /// Why we gave up.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The end of that log.
        log_tail: String,
    },
    /// Generating test certificates failed.
    #[error("cannot generate test certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// Building a Kubernetes client failed.
    #[error("cannot build a Kubernetes client for the test API server")]
    KubeClient(#[source] ::kube::Error),
    /// Building a Kubernetes client config failed.
    #[error("cannot load the test kubeconfig")]
    KubeConfig(#[source] ::kube::config::KubeconfigError),
    /// A database operation against the test server failed.
    #[error("{context}")]
    Database {
        /// What was being done.
        context: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
}

/// The test kit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
