//! deckhand's core: the types every other part shares and the traits they implement.
//!
//! A person's request lives in a [`thread::Thread`]; a request in it becomes a
//! [`plan::Plan`], a DAG of steps, each one agent ([`AgentRole`]) using one tool.
//!
//! # Layout
//! - [`agent`]: the agents and what each is responsible for.
//! - [`plan`]: plans, their validation against the tool catalog, and their hash.
//! - [`scheduler`]: runs plans: concurrency, approvals, retries, cancellation,
//!   persistence of every transition (the [`scheduler::PlanStore`] trait) and events.
//! - [`thread`]: threads (one conversation each), their identifiers, messages, ratings
//!   and events.
//! - [`store`]: the traits that persist threads ([`store::ThreadStore`]), what happens in
//!   them ([`store::ConversationStore`]) and their event logs ([`store::EventLog`]);
//!   `deckhand-store` implements them on SQLite and PostgreSQL.
//! - [`approval`]: approvals as recorded (who, which hash, through which interface).
//! - [`heartbeat`]: tasks run on a cron schedule (scans, scheduled requests), the
//!   [`heartbeat::HeartbeatLedger`] of their runs and the [`heartbeat::Heartbeat`] runner.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`knowledge`]: knowledge entries, search hits and the ranking formula.
//! - [`restore`]: snapshots of objects before a thread changed them.
//! - [`token`]: API tokens, stored only as hashes.
//! - [`error`]: this crate's error type.

pub mod agent;
pub mod approval;
pub mod audit;
pub mod error;
pub mod heartbeat;
pub mod knowledge;
pub mod plan;
pub mod restore;
pub mod scheduler;
pub mod store;
pub mod thread;
pub mod token;

pub use agent::{AgentRole, PlanRequest, Planner};
pub use approval::{ApprovalRecord, Interface};
pub use audit::{AuditEntry, AuditLog, AuditRecord, AuditVerification};
pub use error::{Error, Result};
pub use heartbeat::{
    Heartbeat, HeartbeatKind, HeartbeatLauncher, HeartbeatLedger, HeartbeatRecord, HeartbeatTask,
    RunOutcome, Schedule,
};
pub use knowledge::{KnowledgeEntry, KnowledgeHit, KnowledgeStore};
pub use plan::{CatalogEntry, Plan, PlanDraft, PlanId, Step, ToolCatalog};
pub use restore::{ObjectKey, Snapshot, SnapshotStore};
pub use scheduler::{
    Approvals, PlanEvent, PlanOutcome, PlanState, PlanStore, Scheduler, SchedulerConfig,
    StepExecutor, StepState,
};
pub use store::{ConversationStore, EventLog, ThreadStore};
pub use thread::{Message, MessageRole, Rating, Thread, ThreadEvent, ThreadId, ThreadStatus};
pub use token::{ApiToken, TokenStore};
