//! deckhand's agents: Scarlet the planner, Jamie the copilot, and the security, SRE and
//! cloud specialists. They implement the runtime's traits on top of the LLM layer and the
//! tools.
//!
//! Every agent works without a model: deterministic analyzers (pod diagnosis, log
//! compression, alert triage, workload and RBAC scanning) and Scarlet's rule-based
//! planner answer the common requests, and a configured model adds language and
//! judgement. The analyzers are also host tools ([`tools::register_analyzers`]), so plans
//! call them like any other tool.
//!
//! # Layout
//! - [`advice`]: remediations, patches and suggested plan steps the analyzers return.
//! - [`k8s`]: tolerant accessors for Kubernetes objects as JSON, and quantities.
//! - [`sre`]: pod diagnosis, log compression, alert triage, resource suggestions.
//! - [`security`]: workload and RBAC scanning.
//! - [`tools`]: the analyzers as [`deckhand_tools::Tool`]s, and their registration.
//! - [`scarlet`]: the planner, with its rule-based and model paths.
//! - [`jamie`]: the copilot's explanations of plans and their results.
//! - [`eval`]: the evaluation set runner (`evals/` at the repository root).
//! - [`error`]: this crate's error type.
//!
//! The roster ([`AgentRole`]) lives in the runtime, because plans name an agent per step.

pub mod advice;
pub mod error;
pub mod eval;
pub mod jamie;
pub mod k8s;
pub mod scarlet;
pub mod security;
pub mod sre;
pub mod tools;

pub use deckhand_runtime::AgentRole;
pub use error::{Error, Result};
pub use jamie::Jamie;
pub use scarlet::Scarlet;
pub use tools::register_analyzers;
