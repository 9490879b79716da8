//! Errors of the agents.

/// Errors raised by the agents, their host tools and the eval runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host tool could not be added to the registry.
    #[error("registering tool {tool}: {source}")]
    Register {
        /// The tool.
        tool: String,
        /// The registry's reason.
        #[source]
        source: deckhand_tools::Error,
    },
    /// An eval case file or folder could not be read.
    #[error("eval {path}: {source}")]
    EvalIo {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An eval case file is not a valid case.
    #[error("eval case {path}: {source}")]
    EvalCase {
        /// The file.
        path: std::path::PathBuf,
        /// Why it did not parse.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An eval folder holds no case files.
    #[error("eval folder {path} holds no *.yaml case files")]
    EvalEmpty {
        /// The folder.
        path: std::path::PathBuf,
    },
}

/// The agents' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
