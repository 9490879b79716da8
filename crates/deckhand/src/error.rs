//! Errors of deckhand's wiring: each says which part failed to start and why.

use std::path::PathBuf;

/// Why deckhand could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; every problem found is listed.
    #[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
    InvalidConfig {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The config file could not be read.
    #[error("cannot read the config file {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The policies could not be loaded.
    #[error("cannot load the policies")]
    Policy(#[from] deckhand_policy::Error),
    /// A directory deckhand needs could not be created.
    #[error("cannot create {what} directory {path}")]
    CreateDir {
        /// Which directory.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The thread store could not be opened.
    #[error("cannot open the thread store")]
    Store(#[from] deckhand_store::Error),
    /// The tools could not be set up or loaded.
    #[error(transparent)]
    Tools(#[from] deckhand_tools::Error),
    /// The tools directory could not be read.
    #[error("cannot read the tools directory {path}")]
    ToolsDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Kubernetes configuration was found but is unusable.
    #[error("the Kubernetes configuration is unusable")]
    Cluster(#[source] kube::Error),
    /// Serving HTTP failed.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    /// The conductor (store, tools, cluster, model router) could not start.
    #[error("cannot start: {0}")]
    Conductor(#[from] crate::conductor::ConductorError),
    /// The HTTP API could not be built from its configuration.
    #[error("the [api] configuration is unusable")]
    Api(#[from] deckhand_api::Error),
    /// The first admin token could not be issued or written down.
    #[error("cannot issue the first admin token: {0}")]
    Bootstrap(String),
}

/// deckhand's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
