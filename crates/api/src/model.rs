//! The API's request and response types: the JSON on the wire, with their OpenAPI
//! schemas derived from the same Rust types (utoipa).
//!
//! They are the API's own types rather than the runtime's, so the wire format stays
//! stable while the runtime changes; [`PlanView::from_plan`] and friends convert.

use chrono::{DateTime, Utc};
use deckhand_runtime::{Plan, PlanId, Step, StepState, Thread, ThreadId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// The longest request or message text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A thread as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThreadSummary {
    /// The thread's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: ThreadId,
    /// The cluster it works on.
    pub cluster_id: String,
    /// Who started it (the identity the cluster sees).
    pub user: String,
    /// A short title, from the first request.
    pub title: String,
    /// `open` or `closed` (rated 100).
    pub status: String,
    /// The namespace the person works in, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The person's rating, 0-100, once rated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ThreadSummary {
    /// The summary of a runtime thread (namespace and rating are the caller's to add).
    pub fn from_thread(thread: &Thread) -> Self {
        Self {
            id: thread.id,
            cluster_id: thread.cluster_id.clone(),
            user: thread.user.clone(),
            title: thread.title.clone(),
            status: thread.status.as_str().to_owned(),
            namespace: None,
            rating: None,
            created_at: thread.created_at,
            updated_at: thread.updated_at,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The person.
    User,
    /// One of deckhand's agents.
    Agent,
    /// deckhand itself (approvals, results, restores).
    System,
}

/// One message of a thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Its position in the thread, from 1.
    pub seq: u64,
    /// Who wrote it.
    pub role: MessageRole,
    /// The person's identity or the agent's name.
    pub author: String,
    /// The text (Markdown).
    pub text: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Made, shown, waiting for the person.
    Proposed,
    /// Approved (whole or some steps), not yet run.
    Approved,
    /// Refused by the person.
    Rejected,
    /// Running.
    Running,
    /// Stopped at mutating steps nobody approved yet.
    AwaitingApproval,
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// One step of a plan with its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// The step's id within the plan.
    pub id: String,
    /// The agent carrying it out (`scarlet`, `jamie`, `sre`, ...).
    pub agent: String,
    /// What it does.
    pub title: String,
    /// The tool it calls.
    pub tool: String,
    /// The tool's input.
    pub input: Value,
    /// Steps that must finish first.
    pub depends_on: Vec<String>,
    /// Whether it changes something (and so waits for approval).
    pub mutating: bool,
    /// Why it is there.
    pub rationale: String,
    /// `pending`, `awaiting_approval`, `running`, `succeeded`, `failed`, `skipped`,
    /// `cancelled`.
    #[schema(value_type = String)]
    pub state: StepState,
    /// Which attempt (0 before the first run).
    pub attempt: u32,
    /// The output, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed, was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepView {
    /// A step of a plan, not run yet.
    pub fn from_step(step: &Step) -> Self {
        Self {
            id: step.id.clone(),
            agent: step.agent.id().to_owned(),
            title: step.title.clone(),
            tool: step.tool.clone(),
            input: step.input.clone(),
            depends_on: step.depends_on.clone(),
            mutating: step.mutating,
            rationale: step.rationale.clone(),
            state: StepState::Pending,
            attempt: 0,
            output: None,
            error: None,
        }
    }
}

/// A plan with its steps and their states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    /// The plan's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: PlanId,
    /// The thread it belongs to.
    #[schema(value_type = String, format = Uuid)]
    pub thread_id: ThreadId,
    /// The request it answers.
    pub request: String,
    /// Which planner made it.
    pub created_by: String,
    /// `sha256:HEX`: what an approval names.
    pub hash: String,
    /// Where it is.
    pub status: PlanStatus,
    /// Who approved it (whole plan), when approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The steps in plan order.
    pub steps: Vec<StepView>,
}

impl PlanView {
    /// A freshly proposed plan.
    pub fn from_plan(plan: &Plan) -> Self {
        Self {
            id: plan.id,
            thread_id: plan.thread_id,
            request: plan.request.clone(),
            created_by: plan.created_by.clone(),
            hash: plan.hash.clone(),
            status: PlanStatus::Proposed,
            approved_by: None,
            steps: plan.steps.iter().map(StepView::from_step).collect(),
        }
    }
}

