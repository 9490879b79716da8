//! Errors of the tool layer.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading or running a tool. [`Error::kind`] gives each a
/// stable machine-readable name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No tool has this name.
    #[error("no tool named {name:?}; known tools: {}", known.join(", "))]
    UnknownTool {
        /// The name asked for.
        name: String,
        /// The names the registry has.
        known: Vec<String>,
    },
    /// The input does not match the tool's input schema.
    #[error("input for tool {tool} is invalid: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidInput {
        /// The tool's name.
        tool: String,
        /// Each place the input breaks the schema.
        problems: Vec<InputProblem>,
    },
    /// The tool ran and reported a failure of its own (a missing file, say).
    #[error("tool {tool} failed ({}): {}", failure.kind, failure.message)]
    Failed {
        /// The tool's name.
        tool: String,
        /// What the tool said.
        failure: crate::sandbox::ToolFailure,
    },
    /// A tool manifest is malformed.
    #[error("tool manifest {path} is invalid: {}", problems.join("; "))]
    InvalidManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        problems: Vec<String>,
    },
    /// Two tools have the same name.
    #[error("tool {name} from {second} has the same name as the one from {first}; the second is not loaded")]
    DuplicateTool {
        /// The name.
        name: String,
        /// Where the tool already registered came from.
        first: String,
        /// Where the refused one came from.
        second: String,
    },
    /// A tools directory could not be read.
    #[error("cannot read tools directory {path}")]
    ToolsDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
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
    /// The policy engine refused a cluster operation; nothing was sent (or, at the
    /// dry-run checkpoint, only the dry run was).
    #[error("policy denied {operation} at the {checkpoint} checkpoint: {}", violations.iter().map(|v| format!("[{}] {}", v.policy, v.message)).collect::<Vec<_>>().join("; "))]
    PolicyDenied {
        /// What was asked, e.g. `delete v1 Namespace prod`.
        operation: String,
        /// `requested` (the object as asked) or `dry_run` (as the server would store it).
        checkpoint: &'static str,
        /// Every policy that objected.
        violations: Vec<deckhand_policy::Violation>,
    },
    /// A cluster change is malformed (no kind, no name, a namespace on a cluster-scoped
    /// object, ...).
    #[error("invalid cluster change: {message}")]
    InvalidChange {
        /// What is wrong.
        message: String,
    },
    /// The API server refused or could not be reached.
    #[error("cluster request failed: {action}")]
    Cluster {
        /// What deckhand was doing, e.g. `dry-run apply of apps/v1 Deployment shop/web`.
        action: String,
        /// kube's error, with the API server's status when there is one.
        #[source]
        source: Box<kube::Error>,
    },
    /// The cluster changed between the approval and the write: what would be written
    /// now differs from what the person approved.
    #[error(
        "{operation} changed since it was approved ({difference}); prepare and approve it again"
    )]
    ChangedSinceApproval {
        /// The operation.
        operation: String,
        /// Where it differs.
        difference: String,
    },
    /// The prior state of an object could not be kept for the thread's restore, so the
    /// change was not made.
    #[error(
        "{operation} was not made: its prior state could not be kept for a restore: {message}"
    )]
    Journal {
        /// The operation.
        operation: String,
        /// Why the journal refused.
        message: String,
    },
    /// The `[alerts]` configuration is invalid, or its senders cannot start; every
    /// problem is listed, each naming its key.
    #[error("the alerts configuration is invalid:\n  - {}", problems.join("\n  - "))]
    InvalidAlerts {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The `[terraform]` configuration is invalid; every problem is listed, each naming
    /// its key.
    #[error("the terraform configuration is invalid:\n  - {}", problems.join("\n  - "))]
    InvalidTerraform {
        /// One line per problem.
        problems: Vec<String>,
    },
}

/// One place where an input breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputProblem {
    /// JSON Pointer to the offending value (`""` for the whole input).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.is_empty() {
            true => write!(f, "{}", self.message),
            false => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl Error {
    /// A stable machine-readable name for this error, as the CLI and API report it. For a
    /// failure the tool reported itself, the tool's own kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::UnknownTool { .. } => "unknown_tool",
            Self::InvalidInput { .. } => "invalid_input",
            Self::Failed { failure, .. } => &failure.kind,
            Self::InvalidManifest { .. } => "invalid_manifest",
            Self::DuplicateTool { .. } => "duplicate_tool",
            Self::ToolsDir { .. } => "tools_dir",
            Self::Engine { .. } => "engine",
            Self::ReadModule { .. } => "read_module",
            Self::InvalidModule { .. } => "invalid_module",
            Self::Workspace { .. } => "workspace",
            Self::InputTooLarge { .. } => "input_too_large",
            Self::TimeLimit { .. } => "time_limit",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::OutputLimit { .. } => "output_limit",
            Self::Crashed { .. } => "crashed",
            Self::MalformedResult { .. } => "malformed_result",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::InvalidChange { .. } => "invalid_change",
            Self::Cluster { .. } => "cluster",
            Self::ChangedSinceApproval { .. } => "changed_since_approval",
            Self::Journal { .. } => "journal",
            Self::InvalidAlerts { .. } => "invalid_alerts",
            Self::InvalidTerraform { .. } => "invalid_terraform",
        }
    }

    /// Whether the caller's input was at fault (a usage error), rather than the tool.
    pub fn is_usage_error(&self) -> bool {
        matches!(
            self,
            Self::UnknownTool { .. }
                | Self::InvalidInput { .. }
                | Self::InputTooLarge { .. }
                | Self::InvalidChange { .. }
        )
    }
}

/// The tool layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
