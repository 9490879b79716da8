//! deckhand's policy engine: every operation deckhand would send to a cluster is judged
//! here first, as a Kubernetes admission request.
//!
//! Three built-in guards are always on and cannot be overridden: no Namespace deletion,
//! no writes in protected namespaces (kube-system always), no cluster-admin. They are
//! written twice, in Rust and in Rego, so a bug in one still leaves the other blocking.
//! On top, users add Rego policies and Gatekeeper ConstraintTemplates with constraints.
//! An evaluation error or timeout denies.
//!
//! ```no_run
//! use deckhand_policy::{AdmissionRequest, Engine};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().policy_directory("policies/examples").build()?;
//! let request = AdmissionRequest::from_text(r#"{"verb":"delete","kind":{"kind":"Namespace"},"name":"prod"}"#)?;
//! let decision = engine.evaluate(&request);
//! assert!(!decision.allowed);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`request`]: the input, an `admission.k8s.io/v1` AdmissionRequest plus `verb`.
//! - [`review`]: one request to the reviews judged: patches applied, lists split,
//!   names normalised.
//! - [`guards`]: the built-in guards in Rust, and [`GuardConfig`].
//! - `builtin` (private): the built-in Rego guards, embedded, as one program over a
//!   projection of each review.
//! - `prefilter` (private): the proof, from that projection, that the Rego guards
//!   cannot fire, which lets the engine skip them for most reviews.
//! - `rego` (private): Rego compiled to regorus bytecode, evaluated with a time limit.
//! - `gatekeeper` (private): ConstraintTemplates, constraints, `spec.match`.
//! - [`inventory`]: objects already in the cluster (`data.inventory`).
//! - [`selector`]: Kubernetes label selectors.
//! - `loader` (private): finding policies in directories.
//! - [`engine`]: [`Engine`] and its builder; what callers use.
//! - [`metrics`]: decision counters, with a Prometheus rendering.
//! - [`fixtures`]: policy tests (`deckhand policy test`).
//! - [`error`]: this crate's error type.
//!
//! The built-in Rego guards live in the repository's `policies/builtin/` and are
//! embedded in the binary.

mod builtin;
pub mod engine;
pub mod error;
pub mod fixtures;
mod gatekeeper;
pub mod guards;
pub mod inventory;
mod loader;
pub mod metrics;
mod prefilter;
mod rego;
pub mod request;
pub mod review;
pub mod selector;

pub use engine::{Engine, EngineBuilder, EvaluationPath, DEFAULT_EVALUATION_TIMEOUT, INPUT_POLICY};
pub use error::{Error, Result};
pub use guards::GuardConfig;
pub use inventory::Inventory;
pub use metrics::MetricsSnapshot;
pub use request::AdmissionRequest;

use serde::{Deserialize, Serialize};

/// A policy's objection (or, among warnings, its remark).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which policy: `builtin/...` for the Rust guards, `builtin.rego/...` for the
    /// Rego guards, the package for user Rego, `Kind/name` for a constraint.
    pub policy: String,
    /// What it said.
    pub message: String,
}

/// The engine's answer for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may go ahead: true exactly when there are no violations.
    pub allowed: bool,
    /// Why not.
    pub violations: Vec<Violation>,
    /// What the policies want the person to know, without denying.
    pub warnings: Vec<Violation>,
}