/// A thread with everything in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThreadDetail {
    /// The thread.
    pub thread: ThreadSummary,
    /// Its messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Its plans, oldest first.
    pub plans: Vec<PlanView>,
    /// The id of the thread's latest event (resume the WebSocket after it).
    pub last_event_id: u64,
}

/// What one step of a plan would change, shown before anyone approves it
/// (`GET /api/threads/{id}/plans/{plan}/preview`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepPreview {
    /// The step's id within the plan.
    pub step_id: String,
    /// The tool the step calls.
    pub tool: String,
    /// The object it changes: `apps/v1 Deployment shop/web`.
    pub target: String,
    /// The manifest, or the change, the step would apply (YAML).
    pub yaml: String,
    /// A unified diff of the live object against what the step would make it; empty
    /// when the object does not exist yet.
    pub diff: String,
    /// Why policies refuse the change (`policy: reason`); empty when it is allowed.
    pub denied_by: Vec<String>,
}

/// `POST /api/threads`: start a thread with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    /// The request in plain words.
    pub text: String,
    /// The namespace to work in.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `POST /api/threads/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The message in plain words.
    pub text: String,
}

/// `GET /api/threads` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThreadQuery {
    /// At most this many (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only `open` or `closed` threads.
    #[serde(default)]
    pub status: Option<String>,
    /// Only threads started by this identity.
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST .../approve`: approve a plan (or one step) by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The plan's hash as shown (`sha256:...`); a plan changed since is refused.
    pub hash: String,
    /// Approve only this step (default: the whole plan).
    #[serde(default)]
    pub step: Option<String>,
}

/// `POST .../reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The plan's hash as shown.
    pub hash: String,
    /// Reject only this step (default: the whole plan).
    #[serde(default)]
    pub step: Option<String>,
    /// Why, for the planner's next attempt.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/threads/{id}/rating`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// 0-100; 100 closes the thread.
    pub rating: u8,
    /// What was good or bad.
    #[serde(default)]
    pub comment: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RestoreView {
    /// The thread restored.
    #[schema(value_type = String, format = Uuid)]
    pub thread_id: ThreadId,
    /// The resources put back to their state before the thread (`Deployment shop/web`).
    pub restored: Vec<String>,
    /// Resources that could not be put back, with why.
    pub failed: Vec<String>,
}

/// `GET /api/knowledge` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KnowledgeQuery {
    /// Words to search for in past threads.
    pub q: String,
    /// At most this many (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One past thread that matches a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KnowledgeHit {
    /// The thread.
    #[schema(value_type = String, format = Uuid)]
    pub thread_id: ThreadId,
    /// Its title.
    pub title: String,
    /// The whole request that started it: what "do the same here" asks again.
    #[serde(default)]
    pub request: String,
    /// What was asked and how it was resolved.
    pub summary: String,
    /// Its rating, when rated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// How well it matches (higher is better): the full-text score, or in a hybrid
    /// search the fused score of both rankings.
    pub score: f64,
    /// Its cosine similarity with the query, when the search compared embeddings and it
    /// was among the most similar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// How the search was answered (the same for every hit of one search).
    #[serde(default)]
    pub search: KnowledgeSearchMode,
}

/// How a knowledge search was answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KnowledgeSearchMode {
    /// By words alone: no embedding model is configured, or it did not answer.
    #[default]
    FullText,
    /// By words and meaning: full text fused with similarity to the query's embedding.
    Hybrid,
}

/// A tool agents may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolView {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Whether it changes something.
    pub mutating: bool,
    /// The JSON Schema of its input.
    pub input_schema: Value,
}

/// A policy every cluster operation is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// The policy's name.
    pub name: String,
    /// `builtin`, `rego` or `gatekeeper`.
    pub kind: String,
    /// What it guards against.
    pub description: String,
}

