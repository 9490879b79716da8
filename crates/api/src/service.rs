//! What the API serves: the [`Deckhand`] service and the [`TokenStore`], both traits so
//! this crate depends on no concrete store, runtime or cluster. `deckhand serve`
//! implements them on the real store; tests implement them in memory.
//!
//! Every call that acts for a person takes the authenticated [`Identity`]: it is the
//! identity deckhand impersonates on the cluster. The API has already checked the
//! caller's scope and, for operators, that the thread is theirs.

use crate::alertmanager::AlertGroup;
use crate::error::{Error, Result};
use crate::model::{
    Approval, Identity, KnowledgeHit, KnowledgeQuery, MessageView, NewMessage, NewThread, PlanView,
    PolicyView, Rating, Rejection, RestoreView, StepPreview, ThreadDetail, ThreadEvent,
    ThreadQuery, ThreadSummary, TokenRecord, ToolView,
};
use async_trait::async_trait;
use deckhand_runtime::{PlanId, ThreadId};
use futures_util::Stream;
use std::pin::Pin;

/// A thread's events, oldest first; live events follow the stored ones without a gap.
pub type EventStream = Pin<Box<dyn Stream<Item = ThreadEvent> + Send>>;

/// deckhand as the API sees it.
#[async_trait]
pub trait Deckhand: Send + Sync + 'static {
    /// Starts a thread with a request; the planner's work is announced as events.
    async fn create_thread(&self, who: &Identity, request: NewThread) -> Result<ThreadDetail>;

    /// Threads, newest first.
    async fn list_threads(&self, who: &Identity, query: ThreadQuery) -> Result<Vec<ThreadSummary>>;

    /// One thread with its messages, plans and steps ([`crate::Error::NotFound`] when
    /// there is none).
    async fn thread(&self, who: &Identity, thread: ThreadId) -> Result<ThreadDetail>;

    /// Adds a person's message to a thread (the conversation, or a plan refinement, goes
    /// on).
    async fn post_message(
        &self,
        who: &Identity,
        thread: ThreadId,
        message: NewMessage,
    ) -> Result<MessageView>;

    /// Approves a plan, or one of its steps, by the plan's hash
    /// ([`crate::Error::Conflict`] when the hash does not match).
    async fn approve(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        approval: Approval,
    ) -> Result<PlanView>;

    /// Rejects a plan, or one of its steps.
    async fn reject(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        rejection: Rejection,
    ) -> Result<PlanView>;

    /// What each step of a plan that changes something would apply: the manifest, a
    /// diff against the live object and the policies that refuse it, so a person sees
    /// the change before approving it. Nothing is written.
    ///
    /// The default answers [`Error::Unavailable`]: a service that cannot compute
    /// previews still serves everything else.
    async fn preview(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
    ) -> Result<Vec<StepPreview>> {
        let _ = who;
        Err(Error::Unavailable {
            message: format!(
                "this deckhand service cannot preview plans (thread {thread}, plan {plan})"
            ),
        })
    }

    /// Starts running a plan (its mutating steps wait for their approvals).
    async fn run(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView>;

    /// Cancels a running plan.
    async fn cancel(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView>;

    /// Stops the planning going on in a thread (the model's answer is not waited for; no
    /// plan comes of it). [`Error::Conflict`] when nothing is being planned.
    ///
    /// The default answers that conflict: a service whose planning is not cancellable
    /// still serves everything else.
    async fn cancel_planning(&self, who: &Identity, thread: ThreadId) -> Result<()> {
        let _ = who;
        Err(Error::Conflict {
            message: format!("nothing is being planned in thread {thread}"),
        })
    }

    /// Returns what the thread changed to its state before the thread.
    async fn restore(&self, who: &Identity, thread: ThreadId) -> Result<RestoreView>;

    /// Rates a thread 0-100 (100 closes it).
    async fn rate(&self, who: &Identity, thread: ThreadId, rating: Rating)
        -> Result<ThreadSummary>;

    /// Past threads that match words, best first.
    async fn search_knowledge(
        &self,
        who: &Identity,
        query: KnowledgeQuery,
    ) -> Result<Vec<KnowledgeHit>>;

    /// The tools agents may use.
    async fn tools(&self, who: &Identity) -> Result<Vec<ToolView>>;

    /// The policies operations are judged by.
    async fn policies(&self, who: &Identity) -> Result<Vec<PolicyView>>;

    /// The namespaces the caller may work in (from the cluster, as the caller).
    async fn namespaces(&self, who: &Identity) -> Result<Vec<String>>;

    /// The thread's events with an id above `after` (all of them for `None`), then its
    /// live events as they happen, with no gap between the two. Ids start at 1 and grow
    /// by one per event within a thread. The stream ends when the service shuts down,
    /// or when this subscriber fell further behind than the service buffers (the client
    /// is told to reconnect after its last id, and loses nothing).
    async fn subscribe(
        &self,
        who: &Identity,
        thread: ThreadId,
        after: Option<u64>,
    ) -> Result<EventStream>;

    /// Opens an SRE triage thread for one Alertmanager alert group.
    async fn triage_alerts(&self, who: &Identity, group: AlertGroup) -> Result<ThreadDetail>;

    /// The thread linked to an outside key (`slack:CHANNEL:THREAD_TS`,
    /// `alertmanager:GROUP_KEY`), if any.
    async fn linked_thread(&self, key: &str) -> Result<Option<ThreadId>>;

    /// Links an outside key to a thread, so later messages from there continue it.
    async fn link_thread(&self, key: &str, thread: ThreadId) -> Result<()>;
}

/// Where API tokens are kept: by the SHA-256 of the token, never the token itself.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The token whose SHA-256 (lower-case hex) is `sha256_hex`.
    async fn lookup(&self, sha256_hex: &str) -> Result<Option<TokenRecord>>;

    /// Stores a new token under the SHA-256 of its secret.
    async fn create(&self, sha256_hex: &str, record: &TokenRecord) -> Result<()>;

    /// Every token, revoked ones included.
    async fn list(&self) -> Result<Vec<TokenRecord>>;

    /// Revokes a token; `false` when there is no such token.
    async fn revoke(&self, id: uuid::Uuid) -> Result<bool>;
}
