//! deckhand's core: the types every other part shares and the traits they implement.
//!
//! A person's request lives in a [`thread::Thread`]. (Plans, the DAG scheduler, events and
//! the Agent trait arrive with the runtime issue; they are built on these types.)
//!
//! # Layout
//! - [`thread`]: threads (one conversation each) and their identifiers.
//! - [`store`]: the [`store::ThreadStore`] trait that persists threads; `deckhand-store`
//!   implements it on SQLite and PostgreSQL.
//! - [`error`]: this crate's error type.

pub mod error;
pub mod store;
pub mod thread;

pub use error::{Error, Result};
pub use store::ThreadStore;
pub use thread::{Thread, ThreadId, ThreadStatus};
