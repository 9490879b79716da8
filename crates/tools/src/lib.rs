//! deckhand's tools: everything an agent can do goes through a tool.
//!
//! Tools that compute or touch files run as WebAssembly modules (built from `tools-wasm/`)
//! under wasmtime, confined to one workspace folder. Tools that touch the cluster run in the
//! host behind the policy gate.
//!
//! # Layout
//! - [`sandbox`]: the wasmtime host: loads tool modules, runs each call in a fresh instance
//!   with only the workspace preopened and CPU, memory, input and output limits.
//! - [`error`]: this crate's error type.

pub mod error;
pub mod sandbox;

pub use error::{Error, Result};
pub use sandbox::{SandboxLimits, ToolFailure, ToolModule, WasmSandbox, WorkspaceAccess};
