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
//! - [`thread`]: threads (one conversation each) and their identifiers.
//! - [`store`]: the [`store::ThreadStore`] trait that persists threads; `deckhand-store`
//!   implements it on SQLite and PostgreSQL.
//! - [`error`]: this crate's error type.

pub mod agent;
pub mod error;
pub mod plan;
pub mod scheduler;
pub mod store;
pub mod thread;

pub use agent::{AgentRole, PlanRequest, Planner};
pub use error::{Error, Result};
pub use plan::{CatalogEntry, Plan, PlanDraft, PlanId, Step, ToolCatalog};
pub use scheduler::{
    Approvals, PlanEvent, PlanOutcome, PlanState, PlanStore, Scheduler, SchedulerConfig,
    StepExecutor, StepState,
};
pub use store::ThreadStore;
pub use thread::{Thread, ThreadId, ThreadStatus};
