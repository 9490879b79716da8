//! Errors of the policy engine: loading policies and reading requests.
//!
//! Evaluation itself never returns an error to the caller: a policy that fails or times
//! out becomes a violation in the [`crate::Decision`], because an operation the engine
//! could not judge must not go ahead.

use std::path::PathBuf;

/// Everything that can go wrong building an engine or reading its input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request document is neither JSON nor YAML, or not an AdmissionRequest.
    #[error("cannot read the admission request: {message}")]
    InvalidRequest {
        /// What the parser said.
        message: String,
    },
    /// A policy file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Rego module does not parse or compile (neither as Rego v1 nor as v0).
    #[error("invalid Rego in {origin}: {message}")]
    InvalidRego {
        /// The file, or the template it came from.
        origin: String,
        /// What regorus said.
        message: String,
    },
    /// A YAML document in a policy directory is not a valid ConstraintTemplate, constraint
    /// or policy test.
    #[error("invalid policy document in {origin}: {message}")]
    InvalidDocument {
        /// The file (and document index) it came from.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// A constraint names a kind no loaded ConstraintTemplate defines.
    #[error("constraint {constraint} in {origin} is of kind {kind}, which no ConstraintTemplate defines")]
    UnknownConstraintKind {
        /// The constraint's name.
        constraint: String,
        /// Its kind.
        kind: String,
        /// The file it came from.
        origin: String,
    },
    /// Two ConstraintTemplates define the same constraint kind.
    #[error("ConstraintTemplate kind {kind} is defined twice (in {first} and {second})")]
    DuplicateTemplate {
        /// The constraint kind.
        kind: String,
        /// Where it was first defined.
        first: String,
        /// Where it was defined again.
        second: String,
    },
    /// The guard configuration is not acceptable (kube-system cannot be unprotected).
    #[error("invalid guard configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// An inventory file is not a list of Kubernetes objects.
    #[error("invalid inventory in {origin}: {message}")]
    InvalidInventory {
        /// The file it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
