//! The thread store: where threads, their messages, ratings, approvals and event logs are
//! kept. The runtime only sees these traits; `deckhand-store` implements them on SQLite
//! and PostgreSQL. Snapshots, the audit log, tokens and knowledge have their own traits
//! ([`crate::restore`], [`crate::audit`], [`crate::token`], [`crate::knowledge`]).

use crate::approval::ApprovalRecord;
use crate::error::Result;
use crate::plan::PlanId;
use crate::thread::{Message, Rating, Thread, ThreadEvent, ThreadId, ThreadStatus};
use std::future::Future;

/// Persistent storage of threads.
pub trait ThreadStore: Send + Sync {
    /// Stores a new thread. Storing the same id twice is an error.
    fn create_thread(&self, thread: &Thread) -> impl Future<Output = Result<()>> + Send;

    /// The thread with `id`, if there is one.
    fn thread(&self, id: ThreadId) -> impl Future<Output = Result<Option<Thread>>> + Send;

    /// Threads, newest first, at most `limit`.
    fn recent_threads(&self, limit: u32) -> impl Future<Output = Result<Vec<Thread>>> + Send;
}

/// What happens in a thread: messages, ratings, status, approvals.
pub trait ConversationStore: Send + Sync {
    /// Appends a message. Adding the same message (same id) again changes nothing.
    fn add_message(&self, message: &Message) -> impl Future<Output = Result<()>> + Send;

    /// The thread's messages, oldest first.
    fn messages(&self, thread: ThreadId) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// Records a rating (0–100; anything else is an error) and audits it; a score of 100
    /// closes the thread. The thread's knowledge entries take the new score.
    fn rate_thread(&self, rating: &Rating) -> impl Future<Output = Result<()>> + Send;

    /// The thread's ratings, oldest first (the last one counts).
    fn ratings(&self, thread: ThreadId) -> impl Future<Output = Result<Vec<Rating>>> + Send;

    /// Sets the thread's status; an error when there is no such thread.
    fn set_thread_status(
        &self,
        thread: ThreadId,
        status: ThreadStatus,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records an approval and audits it.
    fn record_approval(&self, approval: &ApprovalRecord)
        -> impl Future<Output = Result<()>> + Send;

    /// The approvals given for a plan, oldest first.
    fn approvals(&self, plan: PlanId) -> impl Future<Output = Result<Vec<ApprovalRecord>>> + Send;
}

/// A per-thread log of events that a client can resume from after a reconnect.
pub trait EventLog: Send + Sync {
    /// Appends an event; returns its id, one more than the thread's previous event.
    fn append_event(
        &self,
        thread: ThreadId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// The thread's events with an id above `after_id`, oldest first, at most `limit`.
    fn events_after(
        &self,
        thread: ThreadId,
        after_id: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ThreadEvent>>> + Send;
}
