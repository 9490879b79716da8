//! deckhand's tools: everything an agent can do goes through a tool.
//!
//! Tools that compute or touch files run as WebAssembly modules (built from `tools-wasm/`,
//! or third-party plugins) under wasmtime, confined to one workspace folder. Tools that
//! touch the cluster run in the host behind the policy gate. Both kinds implement one
//! [`Tool`] trait, declare themselves with one [`ToolSpec`] manifest, and are called through
//! one [`ToolRegistry`], which checks inputs and outputs against the manifest's schemas.
//!
//! # Layout
//! - [`spec`]: [`ToolSpec`], a tool's manifest, and its function-calling form.
//! - [`registry`]: the [`Tool`] trait and the [`ToolRegistry`].
//! - [`sandbox`]: the wasmtime host: each call in a fresh instance with only the workspace
//!   preopened and CPU, memory, input and output limits.
//! - [`loader`]: loading `NAME.json` + `NAME.wasm` tools from a directory.
//! - [`cluster`]: the cluster gate: reads and writes judged by the policy engine before
//!   and after a server-side dry run, written only with an approval, audited.
//! - [`terraform`]: `terraform_plan`, `terraform init` + `terraform plan` on a configuration
//!   in the workspace (registered only when a terraform binary is configured; never
//!   applies), run confined by [`confine`].
//! - [`confine`]: Landlock confinement of a host process (terraform) to the files it
//!   needs, through a launcher (`deckhand confine`, or this crate's `deckhand-confine`).
//! - [`error`]: this crate's error type.

pub mod cluster;
pub mod confine;
pub mod error;
pub mod loader;
pub mod registry;
pub mod sandbox;
pub mod spec;
pub mod terraform;

pub use cluster::{Approval, ClusterChange, ClusterGate, ObjectRef, PreparedChange};
pub use error::{Error, InputProblem, Result};
pub use loader::{load_tool_dir, LoadReport, WasmTool};
pub use registry::{Tool, ToolContext, ToolFuture, ToolRegistry};
pub use sandbox::{
    SandboxConfig, SandboxLimits, ToolFailure, ToolModule, WasmSandbox, WorkspaceAccess,
};
pub use spec::{FunctionDefinition, ToolSpec};
