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

/// An error with its causes (`cluster request failed: read ...: forbidden: ...`): the
/// cause is what tells the person why (the API server's refusal, say).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        // Some errors repeat their cause in their own text.
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Refusal;
    impl std::fmt::Display for Refusal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("forbidden: User \"bob\" cannot get deployments")
        }
    }
    impl std::error::Error for Refusal {}

    #[derive(Debug)]
    struct Read(Refusal);
    impl std::fmt::Display for Read {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cluster request failed: read apps/v1 Deployment shop/web")
        }
    }
    impl std::error::Error for Read {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_is_told_with_its_causes() {
        assert_eq!(
            with_causes(&Read(Refusal)),
            "cluster request failed: read apps/v1 Deployment shop/web: forbidden: User \"bob\" cannot get deployments"
        );
    }
}