/// What happened in a thread, as the WebSocket streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThreadEvent {
    /// Increasing within the thread; resume after it with `?after=ID`.
    pub id: u64,
    /// The thread.
    #[schema(value_type = String, format = Uuid)]
    pub thread_id: ThreadId,
    /// When.
    pub at: DateTime<Utc>,
    /// What kind of event.
    pub kind: ThreadEventKind,
    /// The event's details (see docs/API.md for each kind).
    pub data: Value,
}

/// The kinds of [`ThreadEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadEventKind {
    /// A message was added (`data`: a [`MessageView`]).
    Message,
    /// Tokens of an agent's reply as the model produces them (`data`: `{agent, text}`).
    Token,
    /// A plan was proposed (`data`: a [`PlanView`]).
    PlanProposed,
    /// A step changed state (`data`: `{plan_id, step_id, state, attempt, reason}`).
    Step,
    /// A plan or step was approved (`data`: `{plan_id, hash, step, by}`).
    Approval,
    /// A plan or step was rejected (`data`: `{plan_id, hash, step, by, reason}`).
    Rejection,
    /// A plan finished (`data`: `{plan_id, outcome}`).
    PlanFinished,
    /// The answer or result of the thread (`data`: `{text}`).
    Result,
    /// The thread was restored (`data`: a [`RestoreView`]).
    Restore,
    /// The thread was rated (`data`: `{rating, comment, by}`).
    Rating,
    /// Something failed (`data`: `{message}`).
    Error,
    /// The access review before approval found permissions the person lacks (`data`:
    /// `{plan_id, user, missing: [{step_id, permission}]}`).
    Access,
}

/// The four roles a caller can have, each including the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read threads, plans, tools, policies, knowledge; watch events.
    Viewer,
    /// Also ask, post messages, approve/reject/run/cancel/restore/rate their own threads.
    Operator,
    /// Everything, on every thread, and token management.
    Admin,
}

impl Scope {
    /// The name used in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthSource {
    /// An API token (its id).
    Token {
        /// The token's id.
        #[schema(value_type = String, format = Uuid)]
        id: uuid::Uuid,
    },
    /// An OIDC ID or access token from the configured issuer.
    Oidc {
        /// The issuer.
        issuer: String,
    },
    /// A Slack user mapped in the configuration.
    Slack {
        /// The Slack user id.
        user_id: String,
    },
    /// Alertmanager's webhook.
    Alertmanager,
    /// A scheduled (heartbeat) task of the configuration.
    Scheduled {
        /// The task's name.
        task: String,
    },
}

/// Who is calling: the identity deckhand impersonates on the cluster, with its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    /// The user name (Kubernetes impersonation `Impersonate-User`).
    pub subject: String,
    /// The groups (`Impersonate-Group`).
    pub groups: Vec<String>,
    /// What the caller may do.
    pub scope: Scope,
    /// How the caller authenticated.
    pub source: AuthSource,
}

impl Identity {
    /// Whether the caller may act on a thread started by `owner`: admins on every thread,
    /// operators on their own.
    pub fn may_act_on(&self, owner: &str) -> bool {
        self.scope == Scope::Admin || (self.scope >= Scope::Operator && self.subject == owner)
    }
}

/// An API token as stored (never the token itself: only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRecord {
    /// The token's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// A name for people (`ci`, `alice laptop`).
    pub name: String,
    /// The identity the token authenticates as.
    pub subject: String,
    /// The identity's groups.
    pub groups: Vec<String>,
    /// What it may do.
    pub scope: Scope,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// `POST /api/tokens` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people.
    pub name: String,
    /// The identity it authenticates as.
    pub subject: String,
    /// The identity's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// What it may do.
    pub scope: Scope,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// The answer to `POST /api/tokens`: the only time the token itself is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token to put in `Authorization: Bearer ...`.
    pub token: String,
    /// What is stored about it.
    pub record: TokenRecord,
}

/// `GET /api/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The caller.
    pub identity: Identity,
}

/// Namespaces the caller can pick from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Namespaces {
    /// Namespace names, sorted.
    pub namespaces: Vec<String>,
}
