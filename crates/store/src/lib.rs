//! deckhand's thread store on SQLite (the embedded default) and PostgreSQL (shared between
//! clusters), through one set of migrations and one code path (sqlx's `Any` driver).
//!
//! # Layout
//! - [`database`]: [`Database`]: connecting, migrating, and the [`ThreadStore`] impl.
//! - [`plans`]: the runtime's `PlanStore`: plans, step states and step events.
//! - [`error`]: this crate's error type.
//!
//! Migrations live in `migrations/` and are embedded at build time.
//!
//! [`ThreadStore`]: deckhand_runtime::ThreadStore

pub mod database;
pub mod error;
pub mod plans;

pub use database::{Backend, Database};
pub use error::{Error, Result};
