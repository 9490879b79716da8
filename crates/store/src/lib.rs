//! deckhand's thread store on SQLite (the embedded default) and PostgreSQL (shared between
//! clusters), through one set of migrations and one code path (sqlx's `Any` driver).
//!
//! # Layout
//! - [`database`]: [`Database`]: connecting, migrating, and the [`ThreadStore`] impl.
//! - [`plans`]: the runtime's `PlanStore`: plans, step states and step events.
//! - [`conversation`]: messages, ratings, thread status, approvals, thread event logs.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`snapshots`]: the state of objects before a thread first touched them.
//! - [`tokens`]: API tokens, by hash.
//! - [`heartbeat`]: the ledger of scheduled tasks' runs (the runtime's `HeartbeatLedger`).
//! - [`knowledge`]: knowledge entries and full-text search (FTS5, `tsvector`).
//! - [`embeddings`]: an embedding vector per knowledge entry, and the hybrid search that
//!   fuses full text with cosine similarity.
//! - [`usage`]: LLM usage per call and per thread, with totals.
//! - [`replicated`]: [`Database::replicate_to`]: a local SQLite store whose writes are
//!   copied to a shared PostgreSQL through an outbox, working on while PostgreSQL is
//!   unreachable.
//! - [`error`]: this crate's error type.
//!
//! Migrations live in `migrations/` (both backends) and `migrations/sqlite`,
//! `migrations/postgres` (one backend each), merged by version and embedded at build time.
//!
//! [`ThreadStore`]: deckhand_runtime::ThreadStore

pub mod audit;
pub mod conversation;
pub mod database;
pub mod embeddings;
pub mod error;
pub mod heartbeat;
pub mod knowledge;
pub mod links;
pub mod plans;
pub mod replicated;
pub mod snapshots;
pub mod tokens;
pub mod usage;

pub use database::{Backend, ConnectOptions, Database};
pub use embeddings::{Embedding, HybridHit, HybridOptions};
pub use error::{Error, Result};
pub use replicated::{ReplicationConfig, SearchSource};
pub use usage::{LlmUsage, LlmUsageGroup, LlmUsageTotals, ThreadLlmUsage};
