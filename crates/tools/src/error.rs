//! Errors of the tool layer.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading or running a tool.
///
/// A tool that runs and reports a failure of its own (a missing file, say) is not an
/// error here: that is a [`crate::ToolFailure`] in the call's result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wasm engine could not be set up with the requested configuration.
    #[error("cannot set up the wasm engine: {message}")]
    Engine {
        /// What wasmtime said.
        message: String,
    },
    /// A module file could not be read.
    #[error("cannot read tool module {path}")]
    ReadModule {
        /// The module's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A module is not valid WebAssembly or imports something the sandbox does not offer.
    #[error("tool module {tool} cannot be loaded: {message}")]
    InvalidModule {
        /// The tool's name.
        tool: String,
        /// What wasmtime said.
        message: String,
    },
    /// The workspace directory cannot be opened for the tool.
    #[error("cannot open workspace {path} for tool {tool}: {message}")]
    Workspace {
        /// The tool's name.
        tool: String,
        /// The workspace directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The input document is larger than the configured limit.
    #[error("input for tool {tool} is {size} bytes, above the limit of {limit} bytes")]
    InputTooLarge {
        /// The tool's name.
        tool: String,
        /// The input's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The tool ran longer than its CPU-time budget and was stopped.
    #[error("tool {tool} ran longer than its time limit of {limit:?} and was stopped")]
    TimeLimit {
        /// The tool's name.
        tool: String,
        /// The limit.
        limit: Duration,
    },
    /// The tool tried to use more memory than allowed.
    #[error("tool {tool} tried to use more than its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The tool's name.
        tool: String,
        /// The limit.
        limit: usize,
    },
    /// The tool wrote more than allowed to stdout or stderr.
    #[error("tool {tool} wrote more than its output limit of {limit} bytes")]
    OutputLimit {
        /// The tool's name.
        tool: String,
        /// The limit.
        limit: usize,
    },
    /// The tool crashed (a trap, an abort or a non-zero exit).
    #[error("tool {tool} crashed: {message}")]
    Crashed {
        /// The tool's name.
        tool: String,
        /// The trap or exit status, with the tool's stderr when it wrote any.
        message: String,
    },
    /// The tool finished but its stdout is not a result document.
    #[error("tool {tool} returned a malformed result: {message}")]
    MalformedResult {
        /// The tool's name.
        tool: String,
        /// Why the result was rejected.
        message: String,
    },
}

/// The tool layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
